"""Magnitude pruning: round targets, stages, exact sparsity through the training loop, exact resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from pruning.accounting import prunable_weights
from pruning.masks import PruneStage
from pruning.methods.magnitude import Magnitude, MagnitudeConfig, round_targets
from tests.helpers import train
from training.schema import ConfigError, validate


def selected_sparsity(model: nn.Module, layers: str = "conv_linear") -> tuple[int, int]:
    weights = prunable_weights(model, layers)
    return sum(int((w == 0).sum()) for w in weights.values()), sum(w.numel() for w in weights.values())


def test_round_targets_hand_computed() -> None:
    assert round_targets(0.9, 1, "geometric") == [0.9]
    geo = round_targets(0.875, 3, "geometric")  # 1 - 0.125^(r/3): 0.5, 0.75, 0.875
    assert geo == pytest.approx([0.5, 0.75, 0.875]) and geo[-1] == 0.875
    assert round_targets(0.9, 3, "linear") == pytest.approx([0.3, 0.6, 0.9])


def test_stages_one_shot_and_iterative() -> None:
    one = Magnitude(MagnitudeConfig(sparsity=0.9)).stages(160)
    assert [(s.name, s.epochs) for s in one] == [("train", 160), ("finetune", 40)]
    ft = one[1]
    assert isinstance(ft, PruneStage) and ft.lr == 0.001 and ft.schedule.name == "constant"
    assert ft.target == 0.9 and not ft.penalty
    it = Magnitude(MagnitudeConfig(sparsity=0.875, rounds=3, retrain_epochs=20)).stages(10)
    assert [s.name for s in it] == ["train", "retrain1", "retrain2", "retrain3"]
    assert [s.target for s in it[1:]] == pytest.approx([0.5, 0.75, 0.875])


def test_config_validation_through_schema() -> None:
    cfg = validate(MagnitudeConfig, {"name": "magnitude", "sparsity": 0.8, "retrain_schedule": {"name": "constant"}})
    assert cfg.sparsity == 0.8 and cfg.retrain_schedule.name == "constant"
    with pytest.raises(ConfigError, match="sparsity"):
        validate(MagnitudeConfig, {"name": "magnitude", "sparsity": 1.0})
    with pytest.raises(ConfigError, match="layers"):
        validate(MagnitudeConfig, {"name": "magnitude", "layers": "linear"})


def test_iterative_pruning_reaches_each_target_exactly_and_masks_nest() -> None:
    cfg = MagnitudeConfig(sparsity=0.875, rounds=3, retrain_epochs=1)
    checkpoints: list[dict[str, Any]] = []
    model, _, trainer = train(cfg, checkpoints=checkpoints)
    seen = [ckpt["method"]["masks"] for ckpt in checkpoints[1:]]
    zeros, total = selected_sparsity(model)
    assert zeros == round(0.875 * total)
    for earlier, later in zip(seen, seen[1:]):
        assert all(not (later[n] & ~earlier[n]).any() for n in later)
    kept = [sum(int(m.sum()) for m in masks.values()) for masks in seen]
    assert kept == [total - round(t * total) for t in (0.5, 0.75, 0.875)]
    assert [h["stage"] for h in trainer.history] == ["train", "retrain1", "retrain2", "retrain3"]
    assert [h["lr"] for h in trainer.history] == [0.05, 0.001, 0.001, 0.001]


def test_conv_only_scope_leaves_linear_dense() -> None:
    model, _, _ = train(MagnitudeConfig(sparsity=0.5, layers="conv", retrain_epochs=1))
    zeros, total = selected_sparsity(model, "conv")
    assert zeros == round(0.5 * total)
    assert torch.count_nonzero(model[8].weight) == model[8].weight.numel()


def test_resume_mid_run_is_exact() -> None:
    cfg = MagnitudeConfig(sparsity=0.7, rounds=2, retrain_epochs=2)
    checkpoints: list[dict[str, Any]] = []
    full, _, _ = train(cfg, checkpoints=checkpoints)
    resumed, method, _ = train(cfg, resume=checkpoints[2])  # inside round 1
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(method.masker.masks["0.weight"], checkpoints[-1]["method"]["masks"]["0.weight"])
