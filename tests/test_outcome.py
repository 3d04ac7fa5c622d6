"""What became of every run of a profile (experiments/outcome.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.outcome import main

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
        "a_done": {"metrics.json": '{"wall_time_s": 12.5}'},
        "b_failed": {"error.log": "Traceback (most recent call last):\n  ...\nRuntimeError: shapes differ\n"},
        "c_stopped": {"checkpoint.pt": "", "history.csv": "epoch,stage\n1,train\n"},
    }.items():
        folder = results / name / "seed0"
        folder.mkdir(parents=True)
        for file, text in files.items():
            (folder / file).write_text(text)
    (results / "invocations.json").write_text(json.dumps([{"seconds": 70, "cpu": "x", "cpu_count": 2}]))
    out = tmp_path / "outcome.json"
    assert main([str(results), "--configs", str(configs), "--json", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 of 4 run(s) finished, 1 failed, 1 unfinished, 1 not run"
    assert lines[1].startswith("  failed: b_failed seed 0: RuntimeError: shapes differ (")
    assert lines[2] == "  unfinished: c_stopped seed 0: stopped after epoch 1; rerun to resume it"
    assert lines[3].startswith("  not run: d_never seed 0: no record") and len(lines) == 4
    record = json.loads(out.read_text())
    assert (record["runs"], record["finished"], record["failed"], record["wall_time_s"]) == (4, 1, 1, 70)
    assert (
        record["machine"]["cpu_count"] == 2 and len(record["not_finished"]) == 3 and record["training_s_summed"] == 12.5
    )


def test_all_finished_is_one_line_and_success(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "only.yaml").write_text(CONFIG)
    (tmp_path / "results" / "only" / "seed0").mkdir(parents=True)
    (tmp_path / "results" / "only" / "seed0" / "metrics.json").write_text("{}")
    assert main([str(tmp_path / "results"), "--configs", str(tmp_path / "only.yaml")]) == 0
    assert capsys.readouterr().out == "1 of 1 run(s) finished\n"
