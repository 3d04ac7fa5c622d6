"""Lottery tickets: IMP targets, exact rewinding (k = 0 and late), the re-init control on the same masks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from pruning.accounting import prunable_weights
from pruning.base import Duration, Schedule
from pruning.masks import PruneStage
from pruning.methods.lottery import Lottery, LotteryConfig, imp_targets, permuted, snapshot
from tests.helpers import context, tiny_net, train
from training.schema import to_dict


def test_imp_targets_twenty_percent_of_the_remaining() -> None:
    assert imp_targets(0.5, 0.2) == pytest.approx([0.2, 0.36, 0.488, 0.5])
    assert imp_targets(0.488, 0.2) == pytest.approx([0.2, 0.36, 0.488])
    assert len(imp_targets(0.9, 0.2)) == 11  # 1 - 0.8^10 = 0.893 < 0.9 <= 1 - 0.8^11
    assert imp_targets(0.0, 0.2) == []


def test_stages_and_reinit_names() -> None:
    stages = Lottery(LotteryConfig(sparsity=0.36)).stages(30)
    assert [(s.name, s.epochs, s.lr, s.schedule) for s in stages] == [
        ("train", 30, None, None),
        ("round1", 30, None, None),
        ("round2", 30, None, None),
    ]
    assert [s.name for s in Lottery(LotteryConfig(sparsity=0.36, reinit=True)).stages(3)] == [
        "train",
        "round1",
        "round2_reinit",
    ]


def test_the_last_round_can_train_its_own_length_and_schedule() -> None:
    # the rounds that find the mask train train.epochs each; the ticket that is measured trains 15
    long = Schedule(name="multistep", milestones=[8, 11])
    method = Lottery(LotteryConfig(sparsity=0.36, last_round_epochs=15, last_round_schedule=long))
    assert [(s.name, s.epochs, s.schedule) for s in method.stages(3)] == [
        ("train", 3, None),
        ("round1", 3, None),
        ("round2", 15, long),
    ]
    assert [s.target for s in method.stages(3)[1:]] == pytest.approx(imp_targets(0.36, 0.2))
    reinit = Lottery(LotteryConfig(sparsity=0.36, reinit=True, last_round_epochs=15)).stages(3)
    assert [(s.name, s.epochs, s.schedule) for s in reinit][-1] == ("round2_reinit", 15, None)
    assert Lottery.variant(method.cfg, None).label == "lottery ticket (full-length last round)"
    assert Lottery.variant(LotteryConfig(sparsity=0.36), None).label == "lottery ticket"


def fake_training(method: Lottery, model: nn.Module, steps: int) -> list[dict[str, torch.Tensor]]:
    """Perturb every float parameter and buffer as optimizer steps would; returns the states."""
    states = []
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        with torch.no_grad():
            for v in model.state_dict().values():
                if v.is_floating_point():
                    v.add_(torch.randn(v.shape, generator=gen))
        method.after_step(model, step)
        states.append(snapshot(model))
    return states


@pytest.mark.parametrize("rewind_step", [0, 3])
def test_rewind_restores_the_saved_weights_exactly(rewind_step: int) -> None:
    model = tiny_net()
    init = snapshot(model)
    method = Lottery(LotteryConfig(sparsity=0.5, rewind=Duration.parse(rewind_step)))
    method.prepare(model, context())
    states = fake_training(method, model, 6)
    saved = init if rewind_step == 0 else states[rewind_step - 1]
    trained = snapshot(model)
    stage = method.stages(1)[1]
    method.begin_stage(stage, model)
    masks = method.masker.masks
    # Masks come from the trained weights, not the rewound ones.
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(stage.target * total)
    flat_trained = torch.cat([trained[n].abs().flatten() for n in weights])
    flat_masks = torch.cat([masks[n].flatten() for n in weights])
    assert flat_trained[~flat_masks].max() <= flat_trained[flat_masks].min()
    for name, value in model.state_dict().items():
        if name in masks:
            assert torch.equal(value[masks[name]], saved[name][masks[name]]), name
            assert torch.count_nonzero(value[~masks[name]]) == 0
        else:
            assert torch.equal(value, saved[name]), name


def test_rewind_step_never_reached_is_an_error() -> None:
    model = tiny_net()
    method = Lottery(LotteryConfig(sparsity=0.2, rewind=Duration.parse(100)))
    method.prepare(model, context())
    fake_training(method, model, 2)
    with pytest.raises(RuntimeError, match="never reached"):
        method.begin_stage(method.stages(1)[1], model)


def test_permuted_is_a_new_draw_of_the_same_values() -> None:
    torch.manual_seed(0)
    state = {"w": torch.randn(5, 4), "n": torch.tensor(3)}
    out = permuted(state)
    assert not torch.equal(out["w"], state["w"])
    assert torch.equal(out["w"].flatten().sort().values, state["w"].flatten().sort().values)
    assert torch.equal(out["n"], state["n"])


def last_masks(checkpoints: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return checkpoints[-1]["method"]["masks"]


def test_reinit_control_uses_the_same_masks_and_a_fresh_init() -> None:
    ticket_ckpts: list[dict[str, Any]] = []
    control_ckpts: list[dict[str, Any]] = []
    train(LotteryConfig(sparsity=0.36), checkpoints=ticket_ckpts)
    _, control, trainer = train(LotteryConfig(sparsity=0.36, reinit=True), checkpoints=control_ckpts)
    assert [h["stage"] for h in trainer.history] == ["train", "round1", "round2_reinit"]
    ticket_masks, control_masks = last_masks(ticket_ckpts), last_masks(control_ckpts)
    assert ticket_masks.keys() == control_masks.keys()
    assert all(torch.equal(ticket_masks[n], control_masks[n]) for n in ticket_masks)
    # Round 1 of both runs is identical; only the last round's starting point differs.
    assert torch.equal(ticket_ckpts[1]["model"]["0.weight"], control_ckpts[1]["model"]["0.weight"])
    assert not torch.equal(ticket_ckpts[2]["model"]["0.weight"], control_ckpts[2]["model"]["0.weight"])


def test_reinit_start_is_the_masked_permuted_init() -> None:
    model = tiny_net()
    init = snapshot(model)
    method = Lottery(LotteryConfig(sparsity=0.2, reinit=True))
    method.prepare(model, context())
    fake_training(method, model, 2)
    stage = method.stages(1)[1]
    assert isinstance(stage, PruneStage) and stage.name == "round1_reinit"
    torch.manual_seed(5)
    method.begin_stage(stage, model)
    torch.manual_seed(5)
    expected = permuted(init)
    masks = method.masker.masks
    for name, value in model.state_dict().items():
        reference = expected[name] * masks[name] if name in masks else expected[name]
        assert torch.equal(value, reference), name
    assert not torch.equal(model.state_dict()["3.weight"], init["3.weight"] * masks["3.weight"])


def test_resume_with_late_rewind_is_exact() -> None:
    cfg = LotteryConfig(sparsity=0.36, rewind=Duration.parse(1))
    checkpoints: list[dict[str, Any]] = []
    full, _, _ = train(cfg, epochs=2, checkpoints=checkpoints)
    assert checkpoints[0]["method"]["rewind"] is not None and checkpoints[0]["method"]["init"] is None
    resumed, _, _ = train(cfg, epochs=2, resume=checkpoints[2])  # after the first epoch of round 1
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_last_round_options_are_written_only_where_set() -> None:
    # runs recorded before these options existed keep the text of their resolved config (and stay finished)
    plain = to_dict(LotteryConfig(sparsity=0.5))
    assert "last_round_epochs" not in plain and "last_round_schedule" not in plain
    long = to_dict(LotteryConfig(sparsity=0.5, last_round_epochs=15, last_round_schedule=Schedule(milestones=[8])))
    assert long["last_round_epochs"] == 15 and long["last_round_schedule"]["milestones"] == [8]
