"""reporting.head_to_head: every unstructured config is compared with xRDA at its target."""

from __future__ import annotations

import pandas as pd

from reporting.head_to_head import references, target_of

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
    names = ["r20_rda_s80_avg0", "r20_gmp_s80", "r20_snip_s80", "r20_rigl_s80"]
    assert references(frame()) == [(name, "r20_rda_s80") for name in names]  # legend order


def test_no_reference_no_pairs() -> None:
    assert references(frame()[frame()["name"] != "r20_rda_s80"]) == []
    assert references(pd.DataFrame(columns=["name", "seed", "variant", "order", "test_acc"])) == []
    two = frame().replace({"r20_snip_s80": "r20_rda_s80_b"}).replace({"SNIP": "xRDA log-l1"})
    assert references(two) == []  # two xRDA configs at one target: nothing to compare with
