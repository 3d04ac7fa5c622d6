"""SNIP: the mask is the top-k of |g * w| computed by hand, the model is untouched by the scoring,
every process of a data-parallel run keeps the same weights, and a run through the runner is exact."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from pruning.accounting import prunable_weights
from pruning.base import Stage
from pruning.masks import global_magnitude_masks
from pruning.methods.snip import SNIP, SNIPConfig
from tests.helpers import (
    Batches,
    check_points_and_recipe_of_the_other_baselines,
    context,
    run_config,
    run_dir,
    tiny_net,
)


def hand_masks(model: torch.nn.Module, batches: list, sparsity: float) -> dict[str, torch.Tensor]:
    """The definition: gradient of the mean loss summed over the batches, |g * w|, the round(s N)
    smallest over all conv + linear weights removed (ties by position)."""
    net = copy.deepcopy(model).train()
    for x, y in batches:
        F.cross_entropy(net(x), y).backward()  # gradients add up over the batches
    weights = prunable_weights(net)
    scores = torch.cat([(w.grad * w.detach()).abs().flatten() for w in weights.values()])
    removed = torch.argsort(scores, stable=True)[: round(sparsity * scores.numel())]
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[removed] = False
    return dict(zip(weights, keep.split([w.numel() for w in weights.values()])))


def test_mask_is_the_hand_computed_top_k_of_gradient_times_weight() -> None:
    model, batches = tiny_net(), Batches(n=3)
    method = SNIP(SNIPConfig(sparsity=0.6, batches=2))
    method.prepare(model, context(batches))
    before = copy.deepcopy(model.state_dict())
    expected = hand_masks(model, batches.epoch(0)[:2], 0.6)
    method.begin_stage(Stage("train", 1), model)
    masks = method.masker.masks
    assert list(masks) == list(expected)
    for name, mask in masks.items():
        assert torch.equal(mask.flatten(), expected[name]), name
        assert torch.equal(model.get_parameter(name), before[name] * mask)  # pruned weights are zero
    for name, value in model.state_dict().items():  # BN statistics and other weights untouched
        if name not in masks:
            assert torch.equal(value, before[name]), name
    total = sum(m.numel() for m in masks.values())
    assert total - sum(int(m.sum()) for m in masks.values()) == round(0.6 * total)
    magnitude = global_magnitude_masks({n: before[n] for n in masks}, 0.6)  # not the same as pruning by |w|
    assert any(not torch.equal(masks[n], magnitude[n]) for n in masks)


def test_too_few_batches_is_an_error() -> None:
    method = SNIP(SNIPConfig(sparsity=0.5, batches=5))
    model = method.prepare(tiny_net(), context(Batches(n=2)))
    with pytest.raises(ValueError, match="batches 5, but an epoch has only 2"):
        method.begin_stage(Stage("train", 1), model)


def _rank_masks(rank: int, init: str, out: str, reduce: bool) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.set_num_threads(1)
    shard = Batches(n=1, seed=10 + rank)  # each process sees other data
    ctx = context(shard)
    if reduce:
        ctx.reduce = lambda t: (dist.all_reduce(t), t)[1]
    method = SNIP(SNIPConfig(sparsity=0.5))
    model = method.prepare(tiny_net(), ctx)
    method.begin_stage(Stage("train", 1), model)
    torch.save(method.masker.masks, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("reduce", [True, False])
def test_every_process_keeps_the_same_weights(tmp_path: Path, reduce: bool) -> None:
    mp.spawn(_rank_masks, args=(f"file://{tmp_path}/store", str(tmp_path), reduce), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    same = all(torch.equal(first[n], second[n]) for n in first)
    assert same == reduce  # without the reduction the shards' masks differ: the reduction is what aligns them


CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 2, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
method: {name: snip, sparsity: 0.8, batches: 2}
"""


def test_run_through_the_runner_keeps_the_exact_sparsity(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run_config(tmp_path, tiny_cifar, CONFIG) == 0
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    total = metrics["prunable_weights_dense"]
    assert metrics["prunable_weights_nonzero"] == total - round(0.8 * total)
    assert metrics["target_sparsity"] == 0.8 and metrics["mask_sparsity"] == pytest.approx(0.8, abs=1e-6)


def test_configs_cover_the_operating_points_of_the_other_baselines() -> None:
    check_points_and_recipe_of_the_other_baselines("snip")
