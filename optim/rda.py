"""xRDA: regularized dual averaging with momentum and an adaptively reweighted l1 penalty.

The optimizer of Siegel, Chen, Zhang & Xu, "Training Sparse Neural Networks using
Compressed Sensing" (arXiv 2008.09661), built on extended RDA (Siegel & Xu, arXiv
1904.02316). It minimises ``loss + lam * sum(omega * |w|)`` and produces exact zeros.

For every tensor x with gradient g, at a step with the group's current learning rate
eta (read from the group, so any torch LR scheduler drives it):

    a     = 1 - eta / eta_0   if avg == "coupled" (eta_0: the group's lr at construction),
            else the constant avg; clamped to [0, 1]
    g     = g + weight_decay * x
    r     = e^(-eta/tau_b) r + (1 - e^(-eta/tau_b)) |x|       magnitude average
    omega = M / (1 + (M - 1) r / max(r))                       per tensor; 1 if reweight="none"
    beta  = a beta + eta omega                                 accumulated step size
    z     = a z + (1 - a) x                                    z starts at the initial x
    v     = mu v + (1 - mu) g,  mu = e^(-eta/tau)              momentum; v = g if tau is None
    z     = z - eta v
    x     = sign(z) max(|z| - lam beta, 0)                     proximal step: exact zeros

tau = momentum_timescale, tau_b = magnitude_timescale (default: tau; with neither, r = |x|),
M = max_factor. omega is the linearisation of a log(|w| + eps) penalty with
eps = max(r) / (M - 1); a tensor whose r is all zero gets omega = M.

a = 0 is proximal SGD with heavy-ball momentum (lr eta (1 - mu), momentum mu); a = 1 is
classic RDA centred on the initial weights. Under a coupled schedule beta is a running
average of eta_0 omega, so it stays bounded, and a fixed point satisfies
x = prox(x - eta_0 grad F) with threshold lam eta_0 omega: the optimality conditions of
loss + lam sum omega |w|.

Structured modes (``group``), for tensors of 3 or more dimensions (convolutions; other
tensors keep per-element groups): "kernel" groups a kh x kw kernel, "channel" an output
filter. |x| in the r update is replaced by the group's mean |x|, broadcast over the
group, and omega (also the 1 of reweight="none") is multiplied by sqrt(group size), the
group-lasso weight. With prox="l1" the proximal step
stays per element (as in the paper); prox="group" takes the true group-lasso step
x_g = z_g max(||z_g|| - lam beta_g, 0) / ||z_g||, which zeroes whole kernels / filters.

Every option is per parameter group; which tensors are penalised is decided by the
groups (lam = 0 leaves a tensor unpenalised), not by tensor shape. State: exactly four
buffers per parameter, all of its shape: ``z`` (dual average), ``v`` (momentum),
``r`` (magnitude average) and ``beta``. r is only maintained where it is used
(reweight="log" and lam > 0), beta only where lam > 0: with lam = 0 the threshold
lam beta is zero whatever beta is, and x = z.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

LR0 = "rda_lr0"  # the group's lr at construction; torch schedulers own "initial_lr"
REWEIGHTS = ("none", "log")
GROUPS = ("none", "kernel", "channel")
PROXES = ("l1", "group")
STATE_KEYS = ("z", "v", "r", "beta")


def group_dims(x: Tensor, group: str) -> tuple[int, ...] | None:
    """Dimensions averaged over within one group of ``x``; None: per-element groups."""
    if group == "none" or x.dim() < 3:
        return None
    return tuple(range(2 if group == "kernel" else 1, x.dim()))


def group_size(x: Tensor, dims: tuple[int, ...] | None) -> int:
    return 1 if dims is None else math.prod(x.shape[d] for d in dims)


def _group_corner(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """One element per group (a view), e.g. x[:, :, :1, :1] for kernels: beta is constant in a group."""
    return x[tuple(slice(0, 1) if d in dims else slice(None) for d in range(x.dim()))]


def _scalar(value: float, like: Tensor) -> Tensor:
    """A 0-d tensor on ``like``'s device: foreach ops take it without wrapping a scalar per tensor."""
    return torch.full((), value, dtype=like.dtype, device=like.device)


