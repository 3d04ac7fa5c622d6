"""Dep-L0: the log-alpha generator (shapes, formula, dependency direction, initial openness) and the method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import build_model
from models.resnet_cifar import CifarResNet
from pruning.gates import GATES, deterministic_gates, prob_nonzero
from pruning.methods.dep_l0 import DepL0, DepL0Config, GateGenerator
from pruning.registry import METHODS
from tests.helpers import context
from training.config import load_config
from training.schema import ConfigError

WIDTHS = [4, 6, 8]


@pytest.mark.parametrize(
    "direction,shapes",
    [
        ("forward", [(4, 4), (6, 4), (8, 6)]),  # fed a ones vector as wide as the first layer
        ("backward", [(8, 8), (6, 8), (4, 6)]),  # the chain starts at the last layer
    ],
)
def test_generator_shapes(direction: str, shapes: list[tuple[int, int]]) -> None:
    torch.manual_seed(0)
    g = GateGenerator(WIDTHS, direction)
    assert [tuple(w.shape) for w in g.weight] == shapes
    assert [b.numel() for b in g.bias] == [s[0] for s in shapes]
    assert [la.shape for la in g.log_alphas()] == [torch.Size([w]) for w in WIDTHS]  # layer order either way
    assert not any(isinstance(m, nn.Linear) for m in g.modules())  # never counted as a prunable layer


def test_generator_formula_by_hand() -> None:
    g = GateGenerator([2, 3], "forward")
    with torch.no_grad():
        g.weight[0].copy_(torch.tensor([[0.5, -1.0], [2.0, 0.0]]))
        g.bias[0].copy_(torch.tensor([0.1, -0.2]))
        g.weight[1].copy_(torch.tensor([[0.1, 0.2], [-0.3, 0.0], [0.0, 0.05]]))
        g.bias[1].copy_(torch.tensor([0.0, 1.0, -1.0]))
    c = math.log(100.0)
    h1 = [c * math.tanh(0.5 - 1.0 + 0.1), c * math.tanh(2.0 - 0.2)]
    h2 = [
        c * math.tanh(0.1 * h1[0] + 0.2 * h1[1]),
        c * math.tanh(-0.3 * h1[0] + 1.0),
        c * math.tanh(0.05 * h1[1] - 1.0),
    ]
    a, b = g.log_alphas()
    assert torch.allclose(a, torch.tensor(h1), atol=1e-5) and torch.allclose(b, torch.tensor(h2), atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_dependency_direction(direction: str) -> None:
    torch.manual_seed(0)
    g = GateGenerator(WIDTHS, direction)
    g.log_alphas()[0].sum().backward()  # the first layer's gates
    touched = [w.grad is not None and bool(w.grad.abs().sum() > 0) for w in g.weight]
    # forward: the first layer's gates come from the chain's first Linear only;
    # backward: they are the end of the chain and depend on every Linear.
    assert touched == ([True, False, False] if direction == "forward" else [True, True, True])


@pytest.mark.parametrize("model_name", ["resnet56", "vgg16"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_initial_gates_are_mostly_open(model_name: str, direction: str) -> None:
    torch.manual_seed(0)
    method = DepL0(DepL0Config(direction=direction))
    method.prepare(build_model(model_name, 10), context())
    log_alphas = method.gates.log_alphas()
    bound = math.log(100.0)
    flat = torch.cat(log_alphas).detach()
    assert flat.abs().max() <= bound + 1e-5  # ln(100) tanh(.): bounded (float32 tanh may reach 1)
    first = log_alphas[0 if direction == "forward" else -1].detach()
    assert (deterministic_gates(first) == 1).all()  # bias 3 +- small: the chain's first layer is fully open
    assert prob_nonzero(flat).mean() > 0.85
    assert (deterministic_gates(flat) == 0).float().mean() < 0.15


def test_method_uses_the_generator_for_gates_penalty_and_export() -> None:
    torch.manual_seed(0)
    method = DepL0(DepL0Config(lam=1e-3, direction="backward"))
    model = method.prepare(CifarResNet(8, 5, widths=(4, 6, 8)), context())
    assert isinstance(getattr(model, GATES), GateGenerator)
    assert [k for k in model.state_dict() if k.startswith(GATES)] == [
        f"{GATES}.{kind}.{i}" for kind in ("weight", "bias") for i in range(4)
    ]
    (gates,) = method.extra_optimizers(model)
    assert gates.kind == "adam" and gates.params == list(method.gates.parameters())
    # Penalty: the release's, 1e-3 x k^2 E[previous gated layer] E[C_out], from the generated log alphas.
    e = [prob_nonzero(la).sum().item() for la in method.gates.log_alphas()]
    hand = 9 * 3 * e[0] + 9 * e[0] * e[1] + 9 * e[1] * e[2] + 9 * e[2] * e[3]
    penalty = method.penalty(model)
    assert penalty.item() == pytest.approx(1e-3 * hand, rel=1e-5)
    penalty.backward()
    assert all(p.grad is not None for p in method.gates.parameters())

    with torch.no_grad():  # close some gates: large negative biases on part of each layer
        for b in method.gates.bias:
            b[1::2] = -20.0
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        final = method.export(model)
        assert torch.allclose(final.eval()(x), expected, rtol=1e-4, atol=1e-5)
    assert final.get_submodule("layers.2.bn1").num_features < 8


def test_config_is_registered_and_validated(tmp_path) -> None:  # noqa: ANN001
    assert METHODS["dep_l0"] is DepL0
    text = (
        "model: resnet20\ndata: {dataset: cifar10}\ntrain: {epochs: 2}\noptimizer: {name: sgd, lr: 0.1}\n"
        "method: {name: dep_l0, lam: 1.0e-6, direction: sideways}\n"
    )
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="method.direction"):
        load_config(path)
    path.write_text(text.replace("sideways", "backward"))
    cfg = load_config(path)
    assert cfg.method.direction == "backward" and cfg.method.lam == 1e-6 and cfg.method.gate_lr == 1e-3


def test_penalty_reuses_the_log_alphas_of_the_training_forward() -> None:
    torch.manual_seed(0)
    method = DepL0(DepL0Config(lam=1e-3, direction="forward"))
    model = method.prepare(CifarResNet(8, 5, widths=(4, 6, 8)), context()).train()
    for shift in (0.0, -2.0):  # the second forward sees changed generator weights
        with torch.no_grad():
            for b in method.gates.bias:
                b += shift
        model(torch.randn(2, 3, 8, 8))
        penalty = method.penalty(model)
        fresh = 1e-3 * method.expected_size(method.gates.log_alphas())
        assert penalty.item() == pytest.approx(fresh.item(), rel=1e-6)
        method.gates.zero_grad()
        penalty.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.gates.parameters())


def test_the_input_width_of_the_chain_is_an_option() -> None:
    """The release feeds both VGG chains a 64-wide input: backward starts 64 -> 512, not 512 -> 512."""
    widths = [64, 128, 512]
    release = GateGenerator(widths, "backward", input_width=64)
    assert [tuple(w.shape) for w in release.weight] == [(512, 64), (128, 512), (64, 128)]
    default = GateGenerator(widths, "backward")
    assert tuple(default.weight[0].shape) == (512, 512)
    method = DepL0(DepL0Config(direction="backward", input_width=64))
    method.prepare(build_model("vgg16", 10), context())
    assert tuple(method.gates.weight[0].shape) == (512, 64) and len(method.gates.log_alphas()) == 13
