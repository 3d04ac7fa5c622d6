"""The results loaders and tables, on the synthetic fixture tree (tests/fixtures/synthetic_results.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments import summary
from reporting import labels, results, tables
from tests.fixtures.synthetic_results import PARAMS_DENSE, SYNTHETIC_LABEL, write_results_tree
from training.schema import ConfigError

WEIGHTS = 432 + 2304 + 640  # the fixture's prunable weights


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_results_tree(tmp_path / "results")


def hand_std(a: float, b: float) -> float:
    """Sample std of two values: |a - b| / sqrt(2)."""
    return abs(a - b) / math.sqrt(2)


def test_runs_frame_rows_labels_and_derived_columns(tree: Path) -> None:
    runs = results.runs_frame(tree)
    assert len(runs) == 18 and runs["name"].nunique() == 15
    assert set(results.FRAME_COLUMNS) <= set(runs.columns)
    row = runs[(runs.name == "rda_r20_lam1e-5") & (runs.seed == 0)].iloc[0]
    # densities 0.5, 0.1, 0.2 of 432, 2304, 640 weights -> 216 + 230 + 128 nonzero
    assert row.sparsity == pytest.approx(1 - 574 / WEIGHTS)
    assert row.compression == pytest.approx(WEIGHTS / 574)
    assert row.gap == pytest.approx(0.83 - 0.78)
    assert row.params_kept == pytest.approx((574 + PARAMS_DENSE - WEIGHTS) / PARAMS_DENSE)
    flops_nonzero = 0.5 * 884_736 + round(0.1 * 4_718_592) + 0.2 * 1280
    assert row.flops_kept == pytest.approx(flops_nonzero / (884_736 + 4_718_592 + 1280))
    assert row.lam == pytest.approx(1e-5) and row.data_label == SYNTHETIC_LABEL
    assert row.config["method"]["reweight"] == "log" and len(row.layers) == 3
    variants = dict(zip(runs.name, runs.variant))
    assert variants == {
        "dense_r20": "dense",
        "rda_r20_lam1e-5": "xRDA log-l1",
        "rda_r20_lam1e-6": "xRDA log-l1",
        "rda_r20_plain_lam1e-4": "xRDA plain l1",
        "rda_r20_ablation_plain_l1": "xRDA plain l1",
        "rda_r20_ablation_proximal_sgd": "proximal SGD log-l1",
        "rda_r20_ablation_rda": "RDA (a=1) log-l1",
        "rda_r20_channel": "xRDA log-l1 (channel)",
        "magnitude_r20_oneshot_s80": "magnitude one-shot",
        "lottery_r20_s80": "lottery ticket",
        "lottery_r20_s80_reinit": "lottery ticket (random reinit)",
        "random_r20_s50": "random pruning, fine-tuned",
        "slimming_r20_c30": "network slimming",
        "l0hc_r20": "L0-HC",
        "dep_l0_fwd_r20": "Dep-L0 (forward)",
    }
    families = dict(zip(runs.name, runs.family))
    assert families["dense_r20"] == "dense" and families["rda_r20_channel"] == "structured"
    assert families["magnitude_r20_oneshot_s80"] == "unstructured" and families["l0hc_r20"] == "structured"
    labels = dict(zip(runs.name, runs.label))
    assert labels["rda_r20_lam1e-5"] == "xRDA log-l1, lam 1.0e-05"
    assert labels["magnitude_r20_oneshot_s80"] == "magnitude one-shot, target 80%"
    assert labels["slimming_r20_c30"] == "network slimming, 30% channels removed"
    assert labels["dense_r20"] == "dense"


def test_variant_and_operating_point_come_from_the_method_classes() -> None:
    rda = {
        "name": "x",
        "model": "resnet20",
        "data": {"dataset": "cifar10"},
        "train": {"epochs": 1},
        "optimizer": {"name": "rda", "avg": 0.5},
        "method": {"name": "rda", "lam": 2e-6, "reweight": "none", "group": "kernel", "prox": "group"},
    }
    variant, point = labels.describe(rda)
    assert (variant.label, variant.family, variant.main, point) == (
        "RDA (a=0.5) plain l1 (kernel), group prox",
        "structured",
        False,
        "lam 2.0e-06",
    )
    assert labels.color_of(variant) is not None  # undeclared colour: one derived from the label
    coupled, _ = labels.describe({**rda, "optimizer": {"name": "rda"}, "method": {"name": "rda"}})
    assert (coupled.label, coupled.main, coupled.color) == ("xRDA log-l1", True, "#1f77b4")  # default: coupled
    magnitude = {**rda, "optimizer": {"name": "sgd"}, "method": {"name": "magnitude", "sparsity": 0.95, "rounds": 3}}
    assert labels.describe(magnitude)[0].label == "magnitude iterative"
    assert labels.describe(magnitude)[1] == "target 95%"
    dep_l0 = {**magnitude, "method": {"name": "dep_l0", "direction": "backward"}}
    assert labels.describe(dep_l0)[0].label == "Dep-L0 (backward)"
    with pytest.raises(ConfigError, match="newmethod"):
        labels.describe({**magnitude, "method": {"name": "newmethod"}})


def test_aggregate_mean_and_sample_std_over_seeds(tree: Path) -> None:
    points = results.aggregate(results.runs_frame(tree)).set_index("name")
    dense = points.loc["dense_r20"]
    assert dense.seeds == 2
    assert dense.test_acc == pytest.approx(0.81)
    assert dense.test_acc_std == pytest.approx(hand_std(0.80, 0.82))
    assert dense.gap == pytest.approx(0.11) and dense.gap_std == pytest.approx(hand_std(0.10, 0.12))
    rda = points.loc["rda_r20_lam1e-5"]
    # seed 1: densities 0.4, 0.08, 0.2 -> 173 + 184 + 128 = 485 nonzero
    s0, s1 = 1 - 574 / WEIGHTS, 1 - 485 / WEIGHTS
    assert rda.sparsity == pytest.approx((s0 + s1) / 2)
    assert rda.sparsity_std == pytest.approx(hand_std(s0, s1))
    single = points.loc["random_r20_s50"]
    assert single.seeds == 1 and single.test_acc == pytest.approx(0.73)
    assert math.isnan(single.test_acc_std)  # one seed: no spread, not a spread of zero


def test_summary_text_is_the_summary_frame_without_cutting_names(tree: Path) -> None:
    table = tables.summary_frame(results.runs_frame(tree))
    text = tables.summary_text(table)
    lines = text.splitlines()
    assert len(lines) == 2 + 15 + 1 and lines[-1] == f"data: {SYNTHETIC_LABEL}"
    assert lines[2].split()[0] == "dense_r20" and "81.00 ± 1.41" in lines[2]  # dense first, two seeds
    random_row = next(line for line in lines if line.startswith("random_r20_s50 "))
    assert " 73.00 " in random_row and "73.00 ±" not in random_row  # one seed: the mean alone
    assert "rda_r20_ablation_proximal_sgd " in text  # longer than any fixed width


def test_title_line_names_data_profile_and_seeds(tree: Path) -> None:
    runs = results.runs_frame(tree)
    line = results.title_line(runs)
    assert SYNTHETIC_LABEL in line and "profile subset" in line and "1-2 seeds per point" in line
    two = runs[runs.name == "dense_r20"]
    assert "| 2 seeds per point" in results.title_line(two) and "| 2 seeds" in results.title_line(
        results.aggregate(two)
    )
    assert "| 1 seed per point (no spread" in results.title_line(runs[runs.name == "l0hc_r20"])
    assert "(mean ± std)" in results.title_line(two)


def test_matched_finds_controlled_comparisons(tree: Path) -> None:
    rda = results.runs_frame(tree).query("method == 'rda'")
    avg = results.matched(rda, "optimizer.avg")
    assert sorted(set(avg.name)) == ["rda_r20_ablation_proximal_sgd", "rda_r20_ablation_rda", "rda_r20_lam1e-5"]
    assert avg["match"].nunique() == 1
    assert dict(zip(avg.name, avg.value)) == {
        "rda_r20_ablation_proximal_sgd": "0.0",
        "rda_r20_ablation_rda": "1.0",
        "rda_r20_lam1e-5": "coupled",
    }
    reweight = results.matched(rda, "method.reweight")
    assert sorted(set(reweight.name)) == ["rda_r20_ablation_plain_l1", "rda_r20_lam1e-5"]
    group = results.matched(rda, "method.group")  # the channel run differs from rda_r20_lam1e-5 in the group only
    assert sorted(set(group.name)) == ["rda_r20_channel", "rda_r20_lam1e-5"]
    assert results.matched(rda, "train.epochs").empty  # every run has the same epochs: nothing to compare


def test_history_and_layer_tables(tree: Path) -> None:
    runs = results.runs_frame(tree)
    history = results.history_frame(runs)
    assert len(history) == 18 * 3
    curves = results.epoch_mean(history).set_index(["name", "epoch"])
    assert curves.val_acc.isna().all()  # the fixture's runs have no validation split: NaN, not a KeyError
    assert set(curves.data_name) == set(runs.data_name)  # panel titles of curves name the data as the runs do
    last = curves.loc[("dense_r20", 3)]
    assert last.test_acc == pytest.approx(0.81, abs=1e-4) and last.seeds == 2
    assert last.test_acc_std == pytest.approx(hand_std(0.80, 0.82), abs=1e-4)
    layers = results.layers_frame(runs)
    assert len(layers) == 18 * 3
    assert list(layers[layers.name == "dense_r20"].layer[:3]) == ["conv1", "layers.0.conv1", "fc"]
    density = results.layer_density(layers).set_index(["name", "layer"])
    conv1 = density.loc[("rda_r20_lam1e-5", "conv1")]
    assert conv1.density == pytest.approx((216 / 432 + 173 / 432) / 2)
    assert conv1.density_std == pytest.approx(hand_std(216 / 432, 173 / 432)) and conv1.seeds == 2


def test_summary_table_paper_columns_blank_unless_cited(tree: Path) -> None:
    runs = results.runs_frame(tree)
    table = tables.summary_frame(runs, reported={})
    assert list(table.columns) == list(tables.SUMMARY_COLUMNS) and len(table) == 15
    assert table.paper_test_acc_pct.isna().all() and (table.paper_source == "").all()
    dense = table.set_index("experiment").loc["dense_r20"]
    assert dense.test_acc_pct == pytest.approx(81.0)
    assert dense.test_acc_std_pct == pytest.approx(100 * hand_std(0.8, 0.82))
    assert table.experiment.iloc[0] == "dense_r20"  # dense first (its legend order)
    markdown = tables.summary_markdown(table)
    # two seeds: t(0.975, 1) = 12.706, so the interval is 12.706 x 1.41 / sqrt(2) = 12.71 points each side
    dense_line = (
        "| dense_r20 | dense | resnet20 | cifar10 | 2 | 3 | 81.00 ± 1.41 [± 12.71] |  | 0.00 ± 0.00 | 1.0 "
        "| 100.0 | 4,000 |  |  |  |"
    )
    assert dense_line in markdown
    single = table.set_index("experiment").loc["random_r20_s50"]
    assert f"| 1 | 3 | 73.00 | {_difference_cell(single)} | {single.sparsity_pct:.2f} |" in markdown  # one seed
    assert SYNTHETIC_LABEL in markdown and "Profile: subset" in markdown
    reported = {"dense_r20": {"test_acc": 0.5, "params": "1.5M", "source": "Paper, Table 9"}}
    cited = tables.summary_frame(runs, reported=reported)
    row = cited.set_index("experiment").loc["dense_r20"]
    assert row.paper_test_acc_pct == pytest.approx(50.0) and row.paper_params == "1.5M"
    assert row.paper_source == "Paper, Table 9"
    assert "| 50.00 | 1.5M | Paper, Table 9 |" in tables.summary_markdown(cited)


def test_reported_numbers_are_sourced_and_name_shipped_experiments() -> None:
    from experiments.run import CONFIG_DIR

    names = {p.stem for p in CONFIG_DIR.rglob("*.yaml")}
    reported = tables.reported_numbers()
    assert reported  # the network-slimming README's numbers
    for name, entry in reported.items():
        assert name in names, name
        assert set(entry) == {"test_acc", "params", "source"} and 0 < entry["test_acc"] < 1, name
        assert "@" in entry["source"] and "README" in entry["source"], name  # where, at which commit


def test_empty_results_folder(tmp_path: Path) -> None:
    runs = results.runs_frame(tmp_path)
    assert runs.empty and set(results.FRAME_COLUMNS) <= set(runs.columns)
    assert results.aggregate(runs).empty and tables.summary_frame(runs).empty
    assert results.history_frame(runs).empty and results.layer_density(results.layers_frame(runs)).empty
    assert results.matched(runs, "optimizer.avg").empty and results.title_line(runs) == "no runs"


def test_a_malformed_record_is_named_skipped_and_the_rest_reported(tree: Path) -> None:
    metrics = tree / "random_r20_s50" / "seed0" / "metrics.json"
    metrics.write_text(metrics.read_text()[:200])  # truncated
    config = tree / "l0hc_r20" / "seed0" / "config.yaml"
    config.write_text(config.read_text().replace("lam: 2.0e-05", "lam: -1"))  # no longer a valid config
    with pytest.warns(UserWarning) as caught:
        runs = results.runs_frame(tree)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith(f"skipped {tree / 'l0hc_r20' / 'seed0' / 'config.yaml'}: method.lam: must be >= 0")
    assert messages[1].startswith(f"skipped {metrics}: not valid JSON")
    assert all("\n" not in m for m in messages)
    assert len(runs) == 16 and "random_r20_s50" not in set(runs.name)
    assert len(tables.summary_frame(runs)) == 13


def test_a_missing_results_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(results.ResultsError, match="no such results folder"):
        results.runs_frame(tmp_path / "nothing")
    assert summary.main([str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nothing'}: no such results folder"


def _difference_cell(row) -> str:  # noqa: ANN001
    return f"{row.diff_pct:+.2f} ({row.control})"  # one pair: no interval


def test_paired_differences_to_the_matched_dense_control(tree: Path) -> None:
    runs = results.runs_frame(tree)
    controls = results.matched_controls(runs)
    # the SGD runs share dense_r20's recipe; the rda runs have no dense run of their optimizer
    assert controls["magnitude_r20_oneshot_s80"] == "dense_r20" and controls["l0hc_r20"] == "dense_r20"
    assert "rda_r20_lam1e-5" not in controls and "dense_r20" not in controls
    diffs = results.paired_differences(runs).set_index("name")
    row = diffs.loc["magnitude_r20_oneshot_s80"]  # seeds 0 and 1: 0.75 - 0.80 and 0.77 - 0.82
    assert row.pairs == 2 and row.test_acc_diff == pytest.approx(-0.05) and row.test_acc_diff_ci == pytest.approx(0)
    single = diffs.loc["l0hc_r20"]  # one seed in common: a difference, but no interval
    assert (
        single.pairs == 1 and single.test_acc_diff == pytest.approx(0.78 - 0.80) and math.isnan(single.test_acc_diff_ci)
    )
    table = tables.summary_frame(runs).set_index("experiment")
    assert table.loc["magnitude_r20_oneshot_s80", "diff_pct"] == pytest.approx(-5.0)
    assert "-5.00 [± 0.00] (dense_r20)" in tables.summary_markdown(table.reset_index())


def test_aggregate_adds_the_95_percent_t_interval(tree: Path) -> None:
    points = results.aggregate(results.runs_frame(tree)).set_index("name")
    dense = points.loc["dense_r20"]
    assert dense.test_acc_ci == pytest.approx(12.7062 * hand_std(0.80, 0.82) / math.sqrt(2), rel=1e-4)
    assert math.isnan(points.loc["random_r20_s50"].test_acc_ci)  # one seed: no interval


def test_configs_of_version_0_2_keep_loading() -> None:
    import yaml

    from reporting.results import describe
    from training.record_schema import upgrade_config

    lottery = {"model": "resnet20", "method": {"name": "lottery", "sparsity": 0.8, "rewind_step": 20}}
    assert upgrade_config(lottery)["method"] == {"name": "lottery", "sparsity": 0.8, "rewind": "20it"}
    assert upgrade_config({"method": {"name": "random", "sparsity": 0.5}})["method"]["name"] == "random_finetune"
    assert "input_shape" not in upgrade_config({"method": {"name": "slimming", "input_shape": [3, 32, 32]}})["method"]
    # the resolved config of a 0.2.0 run of each kind (as committed under results/subset then) is read
    root = Path(__file__).resolve().parent / "fixtures" / "configs_0.2.0"
    for name in ("resnet20_cifar10_lottery_s80", "resnet20_cifar10_random_s80", "resnet20_cifar10_slimming_c50"):
        config = yaml.safe_load((root / f"{name}.yaml").read_text())
        assert describe(upgrade_config(config))[0]


def _invocation(seconds: int, status: int) -> dict:
    """One invocations.json entry as experiments.invocation writes it."""
    return {
        "command": "./run_all.sh --profile subset",
        "profile": "subset",
        "jobs": 1,
        "threads_per_job": None,
        "seconds": seconds,
        "exit_status": status,
        "git_revision": "abc",
        "date": "2026-01-01T00:00:00+00:00",
        "cpu": "some CPU",
        "cpu_count": 2,
        "gpus": [],
        "load_average": [0.5, 0.5, 0.5],
        "torch": "2.0",
    }


def test_the_summary_states_what_the_runs_cost(tree: Path, capsys: pytest.CaptureFixture) -> None:
    entries = [_invocation(5400, 130), _invocation(1800, 0)]
    (tree / "invocations.json").write_text(json.dumps(entries))
    for name, seconds in (("dense_r20", 5400.0), ("l0hc_r20", 1800.0)):  # the other runs took 1 s each
        path = tree / name / "seed0" / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "wall_time_s": seconds}))
    assert summary.main([str(tree)]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = len(results.runs_frame(tree))
    hours = (7200 + runs - 2) / 3600
    assert out[-2] == f"training: {runs} run(s), {hours:.2f} h of wall time summed over the runs"
    assert (
        out[-1] == f"invocations: 2 recorded (1 interrupted), 2.00 h of wall time in all ({tree / 'invocations.json'})"
    )


# ---------------------------------------------------------------- runs that must not be pooled


def _set(run: Path, **changes: object) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps(metrics | changes))


def test_seeds_trained_on_other_data_are_not_pooled(tree: Path, capsys: pytest.CaptureFixture) -> None:
    _set(tree / "dense_r20" / "seed1", data_fingerprint="1111111111111111")
    with pytest.raises(results.PoolingError, match="dense_r20: its runs were trained on different data"):
        results.aggregate(results.runs_frame(tree))
    assert summary.main([str(tree)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--results" in err and "1111111111111111: seed 1" in err


def test_a_copied_seed_folder_is_not_counted_as_another_seed(tree: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    shutil.copytree(tree / "dense_r20" / "seed1", tree / "dense_r20" / "seed2")
    runs = results.runs_frame(tree)
    with pytest.raises(results.PoolingError, match=r"seed2: records seed 1, not its folder's 2"):
        results.aggregate(runs)
    for check in (
        lambda: results.paired(runs, "dense_r20", "rda_r20_lam1e-5"),
        lambda: results.history_frame(runs),
        lambda: results.layers_frame(runs),
    ):
        with pytest.raises(results.PoolingError):
            check()
    # the copy relabelled as seed 2 throughout is still a repeat of seed 1's numbers, but no longer
    # detectable from its records: what is refused is a seed that two folders claim
    _set(tree / "dense_r20" / "seed2", seed=1)
    (tree / "dense_r20" / "seed2").rename(tree / "dense_r20" / "seed9")
    with pytest.raises(results.PoolingError, match="seed9: records seed 1"):
        results.aggregate(results.runs_frame(tree))
    assert summary.main([str(tree)]) == 1 and "cannot pool" in capsys.readouterr().err


def test_two_folders_of_one_seed_are_not_pooled(tree: Path) -> None:
    runs = results.runs_frame(tree)
    twin = runs[(runs.name == "dense_r20") & (runs.seed == 1)].assign(run_dir="elsewhere/dense_r20/seed1")
    import pandas as pd

    with pytest.raises(results.PoolingError, match="both hold seed 1"):
        results.aggregate(pd.concat([runs, twin], ignore_index=True))


def test_a_point_trained_by_several_code_identities_is_marked(tree: Path) -> None:
    plain = tables.summary_text(tables.summary_frame(results.runs_frame(tree)))
    assert tables.MIXED not in plain  # runs without a code identity are one "unrecorded" identity
    _set(tree / "dense_r20" / "seed1", code_sha256="a" * 64)
    table = tables.summary_frame(results.runs_frame(tree))
    assert dict(zip(table.experiment, table.code_identities))["dense_r20"] == 2
    text = tables.summary_text(table)
    assert f"dense_r20{tables.MIXED}" in text and "pool seeds trained by different code" in text
    assert f"`dense_r20`{tables.MIXED}" in tables.readme_markdown(table)
    assert sum(line.startswith(tables.MIXED) for line in tables.summary_markdown(table).splitlines()) == 1


def test_a_record_of_a_wrong_type_is_named_and_left_out(tree: Path, capsys: pytest.CaptureFixture) -> None:
    _set(tree / "l0hc_r20" / "seed0", sparsity=None)
    _set(tree / "random_r20_s50" / "seed0", test_acc="0.73")
    assert summary.main([str(tree)]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {tree / 'l0hc_r20' / 'seed0' / 'metrics.json'}: sparsity: null" in captured.err
    assert "test_acc: expected a number, got '0.73'" in captured.err
    assert "l0hc_r20" not in captured.out and "dense_r20" in captured.out and "Traceback" not in captured.err


def test_a_garbled_history_is_named_and_left_out_of_the_curves(tree: Path) -> None:
    history = tree / "dense_r20" / "seed0" / "history.csv"
    history.write_text(history.read_text().replace("0.1,", "x,", 1))
    runs = results.runs_frame(tree)
    with pytest.warns(UserWarning, match=f"skipped {history}: line 2, lr: not a number"):
        curves = results.history_frame(runs)
    assert set(curves.loc[curves.name == "dense_r20", "seed"]) == {1}
    assert curves["train_acc"].dtype.kind == "f"  # numbers, and a blank cell is NaN, not text
    history.write_text("\n".join(history.read_text().replace("x,", "0.1,", 1).splitlines()[:-1]) + "\n")
    with pytest.warns(UserWarning, match=f"skipped {history}: .* epochs, where metrics.json records "):
        results.history_frame(runs)


def test_a_garbled_invocations_file_does_not_fail_the_summary_or_later_invocations(
    tree: Path, capsys: pytest.CaptureFixture
) -> None:
    from experiments import invocation

    path = tree / "invocations.json"
    path.write_text('[{"seconds": "12", "exit_status": 0}')  # truncated, and of the wrong types
    assert summary.main([str(tree)]) == 0
    assert f"warning: skipped {path}: not valid JSON" in capsys.readouterr().err
    record = ["--seconds", "5", "--status", "0", "--revision", "abc", "--profile", "subset", "--jobs", "1"]
    assert invocation.main([str(tree), *record]) == 0
    assert "moved to" in capsys.readouterr().err and (tree / "invocations.json.bad").exists()
    entries = json.loads(path.read_text())
    assert len(entries) == 1 and entries[0]["seconds"] == 5
    # an entry of a wrong type is left out by the reader, the others counted
    path.write_text(json.dumps([entries[0], {**entries[0], "seconds": "12"}]))
    assert summary.main([str(tree)]) == 0
    captured = capsys.readouterr()
    assert "invocations: 1 recorded" in captured.out and "[1]: seconds: expected an integer" in captured.err
