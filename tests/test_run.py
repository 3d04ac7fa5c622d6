import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import training.loop as loop_module
import training.runner as runner_module
from experiments.run import main
from models import build_model
from pruning.accounting import sparsity_report
from tests.conftest import ROOT, write_cifar10
from tests.helpers import CONFIG, comparable_metrics, run_config, run_dir, straight_and_interrupted
from training.data import DataError
from training.loop import TrainingDiverged, check_finite
from training.records import atomic_write_json
from training.runner import load_exported, run_lock


def run(tmp_path: Path, data_root: Path, *extra: str) -> int:
    return run_config(tmp_path, data_root, CONFIG, *extra)


def read_metrics(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results" / "tiny" / "seed0" / "metrics.json").read_text())


def test_run_writes_every_record(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run(tmp_path, tiny_cifar) == 0
    run_dir = tmp_path / "results" / "tiny" / "seed0"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.yaml",
        "env.json",
        "history.csv",
        "metrics.json",
    ]
    metrics = read_metrics(tmp_path)
    for key in [
        "test_acc",
        "test_loss",
        "train_loss",
        "sparsity",
        "sparsity_all",
        "params_total",
        "params_nonzero",
        "flops_dense",
        "flops_effective",
        "layers",
        "epochs",
        "seed",
        "method",
        "model",
        "dataset",
        "train_size",
        "test_size",
        "profile",
        "wall_time_s",
        "data_label",
    ]:
        assert key in metrics, key
    assert metrics["epochs"] == 3 and metrics["train_size"] == 100 and metrics["method"] == "dense"
    assert metrics["data_label"] == "CIFAR-10 subset (100 train / 30 test)"
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.05, 0.05, 0.005])
    # The reported accuracy is the final epoch's, not the best one.
    assert metrics["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]), abs=1e-6)
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["seed"] == 0 and resolved["train"]["epochs"] == 3 and resolved["optimizer"]["momentum"] == 0.9
    env = json.loads((run_dir / "env.json").read_text())
    assert {"git_revision", "torch", "device", "python"} <= set(env)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["stage_epoch"] == 3


def test_finished_run_is_skipped(tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0
    first = read_metrics(tmp_path)
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0
    assert "[skip]" in capsys.readouterr().out and read_metrics(tmp_path) == first


def test_changed_config_is_not_mixed_with_old_results(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=2") == 1
    assert "holds results of a different config" in capsys.readouterr().err
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=2", "--force") == 0
    assert read_metrics(tmp_path)["epochs"] == 2


def test_resumed_run_equals_uninterrupted_run(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=3)
    assert run_config(killed, tiny_cifar, CONFIG) == 0  # resumes after two checkpoints
    assert comparable_metrics(straight) == comparable_metrics(killed)


def test_nan_loss_stops_without_metrics(tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(tmp_path, tiny_cifar, "--set", "optimizer.lr=1e12", "--set", "train.epochs=2") == 1
    assert "training loss is nan" in capsys.readouterr().err
    assert not (tmp_path / "results" / "tiny" / "seed0" / "metrics.json").exists()


SLIMMING = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 1, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
method: {name: slimming, l1: 1.0e-4, channel_ratio: 0.5, finetune_epochs: 1, finetune_lr: 0.05,
         finetune_schedule: {name: constant}, latency_batch_sizes: [2], latency_warmup: 0, latency_repeats: 1}
"""


def test_load_exported_rebuilds_the_measured_model(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run_config(tmp_path, tiny_cifar, SLIMMING) == 0
    folder = run_dir(tmp_path)
    final, method, metrics = load_exported(folder, torch.device("cpu"))
    assert metrics == json.loads((folder / "metrics.json").read_text())
    report = sparsity_report(final, build_model("resnet20", 10), (3, 32, 32))
    assert report["sparsity"] == metrics["sparsity"] and report["params_total"] == metrics["params_physical"]
    assert sum(p.numel() for p in method.reference.parameters()) == metrics["params_physical_dense"]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # the physically smaller model computes what the masked one did
        assert torch.allclose(final.eval()(x), method.reference.eval()(x), atol=1e-5)
    (folder / "checkpoint.pt").unlink()
    with pytest.raises(DataError, match="checkpoint.pt"):
        load_exported(folder, torch.device("cpu"))


# ---------------------------------------------------------------- runs that cannot silently go wrong


def test_a_foreign_checkpoint_is_refused(tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other"
    other.mkdir()
    assert (
        run_config(
            other,
            tiny_cifar,
            CONFIG.replace("train:", "method: {name: magnitude, sparsity: 0.5, retrain_epochs: 1}\ntrain:"),
        )
        == 0
    )
    folder = run_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes((run_dir(other) / "checkpoint.pt").read_bytes())
    assert run(tmp_path, tiny_cifar) == 1
    err = capsys.readouterr().err
    assert "checkpoint.pt: was written by a run of another config" in err and "--force" in err
    assert not (folder / "metrics.json").exists()


def test_a_checkpoint_without_config_resumes_and_the_run_ends_with_its_config(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=3)
    (run_dir(killed) / "config.yaml").unlink()
    assert run_config(killed, tiny_cifar, CONFIG) == 0
    assert (run_dir(killed) / "config.yaml").read_text() == (run_dir(straight) / "config.yaml").read_text()
    assert comparable_metrics(straight) == comparable_metrics(killed)


def test_other_data_is_not_taken_for_finished_results(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0
    fingerprint = read_metrics(tmp_path)["data_fingerprint"]
    other = write_cifar10(tmp_path / "other", seed=1)  # same sizes, other images
    assert run(tmp_path, other, "--set", "train.epochs=1") == 1
    assert f"holds results of other data (fingerprint {fingerprint}, now " in capsys.readouterr().err


def test_a_second_runner_leaves_a_run_in_progress_alone(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    with run_lock(run_dir(tmp_path)):  # another runner is training this run
        assert run(tmp_path, tiny_cifar) == 0
    out = capsys.readouterr().out
    assert "[busy] tiny seed 0:" in out and f"in progress in another runner (pid {os.getpid()})" in out
    assert not (run_dir(tmp_path) / "config.yaml").exists()
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0  # released: it runs


def test_the_lock_of_a_dead_runner_does_not_block(tmp_path: Path, tiny_cifar: Path) -> None:
    folder = run_dir(tmp_path)
    code = (
        f"import os, sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
        f"from training.runner import run_lock; lock = run_lock(Path({str(folder)!r})); lock.__enter__(); "
        "os.kill(os.getpid(), 9)"
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9 and (folder / ".lock").read_text().strip()
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0


def test_divergence_in_the_last_epoch_writes_no_metrics(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real, calls = loop_module.evaluate, {"n": 0}

    def diverges_last(*args: Any, **kwargs: Any) -> tuple[float, float]:
        calls["n"] += 1
        loss, acc = real(*args, **kwargs)
        return (math.nan, acc) if calls["n"] == 3 else (loss, acc)  # the test loss of epoch 3 of 3

    monkeypatch.setattr(loop_module, "evaluate", diverges_last)
    assert run(tmp_path, tiny_cifar) == 1
    assert "test loss is nan in epoch 3" in capsys.readouterr().err
    assert not (run_dir(tmp_path) / "metrics.json").exists()


def test_non_finite_weights_stop_a_run() -> None:
    model = torch.nn.Linear(2, 2)
    check_finite(model, 1, "train", train_loss=0.5)
    with torch.no_grad():
        model.bias[1] = math.inf
    with pytest.raises(TrainingDiverged, match="weights of bias are not finite in epoch 4"):
        check_finite(model, 4, "train", train_loss=0.5)


def test_metrics_are_strict_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "m.json", {"test_loss": math.nan})
    assert not (tmp_path / "m.json").exists()


def test_a_resume_with_another_thread_count_uses_the_original_one(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    straight, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=3)
    env_before = (run_dir(killed) / "env.json").read_text()
    torch.set_num_threads(2)
    try:
        assert run_config(killed, tiny_cifar, CONFIG) == 0
        assert torch.get_num_threads() == 1  # what the run started with
    finally:
        torch.set_num_threads(1)
    assert "with 1 thread(s), as it started (now 2)" in capsys.readouterr().out
    assert comparable_metrics(straight) == comparable_metrics(killed)
    assert (run_dir(killed) / "env.json").read_text() == env_before and comparable_metrics(killed)["threads"] == 1


def test_a_failed_run_leaves_nothing_to_protect(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run(tmp_path, tiny_cifar, "--set", "optimizer.lr=1e12", "--set", "train.epochs=1") == 1
    assert (run_dir(tmp_path) / "config.yaml").exists() and not (run_dir(tmp_path) / "checkpoint.pt").exists()
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0  # the corrected config is not refused


def test_a_damaged_checkpoint_says_what_to_do_and_temporary_files_go(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=3)
    folder = run_dir(killed)
    checkpoint = folder / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    (folder / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a file")  # a write killed half-way
    capsys.readouterr()
    assert run_config(killed, tiny_cifar, CONFIG) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "checkpoint.pt: unreadable" in err[0] and "delete it to start this run again" in err[0]
    assert not list(folder.glob(".*.tmp"))
    checkpoint.unlink()
    assert run_config(killed, tiny_cifar, CONFIG) == 0


def test_one_failing_run_does_not_stop_the_others(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real = runner_module.build_data

    def broken_for_bad(cfg: Any, *args: Any) -> Any:
        if cfg.name == "bad":
            raise RuntimeError("something broke\nsecond line")
        return real(cfg, *args)

    monkeypatch.setattr(runner_module, "build_data", broken_for_bad)
    (tmp_path / "bad.yaml").write_text(CONFIG)
    (tmp_path / "good.yaml").write_text(CONFIG)
    results = tmp_path / "results"
    assert (
        main(
            [
                str(tmp_path / "bad.yaml"),
                str(tmp_path / "good.yaml"),
                "--data-root",
                str(tiny_cifar),
                "--results",
                str(results),
                "--no-progress",
                "--set",
                "train.epochs=1",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    log = results / "bad" / "seed0" / "error.log"
    assert err == [f"error: bad seed 0: RuntimeError: something broke (traceback in {log})"]
    assert "Traceback" in log.read_text() and (results / "good" / "seed0" / "metrics.json").exists()


def test_names_are_plain_path_components(tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("../../x", "/abs/x", ".hidden", "a/b"):
        path = tmp_path / "named.yaml"
        path.write_text(f"name: {name}\n" + CONFIG)
        assert main([str(path), "--results", str(tmp_path / "results")]) == 2
        assert "name: must be a plain file name" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_sigterm_stops_the_runner_cleanly(tmp_path: Path, tiny_cifar: Path) -> None:
    (tmp_path / "slow.yaml").write_text(CONFIG.replace("epochs: 3", "epochs: 50"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.run",
            str(tmp_path / "slow.yaml"),
            "--data-root",
            str(tiny_cifar),
            "--results",
            str(tmp_path / "results"),
            "--no-progress",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    history = tmp_path / "results" / "slow" / "seed0" / "history.csv"
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline:  # at least one checkpoint
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "interrupted during slow seed 0: rerun the same command to go on" in err
    assert not list((tmp_path / "results" / "slow" / "seed0").glob(".*.tmp"))


def test_an_exclude_naming_no_module_fails_before_training(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    text = CONFIG + "method: {name: magnitude, sparsity: 0.5, retrain_epochs: 1, exclude: [classifer]}\n"
    assert run_config(tmp_path, tiny_cifar, text) == 2
    assert capsys.readouterr().err.strip() == "error: tiny: method.exclude: no module named 'classifer' in the model"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the ignored exception, on purpose
def test_a_sigterm_landing_in_a_destructor_still_stops_the_run(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Python ignores an exception raised in a destructor: a SIGTERM whose KeyboardInterrupt lands
    there (a tqdm bar being collected) must not be lost, or the run trains on to its end."""
    real_epoch = loop_module.Trainer._epoch
    calls = {"n": 0}

    class Collected:
        def __del__(self) -> None:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # the runner's handler, as if signalled here

    def epoch(self: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            Collected()  # collected at once: its exception is printed and ignored
        real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(loop_module.Trainer, "_epoch", epoch)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert run(tmp_path, tiny_cifar) == 130
    finally:
        signal.signal(signal.SIGTERM, handler)
        loop_module.clear_stop()
    assert "interrupted during tiny seed 0" in capsys.readouterr().err
    assert not (tmp_path / "results" / "tiny" / "seed0" / "metrics.json").exists()


# Magnitude pruning: 1 epoch of training, then prune and fine-tune 2 epochs.
TWO_STAGES = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 1}
optimizer: {name: sgd, lr: 0.05, weight_decay: 5e-4}
method: {name: magnitude, sparsity: 0.5, retrain_epochs: 2}
"""


@pytest.fixture(scope="module")
def two_stages_straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, folder) of the uninterrupted two-stage run, shared by the tests that kill it."""
    root = tmp_path_factory.mktemp("two_stages")
    data = write_cifar10(root / "data")
    straight = root / "straight"
    straight.mkdir()
    assert run_config(straight, data, TWO_STAGES) == 0
    return data, straight


def history_rows(folder: Path) -> list[dict[str, str]]:
    """history.csv of ``run_config(folder, ...)`` without its timings (which differ between runs)."""
    with open(run_dir(folder) / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def checkpoint_epochs(folder: Path) -> int:
    return len(torch.load(run_dir(folder) / "checkpoint.pt", weights_only=True)["history"])


def test_a_kill_inside_the_second_stage_resumes_to_the_uninterrupted_run(
    tmp_path: Path, two_stages_straight: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies at the second step of epoch 3 (the fine-tuning's second epoch, its weights
    half-updated in memory); the resumed run ends with the uninterrupted run's metrics and history."""
    data, straight = two_stages_straight
    real_epoch, seen = loop_module.Trainer._epoch, {"epoch": 0, "steps": 0}

    def counting_epoch(self: Any, *args: Any, **kwargs: Any) -> None:
        seen["epoch"], seen["steps"] = seen["epoch"] + 1, 0
        real_epoch(self, *args, **kwargs)

    def killed_in_a_step() -> None:  # the loop checks for a stop request before every step
        if seen["epoch"] == 3:
            seen["steps"] += 1
            if seen["steps"] == 2:
                raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop_module.Trainer, "_epoch", counting_epoch)
        patch.setattr(loop_module, "check_stop", killed_in_a_step)
        assert run_config(tmp_path, data, TWO_STAGES) == 130
    assert seen["epoch"] == 3 and seen["steps"] == 2  # it died where meant, not before
    assert checkpoint_epochs(tmp_path) == 2 and [r["stage"] for r in history_rows(tmp_path)] == ["train", "finetune"]
    assert not (run_dir(tmp_path) / "metrics.json").exists()
    assert run_config(tmp_path, data, TWO_STAGES) == 0
    assert comparable_metrics(straight) == comparable_metrics(tmp_path)
    assert history_rows(straight) == history_rows(tmp_path) and len(history_rows(tmp_path)) == 3


@pytest.mark.parametrize("epoch", [2, 3])  # inside the fine-tuning, and its last epoch
def test_a_kill_between_the_two_records_of_an_epoch_leaves_no_history_ahead_of_the_checkpoint(
    tmp_path: Path, two_stages_straight: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, epoch: int
) -> None:
    """The process dies after the first of an epoch's two records (checkpoint.pt, history.csv) is
    written and before the second: history.csv never holds an epoch the checkpoint lacks, and the
    resumed run ends with the uninterrupted run's metrics and history."""
    data, straight = two_stages_straight
    writes = {"n": 0}

    def dying(real: Any) -> Any:
        def write(path: Path, *args: Any, **kwargs: Any) -> Any:
            if Path(path).name in ("history.csv", "checkpoint.pt"):
                writes["n"] += 1
                if writes["n"] == 2 * epoch:  # the second record of that epoch
                    raise KeyboardInterrupt
            return real(path, *args, **kwargs)

        return write

    with monkeypatch.context() as patch:
        patch.setattr(runner_module, "atomic_write_text", dying(runner_module.atomic_write_text))
        patch.setattr(runner_module, "atomic_torch_save", dying(runner_module.atomic_torch_save))
        assert run_config(tmp_path, data, TWO_STAGES) == 130
    assert writes["n"] == 2 * epoch
    assert checkpoint_epochs(tmp_path) == epoch and len(history_rows(tmp_path)) == epoch - 1
    assert run_config(tmp_path, data, TWO_STAGES) == 0
    assert comparable_metrics(straight) == comparable_metrics(tmp_path)
    assert history_rows(straight) == history_rows(tmp_path) and len(history_rows(tmp_path)) == 3
