"""The GPU acceptance check walks every step on the CPU (--dry-run) and reports each one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import gpu_check


def test_the_dry_run_walks_every_step_and_records_it(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_ROOT", str(tiny_cifar))
    out = tmp_path / "out"
    assert gpu_check.main([str(out), "--dry-run"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    steps = {row["step"]: row for row in summary["steps"]}
    assert list(steps) == [
        "cuda tests",
        "bench train",
        "bench train --compile",
        "bench jobs",
        "bench optimizer",
        "smoke profile",
        "bench latency",
        "torchrun x1",
        "torchrun x2",
    ]
    assert all(row["status"] == "ok" for row in steps.values()), steps
    for name in ("bench_train", "bench_train_compile", "bench_jobs", "bench_optimizer", "bench_latency"):
        assert "provenance" in json.loads((out / f"{name}.json").read_text())
    assert steps["smoke profile"]["result"] == "2 run(s) finished"
    assert steps["bench latency"]["result"].startswith("r20_slimming_c50 cpu_batch2")
    for n in (1, 2):
        assert json.loads((out / f"ddp{n}_comparison.json").read_text())["within"]
    log = (out / "gpu_check.log").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node 2" in log
    table = capsys.readouterr().out.split("gpu_check (dry run, ")[1].splitlines()  # after the progress lines
    assert len(table) == 2 + 9 and all(" ok " in line for line in table[2:])


def test_without_data_the_steps_that_need_it_are_skipped_not_failed(tmp_path: Path) -> None:
    steps = gpu_check.steps(tmp_path, dry_run=True, gpus=0, data_root=None)
    skipped = [s.name for s in steps if s.skip]
    assert skipped == ["smoke profile", "bench latency", "torchrun x1", "torchrun x2"]
    row = gpu_check.run_step(steps[-1], tmp_path, log=None)
    assert row["status"] == "skipped" and "DATA_ROOT" in row["result"]


def test_on_gpus_the_two_process_run_needs_two_gpus(tmp_path: Path) -> None:
    names = lambda gpus: [s.name for s in gpu_check.steps(tmp_path, False, gpus, "data")]
    assert "torchrun x1" in names(1) and "torchrun x2" not in names(1)
    assert "torchrun x2" in names(8)
    train = next(s for s in gpu_check.steps(tmp_path, False, 1, "data") if s.name == "bench train").argv
    assert train[train.index("--models") + 1 : train.index("--models") + 3] == ["resnet56", "vgg16"]
    assert "--device" in train and train[train.index("--device") + 1] == "cuda"


def test_a_ddp_run_beyond_tolerance_fails_its_step(tmp_path: Path) -> None:
    for name, acc in (("single", 0.50), ("ddp", 0.60)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"test_acc": acc, "train_loss": 1.0}))
    found = gpu_check.compare_runs(tmp_path / "single", tmp_path / "ddp")
    assert found["test_acc_diff"] == pytest.approx(0.1) and not found["within"]


def test_without_a_gpu_the_real_check_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if gpu_check.cuda_devices():
        pytest.skip("a GPU is present")
    assert gpu_check.main([str(tmp_path / "out")]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "out").exists()
