"""RigL: ERK densities by their definition, updates that move connections while every layer keeps
its exact number of weights (drop the smallest |w|, regrow the largest |g|, regrown at zero with
no momentum), the cosine update fraction, and an exact resume through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pruning.accounting import prunable_weights
from pruning.base import Duration, Stage
from pruning.methods.rigl import RigL, RigLConfig, erk_densities, update_fraction
from tests.helpers import (
    Batches,
    check_points_and_recipe_of_the_other_baselines,
    comparable_metrics,
    context,
    run_config,
    straight_and_interrupted,
    tiny_net,
)


def test_erk_densities_by_definition() -> None:
    shapes = {"a": torch.Size([6, 3, 3, 3]), "b": torch.Size([6, 6, 3, 3]), "c": torch.Size([3, 6])}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    d = erk_densities(shapes, 0.1)
    assert sum(d[n] * sizes[n] for n in shapes) == pytest.approx(0.1 * sum(sizes.values()))
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}  # 15/162, 18/324, 9/18
    assert d["a"] / d["b"] == pytest.approx(raw["a"] / raw["b"])
    assert d["c"] / d["b"] == pytest.approx(raw["c"] / raw["b"]) and d["c"] == pytest.approx(0.6)
    dense = erk_densities(shapes, 0.3)  # the small linear layer would exceed 1: kept dense, the rest rescaled
    assert dense["c"] == 1.0 and all(v <= 1.0 for v in dense.values())
    assert sum(dense[n] * sizes[n] for n in shapes) == pytest.approx(0.3 * sum(sizes.values()))
    assert dense["a"] / dense["b"] == pytest.approx(raw["a"] / raw["b"])


def test_update_fraction_decays_with_a_cosine() -> None:
    assert update_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert update_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert update_fraction(100, 0.3, 100) == pytest.approx(0.0)


def test_updates_move_connections_and_keep_every_layer_count() -> None:
    cfg = RigLConfig(sparsity=0.6, drop_fraction=0.5, every=Duration.parse("1it"), end=Duration.parse("50it"))
    method, model = RigL(cfg), tiny_net()
    method.prepare(model, context(Batches(n=2)))
    method.begin_stage(Stage("train", 1), model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.ctx.optimizers = [optimizer]
    weights = prunable_weights(model)
    counts = {n: int(m.sum()) for n, m in method.masker.masks.items()}
    densities = erk_densities({n: w.shape for n, w in weights.items()}, 0.4)
    assert counts == {n: round(densities[n] * w.numel()) for n, w in weights.items()}
    moved = 0
    for step in range(3):
        x, y = Batches(n=1, seed=step).epoch(0)[0]
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        dense_grad = method.grads and {n: g.clone() for n, g in method.grads.items()}
        before_masks = {n: m.clone() for n, m in method.masker.masks.items()}
        optimizer.step()
        stepped = {n: w.detach().clone() for n, w in weights.items()}
        method.after_step(model, step)
        fraction = update_fraction(step + 1, 0.5, 50)
        for name, w in weights.items():
            old, new = before_masks[name], method.masker.masks[name]
            assert int(new.sum()) == counts[name]  # the layer's count never changes
            # The definition: drop the k smallest |w| of the active weights, regrow the k largest |g|
            # among the rest (the weights just dropped included).
            k = math.floor(fraction * counts[name])
            magnitude = torch.where(old, stepped[name].abs(), torch.full_like(w, math.inf)).flatten()
            drop = torch.zeros(w.numel(), dtype=torch.bool)
            drop[torch.topk(magnitude, k, largest=False).indices] = True
            candidates = ~old.flatten() | drop
            growth = torch.where(candidates, dense_grad[name].abs().flatten(), torch.full_like(magnitude, -1.0))
            grow = torch.zeros(w.numel(), dtype=torch.bool)
            grow[torch.topk(growth, k).indices] = True
            assert torch.equal(new.flatten(), (old.flatten() & ~drop) | grow), (step, name)
            dropped, grown = old & ~new, new & ~old
            assert (w[grown] == 0).all() and (w[~new] == 0).all()  # regrown at zero, inactive at zero
            buffer = optimizer.state[w]["momentum_buffer"]
            assert (buffer[dropped | grown] == 0).all()
            moved += int(grown.sum())
    assert moved > 0


CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 3, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
method: {name: rigl, sparsity: 0.7, every: 2it, end: 3ep}
"""


def test_killed_run_resumes_to_the_same_metrics(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=2)
    assert run_config(killed, tiny_cifar, CONFIG) == 0
    assert comparable_metrics(killed) == comparable_metrics(straight)
    metrics = comparable_metrics(straight)
    total = metrics["prunable_weights_dense"]
    assert metrics["mask_sparsity"] == pytest.approx(1 - sum(round(d * n) for d, n in zip(*_erk(metrics))) / total)


def _erk(metrics: dict) -> tuple[list[float], list[int]]:
    shapes = {layer["layer"]: torch.Size(layer["shape"]) for layer in metrics["layers"]}
    densities = erk_densities(shapes, 0.3)
    return [densities[n] for n in shapes], [math.prod(s) for s in shapes.values()]


def test_configs_cover_the_operating_points_of_the_other_baselines() -> None:
    check_points_and_recipe_of_the_other_baselines("rigl")
