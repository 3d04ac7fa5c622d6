"""L0-HC: the hard-concrete gate, placement, penalty, hooks, export, and a run through the runner."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from models import build_model
from models.resnet import BasicBlock, Bottleneck, ResNet
from models.resnet_cifar import CifarResNet
from models.vgg import VGG
from pruning.accounting import sparsity_report
from pruning.base import Schedule
from pruning.gates import GATES, ChannelGates, deterministic_gates, gate_placement, prob_nonzero, sample_gates
from pruning.methods.l0hc import L0HC, L0HCConfig
from pruning.surgery import prunable_bns
from tests.helpers import (
    comparable_metrics,
    context,
    randomize_bns,
    resnet20_experiment,
    run_config,
    run_dir,
    straight_and_interrupted,
)
from training.build import optimizer_factory
from training.config import DataConfig, ExperimentConfig, SGDConfig, TrainConfig

LOG11 = math.log(11.0)  # -log(-gamma / zeta) for gamma = -0.1, zeta = 1.1

CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "vgg": (lambda: VGG(layout=[4, "M", 6], num_classes=5), (3, 4, 4)),
    "cifar_resnet": (lambda: CifarResNet(8, 5, widths=(4, 6, 8)), (3, 8, 8)),
    "resnet18_like": (lambda: ResNet(BasicBlock, (1, 1, 1, 1), 5, cifar_stem=True), (3, 8, 8)),
    "resnet50_like": (lambda: ResNet(Bottleneck, (1, 1, 1, 1), 5, cifar_stem=False), (3, 32, 32)),
}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def gated(
    case: str, seed: int = 0, lam: float = 1e-3, penalty: str = "release"
) -> tuple[nn.Module, L0HC, tuple[int, int, int]]:
    build, shape = CASES[case]
    torch.manual_seed(seed)
    method = L0HC(L0HCConfig(lam=lam, penalty=penalty))
    model = method.prepare(build(), context(input_shape=shape))
    randomize_bns(model, torch.Generator().manual_seed(seed))
    return model, method, shape


def set_log_alphas(method: L0HC, values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(method.gates.log_alpha, values):
            p.copy_(v)


# ---------------------------------------------------------------- the gate


def test_sampled_gates_match_their_probabilities() -> None:
    torch.manual_seed(0)
    log_alpha = torch.tensor([-4.0, -1.0, 0.0, 1.0, 3.0])
    n = 200_000
    z = sample_gates(log_alpha, n)
    assert z.shape == (n, 5) and z.min() >= 0 and z.max() <= 1
    hand = torch.tensor([sigmoid(a + 2 / 3 * LOG11) for a in log_alpha.tolist()])
    assert torch.allclose(prob_nonzero(log_alpha), hand, atol=1e-6)
    tolerance = 4 * math.sqrt(0.25 / n)  # four binomial standard deviations at most
    assert ((z > 0).double().mean(0) - hand.double()).abs().max() < tolerance
    # P(z = 1) = P(s >= 11/12) = sigmoid(log alpha - beta log 11): the stretch is right too.
    p_one = torch.tensor([sigmoid(a - 2 / 3 * LOG11) for a in log_alpha.tolist()], dtype=torch.double)
    assert ((z == 1).double().mean(0) - p_one).abs().max() < tolerance
    # Strictly between 0 and 1 there is mass as well: the gate is not a plain Bernoulli.
    assert ((z > 0) & (z < 1)).double().mean() > 0.1


def test_deterministic_gate_hand_values() -> None:
    log_alpha = torch.tensor([-10.0, -LOG11 - 1e-3, 0.0, math.log(3.0), LOG11 + 1e-3, 10.0])
    # clamp(sigmoid(a) * 1.2 - 0.1, 0, 1): 0 below -log 11, 0.5 at 0, 0.8 at log 3, 1 above log 11
    expected = torch.tensor([0.0, 0.0, 0.5, 0.8, 1.0, 1.0])
    assert torch.allclose(deterministic_gates(log_alpha), expected, atol=1e-6)


# ---------------------------------------------------------------- placement


@pytest.mark.parametrize("name,count", [("vgg16", 13), ("resnet56", 28), ("resnet50", 33), ("resnet20", 10)])
def test_placement_follows_the_paper_and_surgery(name: str, count: int) -> None:
    model = build_model(name, 10)
    layers = gate_placement(model)
    assert len(layers) == count
    # Every gated layer but a ResNet stem can be removed physically, and all of surgery's BNs are gated.
    assert [layer.bn for layer in layers if layer.removable] == prunable_bns(model)
    stems = [layer.bn for layer in layers if not layer.removable]
    assert stems == ([] if name == "vgg16" else ["stem.1" if name == "resnet50" else "bn1"])
    for layer in layers:  # each gated BN follows its conv
        assert model.get_submodule(layer.producer).out_channels == model.get_submodule(layer.bn).num_features


def test_densenet_has_no_placement() -> None:
    with pytest.raises(ValueError, match="DenseNet declares no gated channel sites"):
        L0HC(L0HCConfig()).prepare(build_model("densenet40", 10), context())


# ---------------------------------------------------------------- penalty


def test_params_penalty_against_hand_computation_vgg() -> None:
    model, method, _ = gated("vgg", lam=1e-3, penalty="params")
    a = torch.tensor([-1.0, 0.0, 2.0, 3.0])
    b = torch.tensor([-3.0, -2.0, 0.5, 1.0, 1.5, 4.0])
    set_log_alphas(method, [a, b])
    e1 = sum(sigmoid(x + 2 / 3 * LOG11) for x in a.tolist())
    e2 = sum(sigmoid(x + 2 / 3 * LOG11) for x in b.tolist())
    # conv 3 -> 4 (3x3, ungated input) and conv 4 -> 6 (3x3, reading the first gated layer)
    assert method.penalty(model).item() == pytest.approx(1e-3 * (9 * 3 * e1 + 9 * e1 * e2), rel=1e-5)
    textbook = L0HC(L0HCConfig(lam=1e-3, penalty="gates"))
    model2 = textbook.prepare(VGG(layout=[4, "M", 6], num_classes=5), context())
    set_log_alphas(textbook, [a, b])
    assert textbook.penalty(model2).item() == pytest.approx(1e-3 * (e1 + e2), rel=1e-5)


def test_params_penalty_resnet_reads_the_residual_stream_at_full_width() -> None:
    model, method, _ = gated("cifar_resnet", lam=1.0, penalty="params")
    values = [torch.linspace(-3, 3, w) for w in (4, 4, 6, 8)]  # stem, layers.0/1/2.bn1
    set_log_alphas(method, values)
    e = [sum(sigmoid(x + 2 / 3 * LOG11) for x in v.tolist()) for v in values]
    # stem: 3 -> 4; block 0 reads the gated stem output; blocks 1 and 2 read the stream (4 and 6 wide)
    hand = 9 * 3 * e[0] + 9 * e[0] * e[1] + 9 * 4 * e[2] + 9 * 6 * e[3]
    assert method.penalty(model).item() == pytest.approx(hand, rel=1e-5)
    assert L0HC(L0HCConfig(lam=0.0)).penalty(model) is None


def probs(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """P(z != 0) written out: sigmoid(log alpha + (2/3) log 11), clamped to [1e-6, 1 - 1e-6]."""
    return [torch.sigmoid(v + 2 / 3 * LOG11).clamp(1e-6, 1 - 1e-6) for v in values]


def check_value_and_gradient(method: L0HC, model: nn.Module, values: list[torch.Tensor], hand) -> None:  # noqa: ANN001
    """The method's penalty and its gradient against ``hand(values)``, a formula written out here."""
    set_log_alphas(method, values)
    leaves = [v.clone().requires_grad_() for v in values]
    expected = hand(leaves)
    expected.backward()
    got = method.penalty(model)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    for p, leaf in zip(method.gates.log_alpha, leaves):
        assert torch.allclose(p.grad, leaf.grad, rtol=1e-4, atol=1e-12)


