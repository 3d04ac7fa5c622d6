"""reporting.budgets: what each subset config trains, planned from its YAML; configs whose runs are pending."""

from __future__ import annotations

from pathlib import Path

import pytest

from reporting.budgets import Pending, budgets, budgets_markdown, pending
from tests.conftest import ROOT

CONFIGS = ROOT / "experiments" / "configs"


def test_the_final_stage_and_the_total_come_from_the_plan() -> None:
    table = budgets(CONFIGS).set_index("name")
    assert set(table["steps_per_epoch"]) == {37}  # 4670 training images, batch 128
    assert tuple(table.loc["r20_lottery_s80", ["final_steps", "steps"]]) == (111, 555)  # five stages of 3 epochs
    assert tuple(table.loc["r20_magnitude_s80", ["final_steps", "steps"]]) == (111, 555)  # 12 + 3
    assert tuple(table.loc["r20_slimming_c30", ["final_steps", "steps"]]) == (259, 555)  # 8 + 7
    assert tuple(table.loc["r20_rda_s80", ["final_steps", "steps"]]) == (555, 555)
    # the lottery ticket whose last round trains the whole budget, its mask found on 3-epoch rounds
    assert tuple(table.loc["r20_lottery_s80_full_last_round", ["final_steps", "steps"]]) == (555, 999)
    text = budgets_markdown(CONFIGS)
    # each config's pending label follows results/subset/pending.txt, whatever it lists today
    waiting = pending(ROOT / "results" / "subset")
    for name in table.index:
        labelled = f"`{name}` (" in text
        assert labelled == (name in waiting), name
        if name in waiting:
            assert f"`{name}` ({waiting[name].label()})" in text
    assert "| train 3 + round1 3 + round2 3 + round3 3 + round4 3 | 111 | 555 |" in text


def test_pending_runs_are_listed_explicitly(tmp_path: Path) -> None:
    assert pending(tmp_path) == {}
    (tmp_path / "pending.txt").write_text(
        "# a comment line\n\nr20_a  # why it waits\nr20_b\nr20_c seeds 3 4  # later\n"
    )
    assert pending(tmp_path) == {
        "r20_a": Pending("why it waits"),
        "r20_b": Pending(""),
        "r20_c": Pending("later", frozenset({3, 4})),
    }
    c = pending(tmp_path)["r20_c"]
    assert c.covers(3) and not c.covers(0) and c.label() == "seeds 3, 4 pending"
    assert pending(tmp_path)["r20_a"].covers(0) and pending(tmp_path)["r20_a"].label() == "runs pending"
    (tmp_path / "pending.txt").write_text("r20_d seed 3\n")
    with pytest.raises(ValueError, match="pending.txt:1: expected 'NAME' or 'NAME seeds K"):
        pending(tmp_path)
