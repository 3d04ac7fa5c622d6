"""experiments.tune: the next lam, the choice on validation, the record, and the config updated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments import tune
from tests.conftest import write_cifar10
from training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TUNING = ROOT / "results" / "subset_tuning"
# The averaging ablations take xRDA's 80% lam, so that only the averaging differs.
SHARED_LAM = {"r20_rda_s80_avg0": "r20_rda_s80", "r20_rda_s80_avg1": "r20_rda_s80"}


def trial(lam: float, sparsity: float, val_acc: float = 0.5) -> dict:
    return {"lam": lam, "sparsity": sparsity, "val_acc": val_acc}


def test_the_next_lam_interpolates_across_the_target_in_log_lam_and_logit_sparsity() -> None:
    trials = [trial(1e-5, 0.5), trial(4e-5, 0.9)]
    lam = tune.next_lam(trials, 0.8)
    # logit(0.5) = 0, logit(0.9) = ln 9, logit(0.8) = ln 4: log lam = ln 1e-5 + (ln 4 / ln 9) ln 4
    assert lam == pytest.approx(float(f"{1e-5 * 4 ** (math.log(4) / math.log(9)):.3g}"))
    assert tune.next_lam([trial(1e-5, 0.3)], 0.8) == 2e-5  # one run below: double it
    assert tune.next_lam([trial(1e-5, 0.95)], 0.8) == 5e-6  # above: halve it
    far = tune.next_lam([trial(1e-5, 0.10), trial(2e-5, 0.11)], 0.9)  # a flat slope extrapolates at most x4
    assert far == pytest.approx(8e-5)


def test_a_steep_response_gets_a_lam_between_the_two_runs_not_one_of_them() -> None:
    # r20_rda_channel_w30: 1.4e-4 -> 5.1% and 1.8e-4 -> 34.8% of the weights, target 30%
    lam = tune.next_lam([trial(1.4e-4, 0.0512), trial(1.8e-4, 0.3475)], 0.3)
    assert 1.4e-4 < lam < 1.8e-4
    assert lam == pytest.approx(1.76e-4)
    assert tune.lam_name(lam) == "0.000176"
    assert tune.lam_name(1.8e-4) == "0.00018"  # the runs named before keep their names


def test_the_choice_is_the_best_validation_accuracy_within_the_band() -> None:
    trials = [trial(1e-5, 0.79, 0.60), trial(2e-5, 0.81, 0.62), trial(3e-5, 0.85, 0.70)]
    assert tune.choose(trials, 0.8, 0.02)["lam"] == 2e-5  # 0.85 is outside the band, however good
    assert tune.choose(trials[2:], 0.8, 0.02) is None


CONFIG = """\
# lam: chosen on the validation split (experiments.tune) to land within 2 points of the target; see below.
# Gates: a comment that stays.
model: resnet20
data: {dataset: cifar10, batch_size: 32, validation: 10}
train: {epochs: 1, schedule: {name: cosine}, test_each_epoch: false}
optimizer: {name: rda, lr: 0.5}
method: {name: rda, lam: 1.0e-3}
profiles: {subset: {}}
"""


def test_a_tuning_run_reads_no_test_set_and_updates_the_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_cifar10(tmp_path / "data")
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    code = tune.main(
        [
            str(path),
            "--target",
            "0.5",
            "--within",
            "0.5",
            "--lam",
            "3e-3",
            "--data-root",
            str(data),
            "--results",
            str(tmp_path / "tuning"),
            "--update",
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "tuning" / "exp.json").read_text())
    assert record["chosen_lam"] == 3e-3 and len(record["trials"]) == 1
    metrics = json.loads((tmp_path / "tuning" / "exp_lam0.003" / "seed0" / "metrics.json").read_text())
    assert metrics["test_acc"] is None and metrics["test_loss"] is None and metrics["val_acc"] is not None
    text = path.read_text()
    assert "method: {name: rda, lam: 0.003}" in text and "# Gates: a comment that stays." in text
    assert f"#   lam 0.003: sparsity {100 * record['trials'][0]['sparsity']:.1f}%" in text and "<- chosen" in text
    assert "(experiments.tune) to land" not in text  # the placeholder is replaced


def test_with_closest_a_target_no_run_reaches_gets_the_nearest_run_and_says_so(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data")
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    args = [str(path), "--target", "0.999", "--within", "0.0001", "--lam", "3e-3", "1e-3", "--max-runs", "2"]
    args += ["--data-root", str(data), "--results", str(tmp_path / "tuning"), "--update"]
    assert tune.main(args) == 1  # without --closest: no choice, the config untouched
    assert path.read_text() == CONFIG
    assert tune.main([*args, "--closest"]) == 0
    record = json.loads((tmp_path / "tuning" / "exp.json").read_text())
    assert len({t["sparsity"] for t in record["trials"]}) == 2  # else any run would pass for the nearest
    nearest = min(record["trials"], key=lambda t: abs(t["sparsity"] - 0.999))
    assert record["chosen_lam"] == nearest["lam"] and record["rule"] == tune.CLOSEST
    text = path.read_text()
    assert f"#   {tune.CLOSEST}" in text and f"lam: {tune.lam_name(nearest['lam'])}" in text
    tune.update_config(path, nearest, record)  # once more: the comment is replaced, not repeated
    assert path.read_text() == text


def test_a_run_another_target_already_made_is_reused(tmp_path: Path) -> None:
    """The configs of two targets differ only in name and description until lam sets them apart:
    a lam one tuning has run is not run again for the other."""
    data = write_cifar10(tmp_path / "data")
    out = tmp_path / "tuning"
    for name, target in (("exp_a", "0.5"), ("exp_b", "0.4")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"description: {name}, target {target}\n" + CONFIG)
        args = [str(path), "--target", target, "--within", "0.5", "--lam", "3e-3", "--data-root", str(data)]
        assert tune.main([*args, "--results", str(out)]) == 0
    a, b = (json.loads((out / f"{name}.json").read_text())["trials"] for name in ("exp_a", "exp_b"))
    assert b == a and b[0]["run"] == str(out / "exp_a_lam0.003" / "seed0")
    assert not (out / "exp_b_lam0.003").exists()


def test_every_tuned_lam_of_the_subset_protocol_is_the_one_its_validation_record_chose() -> None:
    """Each subset config with a penalty (xRDA lam > 0, L0-HC, Dep-L0) holds the lam its committed
    record chose, cites it in its comment, and each cited run is committed, read no test set and
    reports the numbers the record quotes."""
    records = {r["experiment"]: r for r in (json.loads(p.read_text()) for p in TUNING.glob("*.json"))}
    tuned = 0
    for path in sorted(ROOT.glob("experiments/configs/*/subset/*.yaml")):
        cfg = load_config(path, profile="subset")
        lam = getattr(cfg.method, "lam", 0.0)
        if cfg.method.name not in ("rda", "l0hc", "dep_l0") or lam == 0:
            continue
        record = records.get(SHARED_LAM.get(cfg.name, cfg.name))
        assert record is not None, f"{path.name}: no tuning record in {TUNING}"
        assert lam == record["chosen_lam"], f"{path.name}: lam {lam}, its record chose {record['chosen_lam']}"
        if cfg.name in SHARED_LAM:
            continue
        tuned += 1
        assert record["config"] == str(path.relative_to(ROOT))
        # the record's choice follows its rule: the best validation accuracy in the 2-point band, or,
        # where none landed there, the nearest run, and the YAML says so
        chosen = tune.choose(record["trials"], record["target"], record["within"])
        if record["rule"] == tune.CLOSEST:
            assert chosen is None and f"#   {tune.CLOSEST}" in path.read_text()
            chosen = tune.closest(record["trials"], record["target"])
        else:
            assert record["rule"] == tune.BAND, f"{path.name}: unknown rule {record['rule']!r}"
            assert chosen is not None, f"{path.name}: no run in the band"
        assert record["within"] == 0.02 and chosen["lam"] == lam, f"{path.name}: lam {lam} is not its rule's choice"
        line = (
            f"#   lam {tune.lam_name(lam)}: sparsity {100 * chosen['sparsity']:.1f}%, "
            f"validation accuracy {100 * chosen['val_acc']:.1f}%  <- chosen"
        )
        assert line in path.read_text(), f"{path.name}: the comment does not cite its chosen run"
        for t in record["trials"]:
            metrics = json.loads((ROOT / t["run"] / "metrics.json").read_text())
            assert metrics["test_acc"] is None, f"{t['run']} read the test set"
            assert (metrics["sparsity"], metrics["val_acc"]) == (t["sparsity"], t["val_acc"])
    assert tuned == 12  # 3 xRDA targets, plain l1, 2 xRDA channel, 2 L0-HC and 4 Dep-L0 configs


def test_a_run_trained_on_other_data_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another target's run at the same lam but on other data (same sizes, other images) is trained
    again, and --update writes the lam chosen from the runs on this data."""
    first, other = write_cifar10(tmp_path / "data"), write_cifar10(tmp_path / "other", seed=1)
    out = tmp_path / "tuning"
    for name, data in (("exp_a", first), ("exp_b", other)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"description: {name}\n" + CONFIG)
        args = [str(path), "--target", "0.5", "--within", "0.5", "--lam", "3e-3", "--data-root", str(data)]
        assert tune.main([*args, "--results", str(out), "--update"]) == 0
    a, b = (json.loads((out / f"{name}.json").read_text())["trials"] for name in ("exp_a", "exp_b"))
    assert b[0]["run"] == str(out / "exp_b_lam0.003" / "seed0")  # trained again, not exp_a's run
    fingerprints = {json.loads((Path(t["run"]) / "metrics.json").read_text())["data_fingerprint"] for t in a + b}
    assert len(fingerprints) == 2
    assert f"validation accuracy {100 * b[0]['val_acc']:.1f}%" in (tmp_path / "exp_b.yaml").read_text()
    # the same data: reused (a finished run, as the runner skips it)
    identity = tune.current_identity(load_config(tmp_path / "exp_a.yaml", profile="subset"), first)
    cfg = load_config(tmp_path / "exp_a.yaml", ["method.lam=0.003", "name=exp_c_lam0.003"], profile="subset")
    assert tune.same_run(cfg, out, identity) == out / "exp_a_lam0.003" / "seed0"


