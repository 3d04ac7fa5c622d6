"""training.build: a config's BN initialisation, and the run context methods receive."""

from __future__ import annotations

import torch
from torch import nn

from tests.helpers import Batches, resnet20_experiment
from training.build import build_model_and_method, run_context


def built(bn_weight_init: float | str, seed: int = 0) -> nn.Module:
    cfg = resnet20_experiment(bn_weight_init=bn_weight_init)
    torch.manual_seed(seed)
    ctx = run_context(torch.device("cpu"), {"input_shape": [3, 8, 8], "num_classes": 10}, Batches(), seed)
    return build_model_and_method(cfg, ctx)[0]


def bn_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])


def test_bn_scales_start_as_the_config_says() -> None:
    assert (bn_weights(built(1.0)) == 1).all()
    assert (bn_weights(built(0.5)) == 0.5).all()  # network slimming's release
    uniform = bn_weights(built("uniform"))  # open_lth's
    assert (uniform >= 0).all() and (uniform < 1).all() and uniform.std() > 0.2
    assert torch.equal(uniform, bn_weights(built("uniform")))  # seeded
    convs = [built(1.0).layers[0].conv1.weight, built(0.5).layers[0].conv1.weight]
    assert torch.equal(*convs)  # a constant scale draws no random number: the rest is unchanged


def test_run_context_holds_what_methods_may_use() -> None:
    batches = Batches(n=3)
    ctx = run_context(torch.device("cpu"), {"input_shape": [3, 8, 8], "num_classes": 3}, batches, seed=4)
    assert ctx.input_shape == (3, 8, 8) and ctx.num_classes == 3 and ctx.steps_per_epoch == 3
    assert ctx.train_batches is batches and ctx.seed == 4 and ctx.world_size == 1
    t = torch.ones(2)
    assert ctx.reduce(t) is t  # one process: the identity