def test_release_penalty_vgg_is_the_expected_conv_weights() -> None:
    model, method, _ = gated("vgg", lam=1e-3)  # release: conv 3 -> 4 -> 6, gates chained
    values = [torch.tensor([-1.0, 0.0, 2.0, 3.0]), torch.tensor([-3.0, -2.0, 0.5, 1.0, 1.5, 4.0])]

    def hand(v: list[torch.Tensor]) -> torch.Tensor:
        e1, e2 = (p.sum() for p in probs(v))
        return 1e-3 * (9 * 3 * e1 + 9 * e1 * e2)

    check_value_and_gradient(method, model, values, hand)


def test_release_penalty_cifar_resnet_chains_consecutive_gates() -> None:
    model, method, _ = gated("cifar_resnet", lam=1.0)  # stem 4, blocks 4, 6, 8 channels
    values = [torch.linspace(-3, 3, w) for w in (4, 4, 6, 8)]

    def hand(v: list[torch.Tensor]) -> torch.Tensor:
        # the release charges each block's conv1 for the previous gated layer's channels,
        # although blocks 1 and 2 read the residual stream (4 and 6 channels wide)
        e = [p.sum() for p in probs(v)]
        return 9 * 3 * e[0] + 9 * e[0] * e[1] + 9 * e[1] * e[2] + 9 * e[2] * e[3]

    check_value_and_gradient(method, model, values, hand)


