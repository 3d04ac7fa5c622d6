"""What became of every run of a profile (experiments/outcome.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.outcome import main

SUBSET = Path(__file__).resolve().parent.parent / "results" / "subset"
RUN = SUBSET / "r20_dense_sgd" / "seed0"  # a real finished run's records

CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 2}
optimizer: {name: sgd, lr: 0.05}
"""


def test_each_run_is_finished_failed_unfinished_or_not_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    configs, results = tmp_path / "configs", tmp_path / "results"
    configs.mkdir()
    for name in ("a_done", "b_failed", "c_stopped", "d_never"):
        (configs / f"{name}.yaml").write_text(CONFIG)
    for name, files in {
        "a_done": {"metrics.json": (RUN / "metrics.json").read_text()},
        "b_failed": {"error.log": "Traceback (most recent call last):\n  ...\nRuntimeError: shapes differ\n"},
        "c_stopped": {
            "checkpoint.pt": "",
            "history.csv": "".join((RUN / "history.csv").read_text().splitlines(True)[:2]),
        },
    }.items():
        folder = results / name / "seed0"
        folder.mkdir(parents=True)
        for file, text in files.items():
            (folder / file).write_text(text)
    invocation = json.loads((SUBSET / "invocations.json").read_text())[0]
    (results / "invocations.json").write_text(json.dumps([invocation]))
    out = tmp_path / "outcome.json"
    assert main([str(results), "--configs", str(configs), "--json", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 of 4 run(s) finished, 1 failed, 1 unfinished, 1 not run"
    assert lines[1].startswith("  failed: b_failed seed 0: RuntimeError: shapes differ (")
    assert lines[2] == "  unfinished: c_stopped seed 0: stopped after epoch 1; rerun to resume it"
    assert lines[3].startswith("  not run: d_never seed 0: no record") and len(lines) == 4
    record = json.loads(out.read_text())
    wall = json.loads((RUN / "metrics.json").read_text())["wall_time_s"]
    assert (record["runs"], record["finished"], record["failed"]) == (4, 1, 1)
    assert record["wall_time_s"] == invocation["seconds"] and record["training_s_summed"] == round(wall, 1)
    assert record["machine"]["cpu_count"] == invocation["cpu_count"] and len(record["not_finished"]) == 3


@pytest.mark.parametrize("bad", ['{"wall_time_s": null}', "not json", "/dev/zero"])
def test_a_bad_record_is_named_and_the_report_goes_on(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture) -> None:
    """Every record is read through training.record_schema: a garbled metrics.json, history.csv or
    invocations.json (or one linked to a device) is named in one line, never a traceback or a hang."""
    (tmp_path / "a.yaml").write_text(CONFIG)
    (tmp_path / "b.yaml").write_text(CONFIG)
    results = tmp_path / "results"
    for name, record in (("a", "metrics.json"), ("b", "history.csv")):
        folder = results / name / "seed0"
        folder.mkdir(parents=True)
        (folder / "checkpoint.pt").write_text("")
        paths = [folder / record, results / "invocations.json"] if name == "a" else [folder / record]
        for path in paths:
            path.symlink_to(bad) if bad.startswith("/dev/") else path.write_text(bad)
    out = tmp_path / "outcome.json"
    assert main([str(results), "--configs", str(tmp_path), "--json", str(out)]) == 1  # b is unfinished
    captured = capsys.readouterr()
    assert captured.out.startswith("1 of 2 run(s) finished, 1 unfinished")
    warnings = captured.err.splitlines()
    assert all(line.startswith("warning: skipped ") for line in warnings) and len(warnings) >= 3, warnings
    record = json.loads(out.read_text())
    assert (record["training_s_summed"], record["wall_time_s"], record["invocations"]) == (0, 0, [])


def test_all_finished_is_one_line_and_success(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "only.yaml").write_text(CONFIG)
    (tmp_path / "results" / "only" / "seed0").mkdir(parents=True)
    (tmp_path / "results" / "only" / "seed0" / "metrics.json").write_text("{}")
    assert main([str(tmp_path / "results"), "--configs", str(tmp_path / "only.yaml")]) == 0
    assert capsys.readouterr().out == "1 of 1 run(s) finished\n"