def averaging_weight(group: dict[str, Any]) -> float:
    """a of the current step: 1 - eta / eta_0 (coupled) or the constant, within [0, 1]."""
    if group["avg"] == "coupled":
        return min(max(1.0 - float(group["lr"]) / group[LR0], 0.0), 1.0)
    return float(group["avg"])


def _check_options(group: dict[str, Any]) -> None:
    avg = group["avg"]
    if avg != "coupled" and not (isinstance(avg, (int, float)) and 0.0 <= avg <= 1.0):
        raise ValueError(f"avg: expected 'coupled' or a number in [0, 1], got {avg!r}")
    if avg == "coupled" and not group["lr"] > 0:
        raise ValueError(f"lr: coupled averaging needs lr > 0, got {group['lr']}")
    if group["lr"] < 0 or group["lam"] < 0 or group["weight_decay"] < 0:
        raise ValueError("lr, lam and weight_decay must be >= 0")
    for key in ("momentum_timescale", "magnitude_timescale"):
        if group[key] is not None and not group[key] > 0:
            raise ValueError(f"{key}: expected None or > 0, got {group[key]}")
    if not group["max_factor"] > 1:
        raise ValueError(f"max_factor: expected > 1, got {group['max_factor']}")
    for key, choices in (("reweight", REWEIGHTS), ("group", GROUPS), ("prox", PROXES)):
        if group[key] not in choices:
            raise ValueError(f"{key}: expected one of {choices}, got {group[key]!r}")


