"""The GPU acceptance check walks every step on the CPU (--dry-run) and reports each one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments import gpu_check


def test_the_dry_run_walks_every_step_and_records_it(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_ROOT", str(tiny_cifar))
    out = tmp_path / "out"
    status = gpu_check.main([str(out), "--dry-run"])
    assert status == 0, (out / "gpu_check.log").read_text()[-4000:]  # the failed step's own output
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
        "single process 1",
        "single process 2",
        "torchrun x1",
        "torchrun x2 gradient",
    ]
    assert all(row["status"] == "ok" for row in steps.values()), steps
    for name in ("bench_train", "bench_train_compile", "bench_jobs", "bench_optimizer", "bench_latency"):
        assert "provenance" in json.loads((out / f"{name}.json").read_text())
    assert steps["smoke profile"]["result"] == "2 run(s) finished"
    assert steps["bench latency"]["result"].startswith("r20_slimming_c50 cpu_batch2")
    ddp1 = json.loads((out / "ddp1_comparison.json").read_text())
    assert ddp1["within"] and ddp1["single_runs"] == 2 and ddp1["nondeterministic"] == []
    assert ddp1["quantities"]["checkpoint tensors"] == {
        "torchrun_vs_single": 0.0,
        "single_spread": 0.0,
        "tolerance": 0.0,
        "within": True,
    }
    assert steps["torchrun x1"]["result"].startswith("equal bit for bit to 2 single-process runs")
    gradient = json.loads((out / "ddp2_gradient.json").read_text())
    assert gradient["within"] and [r["rank"] for r in gradient["ranks"]] == [0, 1]
    assert all(r["max_rel_diff"] <= gradient["tolerance"] for r in gradient["ranks"])
    log = (out / "gpu_check.log").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node 2 -m experiments.ddp_gradient" in log
    table = capsys.readouterr().out.split("gpu_check (dry run, ")[1].splitlines()  # after the progress lines
    assert len(table) == 2 + 11 and all(" ok " in line for line in table[2:])


def test_without_data_the_steps_that_need_it_are_skipped_not_failed(tmp_path: Path) -> None:
    steps = gpu_check.steps(tmp_path, dry_run=True, gpus=0, data_root=None)
    skipped = [s.name for s in steps if s.skip]
    assert skipped == [
        "smoke profile",
        "bench latency",
        "single process 1",
        "single process 2",
        "torchrun x1",
        "torchrun x2 gradient",
    ]
    row = gpu_check.run_step(steps[-1], tmp_path, log=None)
    assert row["status"] == "skipped" and "DATA_ROOT" in row["result"]


def test_on_gpus_the_two_process_run_needs_two_gpus(tmp_path: Path) -> None:
    names = lambda gpus: [s.name for s in gpu_check.steps(tmp_path, False, gpus, "data")]
    assert "torchrun x1" in names(1) and "torchrun x2 gradient" not in names(1)
    assert "torchrun x2 gradient" in names(8)
    assert [n for n in names(1) if n.startswith("single process")] == [f"single process {i}" for i in range(1, 6)]
    train = next(s for s in gpu_check.steps(tmp_path, False, 1, "data") if s.name == "bench train").argv
    assert train[train.index("--models") + 1 : train.index("--models") + 3] == ["resnet56", "vgg16"]
    assert "--device" in train and train[train.index("--device") + 1] == "cuda"


def fake_run(run_dir: Path, weight: float, test_acc: float, loss: float = 1.0, test_size: int = 0) -> Path:
    run_dir.mkdir(parents=True)
    history = [{"epoch": 1, "train_loss": loss, "seconds": weight * 100}]  # seconds are never compared
    state = {"model": {"w": torch.full((3,), weight)}, "optimizers": [], "method": {}, "history": history}
    torch.save(state, run_dir / "checkpoint.pt")
    metrics = {"test_acc": test_acc, "train_loss": loss, "steps": 4, "test_size": test_size}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_on_the_cpu_torchrun_x1_must_equal_the_single_runs_bit_for_bit(tmp_path: Path) -> None:
    singles = [fake_run(tmp_path / f"s{i}", 0.5, 0.3) for i in range(2)]
    assert gpu_check.compare_runs(singles, fake_run(tmp_path / "same", 0.5, 0.3), exact=True)["within"]
    off = gpu_check.compare_runs(singles, fake_run(tmp_path / "ulp", 0.5 + 2**-20, 0.3), exact=True)
    assert not off["within"] and not off["quantities"]["checkpoint tensors"]["within"]
    assert off["quantities"]["metrics test_acc"]["within"]
    # Two CPU runs that differ fail the check even when torchrun equals the first: the CPU must be exact.
    singles.append(fake_run(tmp_path / "s2", 0.5, 0.31))
    found = gpu_check.compare_runs(singles, fake_run(tmp_path / "same2", 0.5, 0.3), exact=True)
    assert found["nondeterministic"] == ["metrics test_acc"] and not found["within"]


def test_on_a_gpu_the_tolerance_is_the_measured_spread_of_the_single_runs(tmp_path: Path) -> None:
    runs = [(0.5, 0.30), (0.501, 0.32), (0.5, 0.31)]
    singles = [fake_run(tmp_path / f"s{i}", w, acc) for i, (w, acc) in enumerate(runs)]
    inside = gpu_check.compare_runs(singles, fake_run(tmp_path / "in", 0.503, 0.38), exact=False)
    assert inside["within"] and inside["quantities"]["metrics test_acc"]["tolerance"] == pytest.approx(0.08)
    assert inside["quantities"]["checkpoint tensors"]["single_spread"] == pytest.approx(0.001, rel=1e-4)
    assert inside["quantities"]["metrics train_loss"] == {
        "torchrun_vs_single": 0.0,
        "single_spread": 0.0,
        "tolerance": 0.0,
        "within": True,
    }
    outside = gpu_check.compare_runs(singles, fake_run(tmp_path / "out", 0.5, 0.39), exact=False)
    assert not outside["within"] and not outside["quantities"]["metrics test_acc"]["within"]
    # where the single runs agree exactly, so must torchrun
    assert not gpu_check.compare_runs(singles, fake_run(tmp_path / "loss", 0.5, 0.3, loss=1.001), exact=False)["within"]


def test_where_runs_vary_an_accuracy_may_move_by_whole_images(tmp_path: Path) -> None:
    singles = [fake_run(tmp_path / f"s{i}", w, 0.3, test_size=100) for i, w in enumerate([0.5, 0.501])]
    found = gpu_check.compare_runs(singles, fake_run(tmp_path / "t", 0.5, 0.33, test_size=100), exact=False)
    assert found["quantities"]["metrics test_acc"]["single_spread"] == pytest.approx(0.01)  # one image of 100
    assert found["quantities"]["metrics test_acc"]["within"]  # 3 images: within 4 x 1
    found = gpu_check.compare_runs(singles, fake_run(tmp_path / "u", 0.5, 0.35, test_size=100), exact=False)
    assert not found["quantities"]["metrics test_acc"]["within"]  # 5 images: beyond


def test_without_a_gpu_the_real_check_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if gpu_check.cuda_devices():
        pytest.skip("a GPU is present")
    assert gpu_check.main([str(tmp_path / "out")]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_train_summary_names_the_slowest_method_not_dense_or_its_control(tmp_path: Path) -> None:
    rows = {
        "dense sgd": {"images_per_s": 1000.0, "ratio_to_dense": 1.0},
        "dense sgd (control)": {"images_per_s": 900.0, "ratio_to_dense": 0.90},
        "reference loop": {"images_per_s": 500.0, "ratio_to_dense": 0.50},
        "l0hc": {"images_per_s": 950.0, "ratio_to_dense": 0.95},
        "rda": {"images_per_s": 980.0, "ratio_to_dense": 0.98},
    }
    (tmp_path / "b.json").write_text(json.dumps({"results": {"resnet20": rows}}))
    text = gpu_check.train_summary("b.json")(tmp_path)
    assert text == "resnet20 1000 img/s, slowest method l0hc 0.95x dense (A/A control 0.90x)"