def test_release_penalty_resnet50_counts_the_kernel_twice_and_the_full_input() -> None:
    model, method, _ = gated("resnet50_like", lam=1.0)
    widths = [model.get_submodule(site.bn).num_features for site in method.layers]
    assert widths == [64, 64, 64, 128, 128, 256, 256, 512, 512]  # stem, then bn1 and bn2 of four bottlenecks
    values = [torch.linspace(-4, 4, w) for w in widths]
    convs = [model.get_submodule(site.producer) for site in method.layers]

    def hand(v: list[torch.Tensor]) -> torch.Tensor:
        # sum over gated convs of (k_h k_w)^2 * full input width * E_out: stem 49^2 * 3, conv1 1 * C_in,
        # conv2 81 * planes
        terms = [(c.kernel_size[0] * c.kernel_size[1]) ** 2 * c.in_channels * p.sum() for c, p in zip(convs, probs(v))]
        return torch.stack(terms).sum()

    assert [c.kernel_size for c in convs][:3] == [(7, 7), (1, 1), (3, 3)]
    check_value_and_gradient(method, model, values, hand)


def test_p_nonzero_is_clamped_as_in_the_release() -> None:
    la = torch.tensor([-30.0, 0.0, 30.0], requires_grad=True)
    p = prob_nonzero(la)
    assert p[0].item() == pytest.approx(1e-6) and p[2].item() == pytest.approx(1 - 1e-6)
    p.sum().backward()
    assert la.grad[0] == 0 and la.grad[2] == 0 and la.grad[1] > 0  # no gradient beyond the clamp


def test_gate_schedule_is_the_gates_own() -> None:
    model, method, _ = gated("vgg")
    method.cfg = L0HCConfig(gate_schedule=Schedule("constant"))
    (extra,) = method.extra_optimizers(model)
    assert extra.schedule == Schedule("constant")
    exp = ExperimentConfig(
        name="t",
        model="vgg16",
        data=DataConfig(dataset="cifar10"),
        train=TrainConfig(epochs=4, schedule=Schedule(milestones=[1, 2], gamma=0.2)),
        optimizer=SGDConfig(name="sgd", lr=0.05),
        method=method.cfg,
    )
    optimizers, schedulers = optimizer_factory(exp, method)(method.stages(4)[0], model)
    for _ in range(3):
        for opt, sched in zip(optimizers, schedulers):
            opt.step()
            sched.step()
    assert optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.2**2)  # the weights decay
    assert optimizers[1].param_groups[0]["lr"] == pytest.approx(1e-3)  # the gates do not
    with pytest.raises(ValueError, match="gate_schedule.milestones: 5 is not inside"):
        L0HC(L0HCConfig(gate_schedule=Schedule(milestones=[5]))).check_budget(10, 4)