def test_a_damaged_record_of_another_run_is_named_and_passed_over(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data")
    out = tmp_path / "tuning"
    path = tmp_path / "exp_a.yaml"
    path.write_text(CONFIG)
    args = [str(path), "--target", "0.5", "--within", "0.5", "--lam", "3e-3", "--data-root", str(data)]
    assert tune.main([*args, "--results", str(out)]) == 0
    metrics = out / "exp_a_lam0.003" / "seed0" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"sparsity": ', '"sparsity": "x", "_": ', 1))
    cfg = load_config(path, ["method.lam=0.003", "name=exp_b_lam0.003"], profile="subset")
    identity = tune.current_identity(cfg, data)
    with pytest.warns(UserWarning, match=f"skipped {metrics}: sparsity: expected a number"):
        assert tune.same_run(cfg, out, identity) is None


def test_a_results_path_it_cannot_write_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """However far in the path fails (a file where the results folder should be), ``python -m`` ends in
    one error line and exit status 1, not a traceback."""
    data = write_cifar10(tmp_path / "data")
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    (tmp_path / "file").write_text("in the way\n")
    args = [str(path), "--target", "0.5", "--lam", "3e-3", "--data-root", str(data)]
    assert tune._main([*args, "--results", str(tmp_path / "file" / "tuning")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
