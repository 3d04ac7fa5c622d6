"""Random-pruning control: magnitude's per-layer densities, random positions, seeded, nested."""

from __future__ import annotations

import torch

from pruning.masks import densities
from pruning.methods.magnitude import Magnitude, MagnitudeConfig
from pruning.methods.random_finetune import RandomFinetune, RandomFinetuneConfig
from tests.helpers import context, tiny_net, train


def masks_at(method_cls: type, cfg, seed: int = 0, round_index: int = 1) -> dict[str, torch.Tensor]:
    model = tiny_net()
    method = method_cls(cfg)
    method.prepare(model, context())
    for stage in method.stages(1)[1 : round_index + 1]:
        torch.manual_seed(seed)
        method.begin_stage(stage, model)
    return method.masker.masks


def test_same_per_layer_counts_as_magnitude_at_random_positions() -> None:
    magnitude = masks_at(Magnitude, MagnitudeConfig(sparsity=0.7))
    rand = masks_at(RandomFinetune, RandomFinetuneConfig(sparsity=0.7))
    assert densities(rand) == densities(magnitude)
    assert {n: int(m.sum()) for n, m in rand.items()} == {n: int(m.sum()) for n, m in magnitude.items()}
    assert any(not torch.equal(rand[n], magnitude[n]) for n in rand)
    # Magnitude pruning at 70% is not uniform over these layers, so neither is the control.
    assert len(set(densities(rand).values())) > 1


def test_seeded_positions() -> None:
    cfg = RandomFinetuneConfig(sparsity=0.5)
    a, b, c = masks_at(RandomFinetune, cfg, 1), masks_at(RandomFinetune, cfg, 1), masks_at(RandomFinetune, cfg, 2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_iterative_rounds_nest_and_reach_the_target_through_the_loop() -> None:
    model, method, trainer = train(RandomFinetuneConfig(sparsity=0.75, rounds=2, retrain_epochs=1))
    masks = method.masker.masks
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
    weights = dict(model.named_parameters())
    assert all(torch.count_nonzero(weights[n][~m]) == 0 for n, m in masks.items())
    assert [h["stage"] for h in trainer.history] == ["train", "retrain1", "retrain2"]
    first = masks_at(RandomFinetune, RandomFinetuneConfig(sparsity=0.75, rounds=2), round_index=1)
    second = masks_at(RandomFinetune, RandomFinetuneConfig(sparsity=0.75, rounds=2), round_index=2)
    assert all(not (second[n] & ~first[n]).any() for n in first)