def test_penalty_gradient_closes_gates() -> None:
    model, method, _ = gated("vgg", lam=1e-2)
    method.penalty(model).backward()
    for p in method.gates.log_alpha:  # a larger log alpha costs more: gradient descent lowers it
        assert p.grad is not None and (p.grad > 0).all()


# ---------------------------------------------------------------- hooks


def test_training_samples_per_example_and_channel_eval_is_deterministic() -> None:
    build, shape = CASES["vgg"]
    torch.manual_seed(0)
    model = build()
    before, after = [], []
    model.features[1].register_forward_hook(lambda m, i, o: before.append(o.detach().clone()))
    method = L0HC(L0HCConfig())
    model = method.prepare(model, context())
    model.features[1].register_forward_hook(lambda m, i, o: after.append(o.detach().clone()))
    set_log_alphas(method, [torch.zeros(4), torch.zeros(6)])
    x = torch.randn(64, *shape)
    model.train()
    model(x)
    z = after[-1] / before[-1]  # (64, 4, 4, 4): one gate per example and channel, shared over positions
    assert torch.allclose(z, z[:, :, :1, :1].expand_as(z), atol=1e-5)
    per_example = z[:, :, 0, 0]
    assert per_example.min() >= 0 and per_example.max() <= 1 + 1e-6
    assert (per_example.std(0) > 0.1).all()  # varies across examples for every channel
    model.eval()
    model(x)
    assert torch.allclose(after[-1], before[-1] * 0.5, atol=1e-6)  # deterministic gate at log alpha 0


def test_gate_parameters_are_in_the_model_state_dict() -> None:
    model, method, _ = gated("cifar_resnet")
    keys = [k for k in model.state_dict() if k.startswith(GATES)]
    assert keys == [f"{GATES}.log_alpha.{i}" for i in range(4)]
    init = torch.cat([p.detach() for p in method.gates.log_alpha])
    assert (init - 3.0).abs().max() < 0.05 and init.std() > 0  # 3 +- 0.01: open, not identical


def test_param_groups_and_frozen_finetuning() -> None:
    model, method, shape = gated("vgg")
    cfg = L0HCConfig(finetune_epochs=4, finetune_lr=0.01)
    method.cfg = cfg
    stages = method.stages(10)
    assert [(s.name, s.epochs, s.penalty, s.lr) for s in stages] == [
        ("train", 10, True, None),
        ("finetune", 4, False, 0.01),
    ]
    assert stages[1].schedule.name == "constant"
    method.begin_stage(stages[0], model)
    (weights,) = method.param_groups(model)
    (gates,) = method.extra_optimizers(model)
    gate_params = list(method.gates.parameters())
    assert (gates.params, gates.kind, gates.lr, gates.weight_decay, gates.schedule) == (
        gate_params,
        "adam",
        1e-3,
        0.0,
        None,
    )
    assert len(weights["params"]) + len(gate_params) == len(list(model.parameters()))
    assert not {id(p) for p in weights["params"]} & {id(p) for p in gate_params}

    method.begin_stage(stages[1], model)
    assert [len(g["params"]) for g in method.param_groups(model)] == [len(weights["params"])]
    assert method.extra_optimizers(model) == []
    assert not any(p.requires_grad for p in gate_params)
    model.train()
    x = torch.randn(8, *shape)
    assert torch.equal(model(x), model(x))  # frozen: deterministic gates in training mode too
    assert method.state_dict()["frozen"] is True
    with pytest.raises(ValueError, match="finetune_lr"):
        L0HCConfig(finetune_epochs=2)


def test_the_gates_adam_updates_every_gate_tensor_in_one_operation() -> None:
    from experiments.bench.train import top_level_ops

    model, method, shape = gated("cifar_resnet")
    cfg = resnet20_experiment(method=method.cfg)
    optimizers, _ = optimizer_factory(cfg, method)(method.stages(1)[0], model)
    gate_adam = optimizers[-1]
    assert gate_adam.param_groups[0]["params"] == list(method.gates.parameters())
    model(torch.randn(2, *shape)).sum().backward()
    gate_adam.step()  # the first step sets up the state
    ops = top_level_ops(gate_adam.step)
    assert len(list(method.gates.parameters())) > 1
    assert ops["aten::_fused_adam_"] == 1 and "aten::item" not in ops  # no per-tensor step count read back


