"""experiments.verify: a recorded run's first epoch (or steps), replayed at today's code, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.nn.functional as F

from experiments import verify
from tests.helpers import run_config, run_dir

CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 16, validation: 20}
train: {epochs: 2, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05, weight_decay: 5e-4}
"""


@pytest.fixture
def recorded(tmp_path: Path, tiny_cifar: Path) -> Path:
    assert run_config(tmp_path, tiny_cifar, CONFIG) == 0
    return run_dir(tmp_path)


def args(folder: Path, data: Path, *extra: str) -> list[str]:
    return [str(folder), "--data-root", str(data), *extra]


def test_the_first_epoch_is_recorded_for_verification(recorded: Path) -> None:
    metrics = json.loads((recorded / "metrics.json").read_text())
    first = metrics["first_epoch"]
    assert first["steps"] == metrics["steps_per_epoch"] == len(first["step_losses"]) == 5  # 80 images / 16
    assert len(first["params_sha256"]) == 64 and first["val_acc"] is not None


def test_same_code_replays_equal(recorded: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture) -> None:
    assert verify.main(args(recorded, tiny_cifar)) == 0
    assert "EQUAL to the record (bit for bit: 5 step losses, the epoch's losses" in capsys.readouterr().out
    assert verify.main(args(recorded, tiny_cifar, "--steps", "2")) == 0
    assert "EQUAL to the record (bit for bit: 2 step losses)" in capsys.readouterr().out


def test_a_changed_loss_is_reported_different(
    recorded: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: real(*a, **k) * (1 + 1e-6))
    assert verify.main(args(recorded, tiny_cifar, "--steps", "1")) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT from the record" in out and "step 1 loss: " in out
    assert verify.main(args(recorded, tiny_cifar)) == 1
    assert "params_sha256" in capsys.readouterr().out


def test_another_cpu_or_thread_count_is_said(recorded: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture) -> None:
    path = recorded / "metrics.json"
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps(metrics | {"device": "Some Other CPU", "threads": 1}))
    verify.main(args(recorded, tiny_cifar, "--steps", "1"))
    assert "note: recorded on Some Other CPU with 1 thread(s)" in capsys.readouterr().out


def test_a_run_from_before_first_epoch_is_compared_with_its_history(
    recorded: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = recorded / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["first_epoch"]
    path.write_text(json.dumps(metrics))
    assert verify.main(args(recorded, tiny_cifar)) == 0
    assert "6 significant digits" in capsys.readouterr().out
    assert verify.main(args(recorded, tiny_cifar, "--steps", "1")) == 2  # nothing recorded per step
    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: real(*a, **k) * 1.01)
    assert verify.main(args(recorded, tiny_cifar)) == 1


def test_other_data_is_refused(recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.conftest import write_cifar10

    other = write_cifar10(tmp_path / "other", seed=1)
    assert verify.main(args(recorded, other, "--steps", "1")) == 3
    assert "holds other data than" in capsys.readouterr().err
