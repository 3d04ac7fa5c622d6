"""reporting.head_to_head: every unstructured config against xRDA at its target, paired by seed."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reporting.head_to_head import head_to_head, head_to_head_markdown, target_of

# name -> (variant label, legend order, {seed: test accuracy})
RUNS = {
    "r20_gmp_s80": ("gradual magnitude (GMP)", 5, {0: 0.50, 1: 0.52, 2: 0.49}),
    "r20_rda_s80": ("xRDA log-l1", 1, {0: 0.55, 1: 0.56, 2: 0.55}),
    "r20_snip_s80": ("SNIP", 6, {0: 0.57, 1: 0.51, 2: 0.58}),
    "r20_rigl_s80": ("RigL", 7, {1: 0.60}),
    "r20_gmp_s50": ("gradual magnitude (GMP)", 5, {0: 0.58}),  # no xRDA config at 50%: no comparison
    "r20_rda_s80_avg0": ("proximal SGD log-l1", 2, {0: 0.59}),  # an ablation of xRDA at 80%
    "r20_l0hc_w30": ("L0-HC", 9, {0: 0.50}),  # structured
    "r20_dense_sgd": ("dense", 0, {0: 0.56}),
}


def frame() -> pd.DataFrame:
    rows = [
        {"name": name, "seed": seed, "variant": variant, "order": order, "test_acc": acc}
        for name, (variant, order, accs) in RUNS.items()
        for seed, acc in accs.items()
    ]
    return pd.DataFrame(rows)


def test_the_target_is_read_from_the_name() -> None:
    assert target_of("r20_gmp_s80") == 80 and target_of("r20_lottery_reinit_s90") == 90
    assert target_of("r20_rda_s80_avg0") == 80 and target_of("r20_l0hc_w30") is None
    assert target_of("r20_dense_sgd") is None and target_of("r20_rda_lam0") is None


def test_each_config_is_paired_with_xrda_at_its_target() -> None:
    table = head_to_head(frame()).set_index("experiment")
    names = ["r20_rda_s80", "r20_rda_s80_avg0", "r20_gmp_s80", "r20_snip_s80", "r20_rigl_s80"]
    assert list(table.index) == names  # the reference first, then legend order
    assert set(table["target"]) == {80} and set(table["reference"]) == {"r20_rda_s80"}
    gmp = table.loc["r20_gmp_s80"]
    assert gmp["pairs"] == 3 and gmp["seeds"] == 3
    assert gmp["diff"] == pytest.approx((-0.05 - 0.04 - 0.06) / 3)
    assert gmp["test_acc"] == pytest.approx((0.50 + 0.52 + 0.49) / 3)
    rigl = table.loc["r20_rigl_s80"]
    assert rigl["pairs"] == 1 and rigl["diff"] == pytest.approx(0.04) and math.isnan(rigl["diff_ci"])
    assert math.isnan(table.loc["r20_rda_s80", "diff"])


def test_the_markdown_says_a_verdict_only_where_the_interval_separates() -> None:
    text = head_to_head_markdown(head_to_head(frame()))
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| 80%")}
    assert rows["`r20_rda_s80`"].endswith("| reference |")
    assert rows["`r20_gmp_s80`"].endswith("| lower |") and "-5.00 [" in rows["`r20_gmp_s80`"]
    assert rows["`r20_snip_s80`"].endswith("| unresolved (the interval contains 0) |")
    assert rows["`r20_rigl_s80`"].endswith("| +4.00 | unresolved (one pair: no interval) |")
    assert rows["`r20_rda_s80_avg0`"].endswith("| +4.00 | unresolved (one pair: no interval) |")
    assert "1 of 4 comparisons do" in text


def test_no_reference_no_rows() -> None:
    assert head_to_head(frame()[frame()["name"] != "r20_rda_s80"]).empty
    assert head_to_head(pd.DataFrame(columns=["name", "seed", "variant", "order", "test_acc"])).empty