# ---------------------------------------------------------------- export


def closing_log_alphas(method: L0HC, generator: torch.Generator, all_closed: int) -> list[torch.Tensor]:
    """Log alphas in [-6, 6] (closed, fractional and fully open gates), the first channel of each
    layer open, every gate of layer ``all_closed`` closed (-1: none), the stem half closed."""
    values = []
    for i, (layer, p) in enumerate(zip(method.layers, method.gates.log_alpha)):
        v = torch.rand(p.numel(), generator=generator) * 12 - 6
        v[0] = 5.0
        if not layer.removable:
            v[1::2] = -5.0
        if i == all_closed:
            v[:] = -5.0
        values.append(v)
    return values


@pytest.mark.parametrize("case", list(CASES))
def test_export_equals_gated_model_in_eval(case: str) -> None:
    model, method, shape = gated(case)
    all_closed = 1 if case != "vgg" else 0  # a removable layer of each model loses every gate
    values = closing_log_alphas(method, torch.Generator().manual_seed(1), all_closed)
    set_log_alphas(method, values)
    model.eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        expected = model(x)
        final = method.export(model)
        got = final.eval()(x)
        assert torch.equal(model(x), expected)  # the gated model is left as it was
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not hasattr(final, GATES)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in final.modules())
    for i, (layer, v) in enumerate(zip(method.layers, values)):
        n_open = int((deterministic_gates(v) > 0).sum())
        assert method.channels_open[layer.bn] == n_open
        width = final.get_submodule(layer.bn).num_features
        if layer.removable:
            assert width == (1 if i == all_closed else n_open)
        else:  # the stem keeps its width; its closed channels are exact zeros
            assert width == v.numel() and 0 < n_open < width
            closed = deterministic_gates(v) == 0
            assert (final.get_submodule(layer.producer).weight[closed] == 0).all()
            for reader in layer.consumers:
                assert (final.get_submodule(reader).weight[:, closed] == 0).all()
    metrics = method.metrics(final)
    assert metrics["channels_physical"] == {
        layer.bn: final.get_submodule(layer.bn).num_features for layer in method.layers
    }
    assert metrics["params_physical"] == sum(p.numel() for p in final.parameters())
    assert metrics["flops_physical"] > 0 and metrics["channels_open"] == method.channels_open
    assert set(metrics["latency"]) >= {"cpu_batch1", "cpu_batch128"}  # exported against the unshrunk model
    assert metrics["latency"]["cpu_batch1"]["speedup"] > 0


@pytest.mark.parametrize("case", ["vgg", "cifar_resnet", "resnet50_like"])
def test_sparsity_during_training_equals_exported_sparsity(case: str) -> None:
    model, method, shape = gated(case)
    set_log_alphas(method, closing_log_alphas(method, torch.Generator().manual_seed(2), all_closed=-1))
    model.eval()
    model(torch.randn(1, *shape))  # records the input shape
    live = method.sparsity(model)
    assert live.dim() == 0
    final = method.export(model)
    dense = CASES[case][0]()
    exported = sparsity_report(final, dense, shape)["sparsity"]
    assert 0.05 < exported < 0.95
    assert live.item() == pytest.approx(exported, abs=1e-6)


def test_export_of_fully_open_gates_changes_nothing() -> None:
    model, method, shape = gated("cifar_resnet")
    set_log_alphas(method, [torch.full((p.numel(),), 5.0) for p in method.gates.log_alpha])
    assert method.sparsity(model).item() == 0.0
    final = method.export(model)
    reference = copy.deepcopy(CASES["cifar_resnet"][0]())
    assert sum(p.numel() for p in final.parameters()) == sum(p.numel() for p in reference.parameters())


# ---------------------------------------------------------------- through the runner


CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train:
  epochs: 2
  schedule: {name: multistep, milestones: [1]}
