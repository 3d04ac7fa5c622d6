import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from training.data import DataError
from training.runner import load_exported
from models import build_model
from pruning.accounting import sparsity_report
from tests.helpers import comparable_metrics, run_config, run_dir, straight_and_interrupted

CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train:
  epochs: 3
  schedule: {name: multistep, milestones: [2]}
optimizer: {name: sgd, lr: 0.05, weight_decay: 5e-4}
"""


def run(tmp_path: Path, data_root: Path, *extra: str) -> int:
    return run_config(tmp_path, data_root, CONFIG, *extra)


def read_metrics(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results" / "tiny" / "seed0" / "metrics.json").read_text())


def test_run_writes_every_record(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run(tmp_path, tiny_cifar) == 0
    run_dir = tmp_path / "results" / "tiny" / "seed0"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.yaml", "env.json",
                                                         "history.csv", "metrics.json"]
    metrics = read_metrics(tmp_path)
    for key in ["test_acc", "test_loss", "train_loss", "sparsity", "sparsity_all", "params_total", "params_nonzero",
                "flops_dense", "flops_effective", "layers", "epochs", "seed", "method", "model", "dataset",
                "train_size", "test_size", "profile", "wall_time_s", "data_label"]:
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


def test_changed_config_is_not_mixed_with_old_results(tmp_path: Path, tiny_cifar: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=1") == 0
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=2") == 1
    assert "holds results of a different config" in capsys.readouterr().err
    assert run(tmp_path, tiny_cifar, "--set", "train.epochs=2", "--force") == 0
    assert read_metrics(tmp_path)["epochs"] == 2


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path, tiny_cifar: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
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
