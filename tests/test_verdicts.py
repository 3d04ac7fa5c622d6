"""reporting.verdicts: the family of comparisons, Holm over it, recipe-fair differences, what each side is."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from reporting.results import PoolingError
from reporting.stats import holm, interval, t_test_p
from reporting.verdicts import (
    Comparison,
    differences,
    family,
    markdown,
    prose,
    scale_markdown,
    standard_error,
    verdicts,
)
from training.records import HISTORY_FIELDS

SGD, RDA = {"name": "sgd", "lr": 0.1}, {"name": "rda", "lr": 1.0}
# name -> (family, variant, optimizer, method, sparsity, stages (name, epochs), accuracy by seed)
RUNS = {
    "r20_dense_sgd": ("dense", "dense", SGD, {"name": "dense"}, 0.0, [("train", 15)], [56, 55, 57, 56, 58]),
    "r20_rda_lam0": (
        "dense",
        "dense (xRDA optimizer)",
        RDA,
        {"name": "dense"},
        0.0,
        [("train", 15)],
        [57, 57, 58, 56, 59],
    ),
    "r20_rda_s80": ("unstructured", "xRDA log-l1", RDA, {"name": "rda"}, 0.80, [("train", 15)], [56, 57, 57, 55, 57]),
    "r20_gmp_s80": ("unstructured", "GMP", SGD, {"name": "gmp"}, 0.80, [("train", 15)], [53, 52, 55, 54, 53]),
    "r20_lottery_s80": (
        "unstructured",
        "lottery ticket",
        SGD,
        {"name": "lottery"},
        0.80,
        [("train", 3), ("round1", 3), ("round2", 3), ("round3", 3), ("round4", 3)],
        [49, 48, 49, 48, 50],
    ),
    "r20_random_ticket_s80": (
        "unstructured",
        "random ticket",
        SGD,
        {"name": "random_ticket"},
        0.83,
        [("train", 3), ("round1", 3), ("round2", 3), ("round3", 3), ("round4_random", 3)],
        [41, 40, 42, 41, 43],
    ),
}


def history_csv(stages: list[tuple[str, int]]) -> str:
    """A valid history.csv (what the schema reads) with these stages, one row an epoch."""
    rows = [
        {**dict.fromkeys(HISTORY_FIELDS, ""), "epoch": n, "stage": stage, "stage_epoch": k + 1, "lr": 0.1}
        | {"train_loss": 1.0, "train_acc": 0.5, "sparsity": 0, "seconds": 1.0}
        for n, (stage, k) in enumerate(((s, k) for s, epochs in stages for k in range(epochs)), start=1)
    ]
    return ",".join(HISTORY_FIELDS) + "\n" + "".join(",".join(str(r[f]) for f in HISTORY_FIELDS) + "\n" for r in rows)


def frame(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for order, (name, (fam, variant, opt, method, sparsity, stages, accs)) in enumerate(RUNS.items()):
        for seed, acc in enumerate(accs):
            run_dir = tmp_path / name / f"seed{seed}"
            run_dir.mkdir(parents=True)
            (run_dir / "history.csv").write_text(history_csv(stages))
            rows.append(
                {
                    "name": name,
                    "seed": seed,
                    "family": fam,
                    "variant": variant,
                    "order": order,
                    "config": {"model": "resnet20", "optimizer": opt, "method": method},
                    "test_acc": acc / 100,
                    "sparsity": sparsity + 0.001 * seed,
                    "flops_kept": 1.0 - sparsity,
                    "steps": 555,
                    "steps_per_epoch": 37,
                    "run_dir": str(run_dir),
                }
            )
    return pd.DataFrame(rows)


def test_the_family_pairs_each_config_with_its_control_xrda_and_the_lottery_ticket(tmp_path: Path) -> None:
    comparisons = family(frame(tmp_path))
    plain = {(c.group, c.a, c.b) for c in comparisons if c.controls is None}
    assert ("control", "r20_rda_s80", "r20_rda_lam0") in plain and ("control", "r20_gmp_s80", "r20_dense_sgd") in plain
    assert ("xrda", "r20_gmp_s80", "r20_rda_s80") in plain
    assert ("lottery", "r20_random_ticket_s80", "r20_lottery_s80") in plain
    assert ("sgd", "r20_gmp_s80", "r20_lottery_s80") in plain
    assert ("dense", "r20_dense_sgd", "r20_rda_lam0") in plain
    # a recipe-fair row exactly where the two sides' dense controls differ
    fair = {(c.a, c.b): c.controls for c in comparisons if c.controls}
    assert fair[("r20_gmp_s80", "r20_rda_s80")] == ("r20_dense_sgd", "r20_rda_lam0")
    assert ("r20_random_ticket_s80", "r20_lottery_s80") not in fair  # one recipe: the direct difference is fair
    assert len(comparisons) == len(set(comparisons))


def test_a_difference_in_differences_subtracts_each_sides_own_control() -> None:
    values = {("a", 0): 0.50, ("b", 0): 0.60, ("ca", 0): 0.55, ("cb", 0): 0.62, ("a", 1): 0.40, ("b", 1): 0.5}
    # seed 0: (0.50 - 0.55) - (0.60 - 0.62) = -0.03; seed 1 lacks the controls: left out
    assert differences(values, Comparison("x", "a", "b", ("ca", "cb"))) == pytest.approx([-0.03])
    assert differences(values, Comparison("x", "a", "b")) == pytest.approx([-0.10, -0.10])


def test_verdicts_are_corrected_over_the_whole_family(tmp_path: Path) -> None:
    runs = frame(tmp_path)
    table = verdicts(runs)
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p"].tolist()), nan_ok=True)
    row = table[(table["a"] == "r20_gmp_s80") & (table["b"] == "r20_dense_sgd")].iloc[0]
    diffs = [a - b for a, b in zip(RUNS["r20_gmp_s80"][-1], RUNS["r20_dense_sgd"][-1])]
    mean, std, ci = interval([d / 100 for d in diffs])
    assert (row["pairs"], row["diff"], row["diff_ci"]) == (5, pytest.approx(mean), pytest.approx(ci))
    assert row["p"] == pytest.approx(t_test_p(5, mean, std))
    assert row["nominal"] == "lower"
    # nominal and corrected differ somewhere in this family, and the corrected never claims more
    assert ((table["nominal"] != "unresolved") & (table["corrected"] == "unresolved")).any()
    assert not ((table["nominal"] == "unresolved") & (table["corrected"] != "unresolved")).any()
    assert set(table["corrected"]) <= {"higher", "lower", "unresolved"}


def test_each_row_shows_what_it_compares(tmp_path: Path) -> None:
    table = verdicts(frame(tmp_path)).set_index(["a", "b", "kind"])
    ticket = table.loc[("r20_random_ticket_s80", "r20_lottery_s80", "direct")]
    assert (ticket["a_final_steps"], ticket["a_steps"]) == (111, 555)  # the ticket trains its last stage only
    assert ticket["a_sparsity"] == pytest.approx(0.832) and ticket["a_sparsity_max"] == pytest.approx(0.834)
    assert ticket["mismatched"]  # 83.2% against 80.2%: more than 2 pp
    assert not table.loc[("r20_gmp_s80", "r20_rda_s80", "direct")]["mismatched"]
    assert not table.loc[("r20_gmp_s80", "r20_dense_sgd", "direct")]["mismatched"]  # a dense control differs by design
    gmp = table.loc[("r20_gmp_s80", "r20_rda_s80", "direct")]
    assert (gmp["a_final_steps"], gmp["b_flops_kept"]) == (555, pytest.approx(0.2))


def test_the_prose_claims_only_what_survives_and_names_what_does_not(tmp_path: Path) -> None:
    table = verdicts(frame(tmp_path))
    text = prose(table)
    survivors = table[table["corrected"] != "unresolved"]
    nominal_only = table[(table["nominal"] != "unresolved") & (table["corrected"] == "unresolved")]
    assert f"{len(table)} paired comparisons" in text and f"{len(survivors)} survive Holm's correction" in text
    for _, r in survivors.iterrows():
        assert f"`{r['a']}` - `{r['b']}`" in text
    for line in text.splitlines():
        head = line.partition("Nominal only, unresolved after the correction:")[0]
        for _, r in nominal_only.iterrows():
            what = f"`{r['a']}` - `{r['b']}`" + (" (recipe-fair)" if r["kind"] == "recipe-fair" else "")
            assert f"{what} ({_pp(r['diff'])} pp, Holm" not in head  # never claimed
    assert "`r20_rda_s80` - `r20_rda_lam0` (lower, -1.00 pp" in text  # nominal only, named as such
    assert "Not at equal sparsity" in text and "final stages differ in length" in text
    tables = markdown(table)
    assert sum(line.startswith("| `r20_") for line in tables.splitlines()) == len(table)
    assert "| lower | unresolved |" in tables  # nominal and corrected side by side
    assert prose(table.iloc[0:0]) == "No comparison: no finished runs.\n"


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def test_one_pair_has_no_test_and_no_claim(tmp_path: Path) -> None:
    runs = frame(tmp_path)
    runs = runs[~((runs["name"] == "r20_gmp_s80") & (runs["seed"] > 0))]
    row = verdicts(runs).set_index(["a", "b", "kind"]).loc[("r20_gmp_s80", "r20_dense_sgd", "direct")]
    assert row["pairs"] == 1 and math.isnan(row["p"]) and (row["nominal"], row["corrected"]) == ("unresolved",) * 2


def test_the_scale_and_the_test_set_sampling_error(tmp_path: Path) -> None:
    runs = frame(tmp_path).assign(train_size=4670, validation_size=500, test_size=1017)
    text = scale_markdown(runs)
    assert (
        "5170 of CIFAR-10's 50,000 training images (10.3%)" in text and "1017 of its 10,000 test images (10.2%)" in text
    )
    dense = runs.loc[runs["family"] == "dense", "test_acc"].mean()
    assert f"of {100 * math.sqrt(dense * (1 - dense) / 1017):.2f} pp at the dense controls'" in text
    assert standard_error(0.56, 1017) == pytest.approx(0.01557, abs=1e-5)  # about 1.6 pp for one accuracy
    assert "no one sampling error applies" in scale_markdown(runs.assign(test_size=[500] + [1017] * (len(runs) - 1)))


def test_a_repeated_seed_is_refused_not_pooled(tmp_path: Path) -> None:
    """A copied seed folder (two runs of one seed) would overwrite its twin in the pairing: refused,
    as everywhere else runs are pooled."""
    runs = frame(tmp_path)
    copy = runs[(runs["name"] == "r20_gmp_s80") & (runs["seed"] == 0)].assign(run_dir="elsewhere/seed0")
    with pytest.raises(PoolingError):
        verdicts(pd.concat([runs, copy], ignore_index=True))


def test_unknown_step_counts_are_not_called_different_budgets(tmp_path: Path) -> None:
    runs = frame(tmp_path).assign(run_dir=str(tmp_path / "nowhere"))  # no history.csv: steps unknown
    text = prose(verdicts(runs))
    assert "final stages differ in length" not in text
