"""The random ticket (open_lth's randomly_prune): the lottery rounds, then each layer's mask shuffled over
the whole layer, the rewound weights masked by the ticket (kept_weights: masked) or not (rewound)."""

from __future__ import annotations

import pytest
import torch

from pruning.base import Duration
from pruning.masks import global_magnitude_masks
from pruning.methods.lottery import snapshot
from pruning.methods.random_ticket import RandomTicket, RandomTicketConfig
from tests.helpers import context, tiny_net
from tests.test_lottery import fake_training
from training.schema import ConfigError, validate


def last_round(kept: str) -> tuple[dict, dict, dict, dict]:
    """(ticket masks, random masks, rewind state, weights after the last round's start)."""
    model = tiny_net()
    method = RandomTicket(RandomTicketConfig(sparsity=0.36, rewind=Duration.parse(2), kept_weights=kept))
    method.prepare(model, context())
    stages = method.stages(1)
    assert [s.name for s in stages] == ["train", "round1", "round2_random"]
    fake_training(method, model, 4)
    method.begin_stage(stages[1], model)
    fake_training(method, model, 2)
    weights = method.selected(model)
    ticket = global_magnitude_masks(weights, stages[2].target, method.current_keep(weights))
    torch.manual_seed(7)
    method.begin_stage(stages[2], model)
    return ticket, dict(method.masker.masks), method.rewind, snapshot(model)


@pytest.mark.parametrize("kept", ["masked", "rewound"])
def test_each_layer_keeps_its_count_at_random_positions(kept: str) -> None:
    ticket, masks, rewind, weights = last_round(kept)
    assert list(masks) == list(ticket)
    moved = 0
    for name, mask in masks.items():
        assert int(mask.sum()) == int(ticket[name].sum())  # the ticket's per-layer density
        moved += int((mask & ~ticket[name]).sum())
        assert (weights[name][~mask] == 0).all()
        if kept == "masked":  # open_lth: the rewound weights times the ticket; new positions start at 0
            assert torch.equal(weights[name], rewind[name] * ticket[name] * mask)
        else:
            assert torch.equal(weights[name], rewind[name] * mask)
    assert moved > 0  # positions over the whole layer, not only among the ticket's


def test_the_shuffle_is_seeded_by_the_stage() -> None:
    assert all(torch.equal(a, b) for a, b in zip(last_round("masked")[1].values(), last_round("masked")[1].values()))


def test_reinit_is_not_an_option_here() -> None:
    with pytest.raises(ConfigError, match="reinit: not for random_ticket"):
        validate(RandomTicketConfig, {"name": "random_ticket", "reinit": True})