optimizer: {name: sgd, lr: 0.05, weight_decay: 5e-4}
method: {name: l0hc, lam: 1.0e-4, gate_lr: 0.05, finetune_epochs: 1, finetune_lr: 0.01}
"""


def run(folder: Path, data_root: Path) -> int:
    return run_config(folder, data_root, CONFIG)


def test_run_with_finetuning_resumes_exactly(tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=3)  # fine-tuning
    ckpt = run_dir(killed) / "checkpoint.pt"
    gates_before = {k: v for k, v in torch.load(ckpt, weights_only=True)["model"].items() if k.startswith(GATES)}
    assert run(killed, tiny_cifar) == 0
    final_state = torch.load(ckpt, weights_only=True)
    for k, v in gates_before.items():  # the fine-tuning stage leaves the gates alone
        assert torch.equal(final_state["model"][k], v)
    assert [r["stage"] for r in final_state["history"]] == ["train", "train", "finetune"]

    a, b = comparable_metrics(straight), comparable_metrics(killed)
    assert a == b
    assert a["method"] == "l0hc" and a["epochs"] == 3
    assert {"params_physical", "flops_physical", "channels_open", "channels_physical"} <= set(a)
    assert a["params_physical"] == a["params_total"]
    assert sum(a["channels_physical"].values()) <= sum(a["channels_dense"].values())


# ---------------------------------------------------------------- one draw for every layer's gates


def per_layer_sample(log_alpha: torch.Tensor, n: int) -> torch.Tensor:
    """The straightforward formulation: each layer draws its own uniforms when its BN has run."""
    u = torch.rand((n, log_alpha.numel()), device=log_alpha.device, dtype=log_alpha.dtype) * (1 - 2 * 1e-6) + 1e-6
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / (2.0 / 3.0))
    return (s * (1.1 + 0.1) - 0.1).clamp(0.0, 1.0)


def per_layer_expected_size(self: ChannelGates, log_alphas: list[torch.Tensor]) -> torch.Tensor:
    """The penalty's expected size computed layer by layer, as it was written before it was batched."""
    probs = [torch.sigmoid(la - (2.0 / 3.0) * math.log(0.1 / 1.1)).clamp(1e-6, 1 - 1e-6) for la in log_alphas]
    if self.cfg.penalty == "gates":
        return torch.stack([p.sum() for p in probs]).sum()
    open_ = [p.sum() for p in probs]
    if self.cfg.penalty == "params":
        inputs = [open_[s] if s is not None else w for s, w in zip(self._source, self._in_width)]
    elif self._bottlenecks:
        return torch.stack([k * k * w * c for k, w, c in zip(self._kernel, self._in_width, open_)]).sum()
    else:
        inputs = [self._in_width[0], *open_[:-1]]
    return torch.stack([k * i * c for k, i, c in zip(self._kernel, inputs, open_)]).sum()


class PerTensorAdam(torch.optim.Adam):
    """Adam's per-tensor loop (the CPU default), whatever the caller asks for."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **{**kwargs, "foreach": False, "fused": False})


def per_layer_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The straightforward formulation of the gated methods: each layer draws and computes its gates
    in its own hook, the penalty is summed layer by layer, and the gates' Adam loops over tensors."""
    from pruning import gates

    def begin_per_layer(self: gates.ChannelGates, module: nn.Module, args: tuple) -> None:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            self._current = self.gates.log_alphas()
        self._gates_now = []  # every hook computes its own layer's gates

    monkeypatch.setattr(gates, "sample_gates", per_layer_sample)
    monkeypatch.setattr(gates.ChannelGates, "_begin_forward", begin_per_layer)
    monkeypatch.setattr(gates.ChannelGates, "expected_size", per_layer_expected_size)
    monkeypatch.setattr(torch.optim, "Adam", PerTensorAdam)


