import json
import os
import stat
from pathlib import Path

import pytest
import torch

from training import records
from training.records import atomic_torch_save, atomic_write_json, history_csv


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"a": 1})

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unserialisable_result_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(3.0)}, "history": [{"epoch": 1, "stage": "train"}], "step": 5}
    atomic_torch_save(tmp_path / "c.pt", state)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["history"] == state["history"]


def test_history_csv_has_the_documented_columns() -> None:
    text = history_csv(
        [
            {
                "epoch": 1,
                "stage": "train",
                "stage_epoch": 1,
                "lr": 0.1,
                "train_loss": 2.0,
                "train_acc": 0.25,
                "test_loss": 2.1,
                "test_acc": 0.2,
                "sparsity": 0.0,
                "seconds": 1.5,
            }
        ]
    )
    assert text.splitlines() == [
        "epoch,stage,stage_epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,sparsity,seconds",
        "1,train,1,0.1,2,0.25,,,2.1,0.2,0,1.5",
    ]  # no validation split: empty


def test_results_files_are_readable_by_others_and_temporary_files_are_removed(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644  # not mkstemp's private 0600
    (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"x")
    assert records.remove_temporary_files(tmp_path) == [tmp_path / ".checkpoint.pt.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
stepping\t: 0
flags\t\t: sse2 avx2 fma avx512f

processor\t: 1
model name\t: a second core, not read
"""


def test_the_environment_records_the_cpu_model_and_its_instruction_set(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert records.cpu_info(tmp_path / "cpuinfo") == {
        "vendor": "AuthenticAMD",
        "family": "25",
        "model": "1",
        "model_name": "AMD EPYC 7B13",
        "stepping": "0",
        "flags": ["avx2", "avx512f", "fma", "sse2"],
    }
    assert records.cpu_info(tmp_path / "none")["flags"] == []  # no cpuinfo: the name platform gives, no flags
    env = records.environment(torch.device("cpu"))
    assert env["cpu"] == records.cpu_info() and set(env["cpu"]) >= {"model_name", "flags"}
    json.dumps(env, allow_nan=False)  # env.json stays strict JSON
