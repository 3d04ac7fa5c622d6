"""Gradual magnitude pruning: after every step t the masks hold exactly round(s_t N) zeros of the
cubic schedule, globally or per layer; newly pruned weights lose their momentum; runs are exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pruning.accounting import prunable_weights
from pruning.base import Duration, Stage
from pruning.methods.gmp import GMP, GMPConfig, cubic_sparsity
from tests.helpers import (
    Batches,
    check_points_and_recipe_of_the_other_baselines,
    context,
    run_config,
    run_dir,
    tiny_net,
    train,
)


def schedule(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """Zhu & Gupta's formula, written out."""
    return s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3


def test_cubic_schedule_steps() -> None:
    # t0 = 4, dt = 3, n = 4: pruning at t = 4, 7, 10, 13, 16
    for t in range(30):
        got = cubic_sparsity(t, 0.1, 0.9, 4, 4, 3)
        if t in (4, 7, 10, 13, 16):
            assert got == pytest.approx(schedule(t, 0.1, 0.9, 4, 4, 3))
        else:
            assert got is None
    assert cubic_sparsity(4, 0.1, 0.9, 4, 4, 3) == pytest.approx(0.1)
    assert cubic_sparsity(16, 0.1, 0.9, 4, 4, 3) == pytest.approx(0.9)
    assert cubic_sparsity(5, 0.0, 0.8, 5, 0, 2) == 0.8  # n = 0: one pruning step to the target


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_sparsity_after_every_step_follows_the_schedule(scope: str) -> None:
    # 2 steps an epoch: begin 2it, end 3ep = 6it, every 1it -> t0 = 2, dt = 1, n = 4
    cfg = GMPConfig(
        sparsity=0.75,
        initial_sparsity=0.1,
        begin=Duration.parse("2it"),
        end=Duration.parse("3ep"),
        every=Duration.parse("1it"),
        scope=scope,
    )
    method, model = GMP(cfg), tiny_net()
    method.prepare(model, context(Batches(n=2)))
    method.begin_stage(Stage("train", 5), model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.ctx.optimizers = [optimizer]
    weights = prunable_weights(model)
    expected_target = 0.0
    for step in range(10):
        x, y = Batches(n=1, seed=step).epoch(0)[0]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        method.after_step(model, step)
        t = step + 1
        if 2 <= t <= 6:
            expected_target = schedule(t, 0.1, 0.75, 2, 4, 1)
        groups = [weights] if scope == "global" else [{n: w} for n, w in weights.items()]
        for group in groups:
            total = sum(w.numel() for w in group.values())
            zeros = sum(int((w == 0).sum()) for w in group.values())
            assert zeros == round(expected_target * total), (t, scope)
            masked = sum(int((~method.masker.masks[n]).sum()) for n in group) if method.masker.masks else 0
            assert masked == zeros
        for name, mask in method.masker.masks.items():  # pruned weights keep no momentum
            buffer = optimizer.state[weights[name]]["momentum_buffer"]
            assert (buffer[~mask] == 0).all()
    assert expected_target == pytest.approx(0.75)


def test_resume_mid_schedule_is_exact() -> None:
    cfg = GMPConfig(sparsity=0.8, begin=Duration.parse("1it"), end=Duration.parse("5it"), every=Duration.parse("1it"))
    checkpoints: list = []
    full, _, _ = train(cfg, epochs=4, checkpoints=checkpoints)
    resumed, _, _ = train(cfg, epochs=4, resume=checkpoints[1])  # after 4 of the 8 steps
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 3, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
method: {name: gmp, sparsity: 0.7, begin: 1it, end: 2ep, every: 2it, scope: layer}
"""


def test_run_through_the_runner_reaches_the_target(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run_config(tmp_path, tiny_cifar, CONFIG) == 0
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    for layer in metrics["layers"]:
        assert layer["weights"] - layer["nonzero"] == round(0.7 * layer["weights"]), layer["layer"]


def test_configs_cover_the_operating_points_of_the_other_baselines() -> None:
    check_points_and_recipe_of_the_other_baselines("gmp")
