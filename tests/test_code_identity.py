"""Code identity: what code trained a run, recorded when it starts, compared when it resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import training.runner as runner_module
from tests.helpers import CONFIG, comparable_metrics, run_config, run_dir, straight_and_interrupted
from training.code_identity import changed_files, code_identity, source_files


def edited(path: str) -> dict[str, Any]:
    """The code identity as if ``path`` had been edited since."""
    identity = code_identity()
    files = dict(identity["code_files"]) | {path: "0" * 64}
    return {"code_sha256": "f" * 64, "code_files": files}


def test_code_identity_hashes_every_training_source_file(tmp_path: Path) -> None:
    identity = code_identity()
    names = set(identity["code_files"])
    assert {"training/loop.py", "optim/rda.py", "models/resnet_cifar.py", "pruning/base.py"} <= names
    assert not any(n.startswith(("experiments/", "reporting/", "tests/")) for n in names)
    assert len(names) == len(source_files())
    # a copy of the tree with one file edited: another identity, naming that file
    copy = tmp_path / "tree"
    for name in names:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((Path(__file__).resolve().parent.parent / name).read_bytes())
    assert code_identity(copy) == identity
    (copy / "training" / "loop.py").write_text((copy / "training" / "loop.py").read_text() + "\n# edit\n")
    other = code_identity(copy)
    assert other["code_sha256"] != identity["code_sha256"]
    assert changed_files(identity["code_files"], other["code_files"]) == "training/loop.py changed"
    assert changed_files(None, other["code_files"]) == "its code identity was not recorded"


def test_a_run_records_the_code_it_was_trained_by(tmp_path: Path, tiny_cifar: Path) -> None:
    assert run_config(tmp_path, tiny_cifar, CONFIG, "--set", "train.epochs=1") == 0
    identity = code_identity()
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    env = json.loads((run_dir(tmp_path) / "env.json").read_text())
    assert metrics["code_sha256"] == env["code_sha256"] == identity["code_sha256"]
    assert env["code_files"] == identity["code_files"] and "code_sha256_earlier" not in metrics
    state = torch.load(run_dir(tmp_path) / "checkpoint.pt", weights_only=True)
    assert state["identity"]["code_files"] == identity["code_files"]


def test_a_resume_across_a_code_change_is_refused_naming_the_file(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=2)
    monkeypatch.setattr(runner_module, "code_identity", lambda: edited("training/loop.py"))
    capsys.readouterr()
    assert run_config(killed, tiny_cifar, CONFIG) == 1
    err = capsys.readouterr().err
    assert "the code changed since this run started (training/loop.py changed)" in err
    assert "--allow-code-change" in err and len(err.strip().splitlines()) == 1
    assert not (run_dir(killed) / "metrics.json").exists()
    history = (run_dir(killed) / "history.csv").read_text().splitlines()
    assert len(history) == 2  # epoch 1 of the old code, and nothing of the new


def test_allow_code_change_resumes_and_records_both_identities(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=2)
    old = code_identity()["code_sha256"]
    monkeypatch.setattr(runner_module, "code_identity", lambda: edited("optim/rda.py"))
    assert run_config(killed, tiny_cifar, CONFIG, "--allow-code-change") == 0
    metrics = json.loads((run_dir(killed) / "metrics.json").read_text())
    assert metrics["code_sha256"] == "f" * 64 and metrics["code_sha256_earlier"] == [old]
    # the code did not really change: the numbers are those of the uninterrupted run
    same = {k: v for k, v in comparable_metrics(killed).items() if not k.startswith("code_sha256")}
    assert same == {k: v for k, v in comparable_metrics(straight).items() if k != "code_sha256"}


def test_a_finished_run_is_still_skipped_after_a_code_change(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert run_config(tmp_path, tiny_cifar, CONFIG, "--set", "train.epochs=1") == 0
    before = (run_dir(tmp_path) / "metrics.json").read_text()
    monkeypatch.setattr(runner_module, "code_identity", lambda: edited("training/loop.py"))
    assert run_config(tmp_path, tiny_cifar, CONFIG, "--set", "train.epochs=1") == 0
    assert "[skip]" in capsys.readouterr().out
    assert (run_dir(tmp_path) / "metrics.json").read_text() == before  # it keeps the code that trained it


def test_a_checkpoint_from_before_code_identities_is_unknown_code_not_a_crash(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _, killed = straight_and_interrupted(tmp_path, tiny_cifar, CONFIG, monkeypatch, dies_in=2)
    path = run_dir(killed) / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    for key in ("code_sha256", "code_files"):
        del state["identity"][key]
    torch.save(state, path)
    capsys.readouterr()
    assert run_config(killed, tiny_cifar, CONFIG) == 1
    assert "(its code identity was not recorded)" in capsys.readouterr().err
    assert run_config(killed, tiny_cifar, CONFIG, "--allow-code-change") == 0
    metrics = json.loads((run_dir(killed) / "metrics.json").read_text())
    assert metrics["code_sha256_earlier"] == ["unrecorded"]
