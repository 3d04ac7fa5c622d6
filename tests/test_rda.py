"""The xRDA optimizer (optim/rda.py) against hand computations, on small float64 tensors."""

import io
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from optim.rda import LR0, RDA, averaging_weight


@pytest.fixture(autouse=True)
def float64_by_default() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def quadratic_problem(seed: int = 0, rows: int = 12, cols: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g, dtype=torch.float64), torch.randn(
        rows, generator=g, dtype=torch.float64
    )


def set_grad(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """Gradient of F(x) = 0.5 ||A x - b||^2."""
    x.grad = a.T @ (a @ x.detach() - b)


def soft(z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - t, min=0)


def param(values: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(values.clone().to(torch.float64))


# ---------------------------------------------------------------- special cases


@pytest.mark.parametrize(
    "tau, weight_decay, avg", [(9.5, 0.0, 0.0), (4.0, 0.05, 0.0), (None, 0.05, 0.0), (4.0, 0.05, "coupled")]
)
def test_a0_lam0_is_heavy_ball_sgd(tau: float | None, weight_decay: float, avg: str | float) -> None:
    """a = 0, lam = 0: exactly SGD with lr eta (1 - mu), momentum mu (torch: v = mu v + g, x -= lr v)."""
    a_mat, b = quadratic_problem()
    x0 = torch.randn(8, generator=torch.Generator().manual_seed(1))
    eta = 0.05
    mu = math.exp(-eta / tau) if tau is not None else 0.0
    x_rda, x_sgd = param(x0), param(x0)
    rda = RDA([x_rda], lr=eta, avg=avg, momentum_timescale=tau, weight_decay=weight_decay)  # coupled at eta_0: a = 0
    sgd = torch.optim.SGD([x_sgd], lr=eta * (1 - mu), momentum=mu, weight_decay=weight_decay)
    for _ in range(12):
        for x, opt in ((x_rda, rda), (x_sgd, sgd)):
            set_grad(x, a_mat, b)
            opt.step()
    assert not torch.equal(x_rda.detach(), x0)
    torch.testing.assert_close(x_rda.detach(), x_sgd.detach(), rtol=1e-12, atol=1e-12)


def test_a1_is_rda_from_the_initial_point() -> None:
    """a = 1: z = x_0 - sum eta_k v_k and x = soft(z, lam sum eta_k), whatever the lr sequence."""
    a_mat, b = quadratic_problem()
    x0 = torch.randn(8, generator=torch.Generator().manual_seed(2))
    lam, tau = 0.3, 3.0
    x = param(x0)
    opt = RDA([x], lr=0.1, lam=lam, avg=1.0, momentum_timescale=tau)
    v = torch.zeros(8)
    dual_sum, eta_sum = torch.zeros(8), 0.0
    for eta in (0.1, 0.05, 0.08, 0.02, 0.04, 0.03):
        opt.param_groups[0]["lr"] = eta
        set_grad(x, a_mat, b)
        mu = math.exp(-eta / tau)
        v = mu * v + (1 - mu) * x.grad
        dual_sum += eta * v
        eta_sum += eta
        opt.step()
        torch.testing.assert_close(opt.state[x]["z"], x0 - dual_sum)
        torch.testing.assert_close(opt.state[x]["beta"], torch.full((8,), eta_sum))
        torch.testing.assert_close(x.detach(), soft(x0 - dual_sum, lam * eta_sum))


def test_one_general_step_by_hand() -> None:
    """Every line of the update once, with 0 < a < 1, momentum, weight decay, log reweighting."""
    x0 = torch.tensor([0.5, -0.02, 0.0, 1.5, -0.7])
    g = torch.tensor([0.1, 0.3, -0.2, 0.05, -0.4])
    eta0, eta, lam, wd, tau, tau_b, m = 1.0, 0.4, 0.01, 0.1, 2.0, 5.0, 50.0
    x = param(x0)
    opt = RDA(
        [x],
        lr=eta0,
        lam=lam,
        momentum_timescale=tau,
        magnitude_timescale=tau_b,
        weight_decay=wd,
        reweight="log",
        max_factor=m,
    )
    state = {
        "z": torch.tensor([0.4, 0.1, -0.05, 1.2, -0.6]),
        "v": torch.tensor([0.2, -0.1, 0.0, 0.3, 0.1]),
        "r": torch.tensor([0.3, 0.05, 0.01, 1.0, 0.5]),
        "beta": torch.tensor([2.0, 30.0, 40.0, 1.0, 1.5]),
    }
    opt.state[x].update({k: t.clone() for k, t in state.items()})
    opt.param_groups[0]["lr"] = eta
    x.grad = g.clone()
    opt.step()

    a = 1 - eta / eta0
    gw = g + wd * x0
    wb = 1 - math.exp(-eta / tau_b)
    r = math.exp(-eta / tau_b) * state["r"] + wb * x0.abs()
    omega = m / (1 + (m - 1) * r / r.max())
    beta = a * state["beta"] + eta * omega
    mu = math.exp(-eta / tau)
    v = mu * state["v"] + (1 - mu) * gw
    z = a * state["z"] + (1 - a) * x0 - eta * v
    for key, want in (("r", r), ("beta", beta), ("v", v), ("z", z)):
        torch.testing.assert_close(opt.state[x][key], want, msg=key)
    torch.testing.assert_close(x.detach(), soft(z, lam * beta))
    assert averaging_weight(opt.param_groups[0]) == pytest.approx(0.6)


# ---------------------------------------------------------------- reweighting and groups


def test_reweighting_omega_matches_the_formula() -> None:
    """First step (a = 0): r = (1 - e^(-eta/tau_b)) |x|, beta = eta M / (1 + (M - 1) r / max r)."""
    x0 = torch.tensor([[0.8, -0.1, 0.0], [0.02, -0.4, 0.3]])
    eta, m, tau = 0.5, 100.0, 2.0
    x = param(x0)
    opt = RDA([x], lr=eta, lam=0.0001, momentum_timescale=tau, reweight="log", max_factor=m)
    x.grad = torch.zeros_like(x)
    opt.step()
    r = (1 - math.exp(-eta / tau)) * x0.abs()
    torch.testing.assert_close(opt.state[x]["r"], r)
    # by hand for the largest (omega = 1), the zero (omega = M) and one in between
    beta = opt.state[x]["beta"]
    assert beta[0, 0].item() == pytest.approx(eta * 1.0)
    assert beta[0, 2].item() == pytest.approx(eta * m)
    assert beta[1, 1].item() == pytest.approx(eta * m / (1 + 99 * 0.4 / 0.8))
    # omega is the derivative of log(|w| + eps) scaled to 1 at max r: eps = max r / (M - 1)
    eps = r.max() / (m - 1)
    torch.testing.assert_close(beta / eta, (r.max() + eps) / (r + eps))


def test_all_zero_tensor_gets_the_largest_weight() -> None:
    x = param(torch.zeros(4))
    opt = RDA([x], lr=1.0, lam=0.01, momentum_timescale=2.0, reweight="log", max_factor=500.0)
    x.grad = torch.zeros(4)
    opt.step()
    torch.testing.assert_close(opt.state[x]["beta"], torch.full((4,), 500.0))


@pytest.mark.parametrize("mode, dims", [("kernel", (2, 3)), ("channel", (1, 2, 3))])
def test_group_modes_average_magnitudes_over_the_group(mode: str, dims: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(3)
    conv0 = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    fc0 = torch.randn(5, 6, generator=g, dtype=torch.float64)
    conv, fc = param(conv0), param(fc0)
    eta, tau, m = 0.5, 2.0, 50.0
    opt = RDA([conv, fc], lr=eta, lam=1e-4, momentum_timescale=tau, reweight="log", max_factor=m, group=mode)
    conv.grad, fc.grad = torch.zeros_like(conv), torch.zeros_like(fc)
    opt.step()
    w = 1 - math.exp(-eta / tau)
    mean = conv0.abs().mean(dim=dims, keepdim=True).expand_as(conv0)
    r = opt.state[conv]["r"]
    torch.testing.assert_close(r, w * mean)
    size = math.prod(conv0.shape[d] for d in dims)
    omega = math.sqrt(size) * m / (1 + (m - 1) * r / r.max())
    torch.testing.assert_close(opt.state[conv]["beta"], eta * omega)
    # a linear layer (2-D) keeps per-element groups in both modes
    torch.testing.assert_close(opt.state[fc]["r"], w * fc0.abs())
    r_fc = opt.state[fc]["r"]
    torch.testing.assert_close(opt.state[fc]["beta"], eta * m / (1 + (m - 1) * r_fc / r_fc.max()))


def test_proximal_step_gives_exact_zeros() -> None:
    x0 = torch.tensor([0.5, -0.5, 0.05, -0.05, 0.0, 2.0])
    x = param(x0)
    opt = RDA([x], lr=1.0, lam=0.1)
    x.grad = torch.zeros(6)
    opt.step()
    want = torch.tensor([0.4, -0.4, 0.0, 0.0, 0.0, 1.9])
    torch.testing.assert_close(x.detach(), want)
    assert int((x == 0).sum()) == 3  # exactly zero, no threshold needed to count them


@pytest.mark.parametrize("mode", ["kernel", "channel"])
def test_group_prox_zeroes_whole_groups(mode: str) -> None:
    """prox="group": x_g = z_g max(||z_g|| - lam beta_g, 0) / ||z_g||, whole kernels / filters to 0."""
    g = torch.Generator().manual_seed(4)
    conv0 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    conv0[1] *= 0.01  # a weak filter
    conv0[2, 0] *= 0.01  # a weak kernel
    conv = param(conv0)
    lam, eta = 0.1, 1.0
    opt = RDA([conv], lr=eta, lam=lam, group=mode, prox="group")
    conv.grad = torch.zeros_like(conv)
    opt.step()
    dims = (2, 3) if mode == "kernel" else (1, 2, 3)
    size = math.prod(conv0.shape[d] for d in dims)
    threshold = lam * eta * math.sqrt(size)  # reweight none: omega = sqrt(group size)
    norm = torch.linalg.vector_norm(conv0, dim=dims, keepdim=True)
    want = conv0 * torch.clamp(norm - threshold, min=0) / norm
    torch.testing.assert_close(conv.detach(), want)
    zero_groups = (conv.detach() == 0).flatten(len(conv0.shape) - len(dims)).all(-1)
    assert zero_groups.any() and not zero_groups.all()
    if mode == "channel":
        assert zero_groups.tolist() == [False, True, False, False]
    else:
        assert zero_groups.tolist() == [[False, False], [True, True], [True, False], [False, False]]


def test_group_l1_prox_stays_per_element() -> None:
    """Group mode with prox="l1" (the paper's structured variant) thresholds elements, not groups."""
    conv0 = torch.tensor([[[[1.0, 0.01], [0.02, -1.0]]]])
    conv = param(conv0)
    opt = RDA([conv], lr=1.0, lam=0.05, group="kernel")
    conv.grad = torch.zeros_like(conv)
    opt.step()
    torch.testing.assert_close(conv.detach(), soft(conv0, 0.05 * 2.0))  # sqrt(2 x 2) = 2
    assert int((conv == 0).sum()) == 2


# ---------------------------------------------------------------- schedules


def test_scheduler_drives_the_averaging_weight() -> None:
    x = param(torch.ones(3))
    opt = RDA([x], lr=0.8)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.5)
    seen = []
    for _ in range(6):
        x.grad = torch.zeros(3)
        seen.append(averaging_weight(opt.param_groups[0]))
        opt.step()
        sched.step()
    # halving the step halves 1 - a
    assert seen == pytest.approx([0.0, 0.0, 0.5, 0.5, 0.75, 0.75])
    group = opt.param_groups[0]
    assert group[LR0] == 0.8 and group["initial_lr"] == 0.8  # the scheduler's key is left to it
    cosine = RDA([param(torch.ones(2))], lr=2.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(cosine, T_max=10)
    for _ in range(5):
        cosine.param_groups[0]["params"][0].grad = torch.zeros(2)
        cosine.step()
        sched.step()
    assert averaging_weight(cosine.param_groups[0]) == pytest.approx(0.5)


def test_lr_above_the_initial_one_gives_a_zero() -> None:
    opt = RDA([param(torch.ones(2))], lr=0.1)
    opt.param_groups[0]["lr"] = 0.2
    assert averaging_weight(opt.param_groups[0]) == 0.0


@pytest.mark.parametrize("reweight", ["none", "log"])
def test_beta_stays_bounded_under_a_coupled_schedule(reweight: str) -> None:
    """beta is a running average of eta_0 omega: within [eta_0 min omega, eta_0 max omega] = [eta_0, eta_0 M]."""
    a_mat, b = quadratic_problem()
    x = param(torch.randn(8, generator=torch.Generator().manual_seed(5)))
    eta0, m, steps = 0.05, 20.0, 200
    opt = RDA([x], lr=eta0, lam=0.01, momentum_timescale=0.2, reweight=reweight, max_factor=m)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    plain_sum = 0.0
    for _ in range(steps):
        plain_sum += opt.param_groups[0]["lr"]
        set_grad(x, a_mat, b)
        opt.step()
        sched.step()
        beta = opt.state[x]["beta"]
        if reweight == "none":
            torch.testing.assert_close(beta, torch.full((8,), eta0))
        else:
            assert float(beta.min()) >= eta0 * (1 - 1e-9) and float(beta.max()) <= eta0 * m * (1 + 1e-9)
    assert plain_sum > 40 * eta0  # an uncoupled sum of steps would have grown far beyond


# ---------------------------------------------------------------- optimality


@pytest.mark.parametrize(
    "avg, reweight, lam", [(0.0, "none", 2.0), ("coupled", "none", 2.0), (0.0, "log", 0.5), ("coupled", "log", 0.5)]
)
def test_fixed_point_satisfies_the_weighted_lasso_conditions(avg: str | float, reweight: str, lam: float) -> None:
    """Converged on F(x) = 0.5 ||Ax - b||^2: x = prox(x - eta_0 grad F, lam eta_0 omega), i.e.
    grad_i = -lam omega_i sign(x_i) where x_i != 0 and |grad_i| <= lam omega_i where x_i = 0."""
    a_mat, b = quadratic_problem(seed=6, rows=20, cols=10)
    eta0 = 0.02
    x = param(torch.randn(10, generator=torch.Generator().manual_seed(8)))
    opt = RDA([x], lr=eta0, lam=lam, avg=avg, momentum_timescale=0.1, reweight=reweight, max_factor=5.0)
    if avg == "coupled":
        opt.param_groups[0]["lr"] = eta0 / 2  # a = 1/2: the fixed point still uses eta_0
    for _ in range(2000):
        set_grad(x, a_mat, b)
        opt.step()
    grad = a_mat.T @ (a_mat @ x.detach() - b)
    omega = opt.state[x]["beta"] / eta0  # beta -> eta_0 omega at the fixed point
    if reweight == "none":
        torch.testing.assert_close(omega, torch.ones(10))
    xd = x.detach()
    nonzero = xd != 0
    assert 0 < int(nonzero.sum()) < 10, "the test problem should have some zeros and some nonzeros"
    torch.testing.assert_close(grad[nonzero], -lam * omega[nonzero] * torch.sign(xd[nonzero]), atol=1e-8, rtol=0)
    assert bool((grad[~nonzero].abs() <= lam * omega[~nonzero] + 1e-8).all())
    torch.testing.assert_close(xd, soft(xd - eta0 * grad, lam * eta0 * omega), atol=1e-9, rtol=0)


# ---------------------------------------------------------------- state


def tiny_net() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))


def groups_of(net: nn.Module) -> list[dict]:
    weights = [net[0].weight, net[4].weight]
    rest = [p for p in net.parameters() if all(p is not w for w in weights)]
    return [{"params": weights, "lam": 0.01, "reweight": "log", "group": "kernel"}, {"params": rest}]


def train_steps(net: nn.Module, opt: RDA, sched: object, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inputs = torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
        target = torch.randint(0, 2, (4,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(net(inputs), target).backward()
        opt.step()
        sched.step()


def test_state_is_exactly_four_buffers_of_the_parameter_shape() -> None:
    net = tiny_net()
    opt = RDA(groups_of(net), lr=0.1, momentum_timescale=1.0, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    train_steps(net, opt, sched, 2, seed=0)
    for p in net.parameters():
        state = opt.state[p]
        assert sorted(state) == ["beta", "r", "v", "z"]
        assert all(t.shape == p.shape for t in state.values())


def test_state_dict_round_trip_resumes_identically() -> None:
    net = tiny_net()
    opt = RDA(groups_of(net), lr=0.1, momentum_timescale=1.0, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    train_steps(net, opt, sched, 3, seed=0)
    buffer = io.BytesIO()  # as the training loop checkpoints: torch.save, then load with weights_only=True
    torch.save((net.state_dict(), opt.state_dict(), sched.state_dict()), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    train_steps(net, opt, sched, 4, seed=1)

    net2 = tiny_net()
    opt2 = RDA(groups_of(net2), lr=0.1, momentum_timescale=1.0, weight_decay=1e-3)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    net2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    train_steps(net2, opt2, sched2, 4, seed=1)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
        for key in ("z", "v", "r", "beta"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])
    assert opt2.param_groups[0][LR0] == 0.1 and (net[0].weight == 0).any()


def test_unpenalised_group_keeps_x_equal_to_z() -> None:
    net = tiny_net()
    opt = RDA(groups_of(net), lr=0.1, momentum_timescale=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    train_steps(net, opt, sched, 3, seed=2)
    for p in opt.param_groups[1]["params"]:
        assert torch.equal(p.detach(), opt.state[p]["z"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"avg": 1.5}, "avg"),
        ({"avg": "uncoupled"}, "avg"),
        ({"reweight": "sqrt"}, "reweight"),
        ({"group": "row"}, "group"),
        ({"prox": "l2"}, "prox"),
        ({"max_factor": 1.0}, "max_factor"),
        ({"momentum_timescale": 0.0}, "momentum_timescale"),
        ({"lam": -1.0}, "lam"),
    ],
)
def test_invalid_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RDA([param(torch.ones(2))], lr=0.1, **options)