def close(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> bool:
    """Equal up to float rounding: computed over all layers at once, an entry may take the vectorised
    or the scalar path of the same function (sigmoid, log) where layer by layer it took the other."""
    return found.keys() == expected.keys() and all(
        torch.allclose(found[k].double(), expected[k].double(), rtol=1e-5, atol=1e-7) for k in expected
    )


@pytest.mark.parametrize("method_name", ["l0hc", "dep_l0"])
@pytest.mark.parametrize("case", list(CASES))
def test_all_layers_gates_at_once_train_as_layer_by_layer(
    case: str, method_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pruning.methods.dep_l0 import DepL0, DepL0Config

    def train() -> tuple[dict[str, torch.Tensor], list[float], torch.Tensor]:
        build, shape = CASES[case]
        torch.manual_seed(0)
        method = L0HC(L0HCConfig(lam=1e-3)) if method_name == "l0hc" else DepL0(DepL0Config(lam=1e-3))
        model = method.prepare(build(), context(input_shape=shape))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        losses = []
        model.train()
        for _ in range(3):
            x, y = torch.randn(4, *shape, generator=gen), torch.randint(0, 5, (4,), generator=gen)
            loss = nn.functional.cross_entropy(model(x), y) + method.penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            evaluated = model(torch.randn(4, *shape, generator=gen))
        return model.state_dict(), losses, evaluated

    at_once, at_once_losses, at_once_eval = train()
    with monkeypatch.context() as m:
        per_layer_gates(m)
        reference, reference_losses, reference_eval = train()
    assert at_once_losses == pytest.approx(reference_losses, rel=1e-6)
    assert close(at_once, reference)
    assert close({"eval": at_once_eval}, {"eval": reference_eval})


@pytest.mark.parametrize("method_name", ["l0hc", "dep_l0"])
@pytest.mark.parametrize("case", list(CASES))
def test_all_layers_gates_at_once_are_one_draw_and_one_pass(case: str, method_name: str) -> None:
    """The draws are exactly those of one (n, C) draw per layer in turn; each elementwise operation of
    the gates (and of the penalty) runs once per forward, not once per layer."""
    from torch.profiler import ProfilerActivity, profile

    from pruning.gates import logistic_noise
    from pruning.methods.dep_l0 import DepL0, DepL0Config

    build, shape = CASES[case]
    torch.manual_seed(0)
    method = L0HC(L0HCConfig(lam=1e-3)) if method_name == "l0hc" else DepL0(DepL0Config(lam=1e-3))
    model = method.prepare(build(), context(input_shape=shape))
    widths = [la.numel() for la in method.gates.log_alphas()]
    torch.manual_seed(5)
    at_once = logistic_noise(widths, 3, torch.device("cpu"), torch.float32)
    torch.manual_seed(5)
    in_turn = [torch.rand((3, w)) * (1 - 2 * 1e-6) + 1e-6 for w in widths]
    expected = torch.cat([(torch.log(u) - torch.log1p(-u)).flatten() for u in in_turn])
    assert torch.allclose(at_once, expected, rtol=1e-6, atol=1e-6)  # other draws would differ by O(1)

    model.train()
    x = torch.randn(3, *shape)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss = model(x).sum() + method.penalty(model)
        loss.backward()
    names = [e.name for e in prof.events()]
    assert len(widths) >= 2  # layer by layer would count 2 per layer
    assert names.count("aten::rand") == 1
    assert names.count("aten::sigmoid") == 2  # the gates, and P(z != 0) in the penalty
    assert names.count("aten::clamp") == 2


@pytest.mark.parametrize("variant", ["l0hc", "dep_l0"])
def test_the_gated_methods_train_as_layer_by_layer_through_the_loop(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments.bench.train import method_trainer, synthetic_cifar

    def train() -> tuple[dict[str, torch.Tensor], list[float]]:
        trainer = method_trainer(
            "resnet20", variant, synthetic_cifar(24), 8, torch.device("cpu"), 1, False, False, False
        )
        trainer.run()
        return trainer.model.state_dict(), [row["train_loss"] for row in trainer.history]

    at_once, at_once_losses = train()
    with monkeypatch.context() as m:
        per_layer_gates(m)
        reference, reference_losses = train()
    assert at_once_losses == pytest.approx(reference_losses, rel=1e-6)
    assert close(at_once, reference)
