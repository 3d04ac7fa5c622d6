"""GraSP: the score is -w * (H g) computed from its definition with the full Hessian, the highest
scores are removed, the class-balanced batch is what the paper draws, and a run through the runner
reaches the exact target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pruning.base import Stage
from pruning.methods.grasp import GraSP, GraSPConfig, class_balanced_batch
from tests.helpers import check_points_and_recipe_of_the_other_baselines, context, run_config, run_dir


class LabelledBatches:
    """Two fixed batches of 3x4x4 images in double precision, every one of 3 classes present 4 times."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(3)
        labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])[torch.randperm(12, generator=gen)]
        images = torch.randn(12, 3, 4, 4, generator=gen, dtype=torch.float64)
        self.data = [(images[:6], labels[:6]), (images[6:], labels[6:])]

    def epoch(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.data

    def __len__(self) -> int:
        return 2


def small_net() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, bias=False), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3))
    return net.double()


def reference_scores(model: nn.Module, batches: LabelledBatches, per_class: int, T: float) -> dict[str, torch.Tensor]:
    """The definition, with the Hessian written out: L(theta) = sum over the two halves of the
    class-ordered batch of the mean cross-entropy of logits / T; S = -theta * (H g), g = grad L."""
    x, y = class_balanced_batch(batches.epoch(0), 3, per_class)
    half = len(y) // 2
    names = ["0.weight", "4.weight"]
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    theta = torch.cat([params[n].detach().flatten() for n in names])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        total = 0.0
        for xs, ys in ((x[:half], y[:half]), (x[half:], y[half:])):
            total = total + F.cross_entropy(functional_call(model, {**params, **tensors}, (xs,)) / T, ys)
        return total

    g = torch.autograd.functional.jacobian(loss, theta)
    hessian = torch.autograd.functional.hessian(loss, theta)
    score = -theta * (hessian @ g)
    return {n: s.view(shape) for n, s, shape in zip(names, score.split(sizes), shapes)}


def test_score_is_minus_weight_times_hessian_gradient_product() -> None:
    model, batches = small_net(), LabelledBatches()
    method = GraSP(GraSPConfig(sparsity=0.5, samples_per_class=4, temperature=2.0))
    method.prepare(model, context(batches, input_shape=(3, 4, 4)))
    scores = method.scores(model)
    expected = reference_scores(model, batches, 4, 2.0)
    assert list(scores) == list(expected)
    for name in scores:
        torch.testing.assert_close(scores[name], expected[name], rtol=1e-9, atol=1e-12)
    assert any(float(s.abs().max()) > 0 for s in scores.values())


def test_the_highest_scores_go_and_the_target_is_exact() -> None:
    model, batches = small_net(), LabelledBatches()
    method = GraSP(GraSPConfig(sparsity=0.6, samples_per_class=4, temperature=2.0))
    method.prepare(model, context(batches, input_shape=(3, 4, 4)))
    flat = torch.cat([s.flatten() for s in reference_scores(model, batches, 4, 2.0).values()])
    method.begin_stage(Stage("train", 1), model)
    kept = torch.cat([m.flatten() for m in method.masker.masks.values()])
    removed = round(0.6 * flat.numel())
    assert int((~kept).sum()) == removed
    assert float(flat[~kept].min()) >= float(flat[kept].max())  # every removed score >= every kept one


def test_the_batch_is_class_balanced_and_ordered_by_class() -> None:
    x, y = class_balanced_batch(LabelledBatches().epoch(0), 3, 2)
    assert y.tolist() == [0, 0, 1, 1, 2, 2] and x.shape == (6, 3, 4, 4)
    with pytest.raises(ValueError, match="samples_per_class 5: an epoch has fewer images of class 0"):
        class_balanced_batch(LabelledBatches().epoch(0), 3, 5)


CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 1, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
method: {name: grasp, sparsity: 0.8, samples_per_class: 2}
"""


def test_run_through_the_runner_keeps_the_exact_sparsity(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run_config(tmp_path, tiny_cifar, CONFIG) == 0
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    total = metrics["prunable_weights_dense"]
    assert metrics["prunable_weights_nonzero"] == total - round(0.8 * total)
    assert metrics["target_sparsity"] == 0.8


def test_configs_cover_the_operating_points_of_the_other_baselines() -> None:
    check_points_and_recipe_of_the_other_baselines("grasp")