class RDA(torch.optim.Optimizer):
    """xRDA with momentum and (reweighted, optionally grouped) l1; see the module docstring.

    State per parameter: exactly four buffers of its shape, ``z``, ``v``, ``r``, ``beta``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        lam: float = 0.0,
        avg: str | float = "coupled",
        momentum_timescale: float | None = None,
        magnitude_timescale: float | None = None,
        weight_decay: float = 0.0,
        reweight: str = "none",
        max_factor: float = 500.0,
        group: str = "none",
        prox: str = "l1",
    ) -> None:
        defaults = dict(
            lr=lr,
            lam=lam,
            avg=avg,
            momentum_timescale=momentum_timescale,
            magnitude_timescale=magnitude_timescale,
            weight_decay=weight_decay,
            reweight=reweight,
            max_factor=max_factor,
            group=group,
            prox=prox,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_options(group)
        group.setdefault(LR0, float(group["lr"]))

    def _state(self, p: Tensor) -> list[Tensor]:
        state = self.state[p]
        if not state:
            state["z"] = p.detach().clone()
            for key in ("v", "r", "beta"):
                state[key] = torch.zeros_like(p)
        return [state[k] for k in STATE_KEYS]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        eta = float(group["lr"])
        a = averaging_weight(group)
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError("RDA does not support sparse gradients")
        zs, vs, rs, betas = (list(b) for b in zip(*(self._state(p) for p in params)))
        dims = [group_dims(p, group["group"]) for p in params]
        roots = [math.sqrt(group_size(p, d)) for p, d in zip(params, dims)]

        # beta <- a beta + eta omega; with lam = 0 the threshold is 0 whatever beta is: skipped
        if group["lam"] != 0.0:
            if a == 0.0:
                torch._foreach_zero_(betas)
            elif a != 1.0:
                torch._foreach_mul_(betas, _scalar(a, betas[0]))
            if group["reweight"] == "log":
                self._update_magnitudes(group, eta, params, rs, dims)
                torch._foreach_addcdiv_(betas, *self._omega_terms(group, eta, rs, roots))
            elif all(root == 1.0 for root in roots):
                torch._foreach_add_(betas, _scalar(eta, betas[0]))
            else:
                torch._foreach_add_(betas, [eta * root for root in roots])

        # z <- a z + (1 - a) x;  v <- mu v + (1 - mu) (g + weight_decay x);  z <- z - eta v
        if a == 0.0:
            torch._foreach_copy_(zs, params)
        elif a != 1.0:
            torch._foreach_lerp_(zs, params, 1.0 - a)
        tau = group["momentum_timescale"]
        new_share = 1.0 if tau is None else -math.expm1(-eta / tau)  # 1 - mu
        if new_share == 1.0:
            torch._foreach_copy_(vs, grads)
        else:
            torch._foreach_lerp_(vs, grads, new_share)
        if group["weight_decay"]:  # added to v, not to a copy of g: one pass, no temporary
            torch._foreach_add_(vs, params, alpha=new_share * group["weight_decay"])
        torch._foreach_add_(zs, vs, alpha=-eta)

        self._prox(group, params, zs, betas, dims)

    @staticmethod
    def _omega_terms(
        group: dict[str, Any], eta: float, rs: list[Tensor], roots: list[float]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """(n, d) with n / d = eta omega per tensor, without a host sync.

        omega = M / (1 + (M - 1) r / max r) = M eps / (eps + r) with eps = max r / (M - 1) (times
        sqrt(group size) in the structured modes), so n = eta M eps sqrt(size) is one number per
        tensor and d = r + eps. The per-tensor numbers live in one small vector (few kernel launches).
        """
        m = group["max_factor"]
        eps = torch.stack(torch._foreach_max(rs)).div_(m - 1.0).clamp_min_(torch.finfo(rs[0].dtype).tiny)
        numerators = list((eps * (eta * m)).unbind())
        if any(root != 1.0 for root in roots):
            torch._foreach_mul_(numerators, roots)
        return numerators, torch._foreach_add(rs, list(eps.unbind()))

    @staticmethod
    def _update_magnitudes(
        group: dict[str, Any], eta: float, params: list[Tensor], rs: list[Tensor], dims: list[tuple[int, ...] | None]
    ) -> None:
        """r <- e^(-eta/tau_b) r + (1 - e^(-eta/tau_b)) |x|, |x| a group mean in the structured modes."""
        tau_b = group["magnitude_timescale"] or group["momentum_timescale"]
        weight = -math.expm1(-eta / tau_b) if tau_b else 1.0
        flat = [i for i, d in enumerate(dims) if d is None]
        if flat:
            torch._foreach_lerp_([rs[i] for i in flat], torch._foreach_abs([params[i] for i in flat]), weight)
        for r, p, d in zip(rs, params, dims):
            if d is not None:
                r.lerp_(p.abs().mean(dim=d, keepdim=True).expand_as(r), weight)

    @staticmethod
    def _prox(
        group: dict[str, Any],
        params: list[Tensor],
        zs: list[Tensor],
        betas: list[Tensor],
        dims: list[tuple[int, ...] | None],
    ) -> None:
        """x <- prox of z with threshold lam beta: per element (soft threshold) or per group."""
        lam = group["lam"]
        if lam == 0.0:
            torch._foreach_copy_(params, zs)
            return
        grouped = group["prox"] == "group"
        flat = [i for i, d in enumerate(dims) if d is None or not grouped]
        if flat:
            zf = [zs[i] for i in flat]
            shrunk = torch._foreach_abs(zf)
            torch._foreach_sub_(shrunk, [betas[i] for i in flat], alpha=lam)
            torch._foreach_clamp_min_(shrunk, 0.0)
            for i, s, z in zip(flat, shrunk, zf):
                torch.copysign(s, z, out=params[i])
        if grouped:
            for p, z, beta, d in zip(params, zs, betas, dims):
                if d is not None:
                    norm = torch.linalg.vector_norm(z, dim=d, keepdim=True)
                    kept = (norm - lam * _group_corner(beta, d)).clamp_min_(0.0)
                    torch.mul(z, kept.div_(norm.clamp_min_(torch.finfo(z.dtype).tiny)), out=p)
