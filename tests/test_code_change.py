import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from experiments.code_change import add_record, compare_checkpoints, differences, main
from tests.conftest import ROOT
from tests.helpers import CONFIG, run_config, run_dir

PACKAGES = ("models", "optim", "pruning", "training", "experiments", "reporting")


def checkpoint(**history_row: float) -> dict:
    row = {"epoch": 1, "train_loss": 2.25, "seconds": 3.0} | history_row
    return {
        "model": {"w": torch.tensor([1.0, -2.0]), "n": torch.tensor(7)},
        "method": {},
        "optimizers": [{"state": {}, "param_groups": [{"lr": 0.1, "fused": None}]}],
        "schedulers": [],
        "history": [row],
    }


def test_equal_tensors_and_nan_with_nan_are_equal() -> None:
    a = {"x": torch.tensor([float("nan"), 1.0]), "y": [torch.tensor(3.0), 2.5], "z": float("nan")}
    b = {"x": torch.tensor([float("nan"), 1.0]), "y": [torch.tensor(3.0), 2.5], "z": float("nan")}
    assert list(differences(a, b)) == []


def test_one_bit_apart_is_a_difference_and_so_is_the_sign_of_zero() -> None:
    x = torch.tensor([1.0, 2.0])
    y = x.clone()
    y[1] = torch.nextafter(y[1], torch.tensor(3.0))
    assert list(differences({"w": x}, {"w": y})) == ["w: differs (largest gap 2.38e-07)"]
    assert list(differences(torch.tensor(0.0), torch.tensor(-0.0), "b")) == ["b: differs (largest gap 0)"]


def test_shapes_keys_and_lengths_are_named() -> None:
    found = list(differences({"a": torch.zeros(2), "b": 1}, {"a": torch.zeros(3), "c": 1}))
    assert found == [
        "a: torch.float32(2,) against torch.float32(3,)",
        "b: only in the first",
        "c: only in the second",
    ]
    assert list(differences([1, 2], [1], "h")) == ["h: 2 entries against 1"]


def test_checkpoints_ignore_seconds_and_set_kernel_choices_apart() -> None:
    a, b = checkpoint(), checkpoint(seconds=9.0)
    b["optimizers"][0]["param_groups"][0]["fused"] = True
    numbers, kernel = compare_checkpoints(a, b)
    assert numbers == [] and kernel == ["optimizers[0].param_groups[0].fused: None against True"]
    c = checkpoint(train_loss=math.nextafter(2.25, 3))
    c["model"]["n"] = torch.tensor(8)
    numbers, _ = compare_checkpoints(a, c)
    assert numbers == ["model.n: differs", "history epoch 1 train_loss: 2.25 against 2.2500000000000004"]


@pytest.fixture
def recorded(tmp_path: Path, tiny_cifar: Path) -> Path:
    """A finished 2-epoch run: the comparisons below train it to its end, so that no stop has to land
    between two epochs of a few hundred milliseconds."""
    assert run_config(tmp_path, tiny_cifar, CONFIG, "--set", "train.epochs=2") == 0
    return run_dir(tmp_path)


def test_the_same_code_at_a_revision_and_in_the_checkout_is_equal(
    recorded: Path, tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    record = tmp_path / "code_changes.json"
    args = [str(recorded), "--revision", "HEAD", "--data-root", str(tiny_cifar), "--record", str(record)]
    assert main(args) == 0
    assert "EQUAL bit for bit after epoch 2" in capsys.readouterr().out
    (entry,) = json.loads(record.read_text())["comparisons"]
    assert entry["equal"] is True and entry["epochs"] == 2 and entry["differences"] == []
    assert len(entry["revision"]) == 40 and entry["environment"]["cpu"]["model_name"]
    assert entry["final"]["then"] == entry["final"]["now"] and 0 <= entry["final"]["now"]["test_acc"] <= 1
    assert entry["command"] == "python -m experiments.code_change " + " ".join(args)


def test_a_record_keeps_one_entry_per_run_revision_and_epochs(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    add_record(path, {"run": "a", "revision": "1", "epochs": 2, "equal": True})
    add_record(path, {"run": "a", "revision": "1", "epochs": 3, "equal": True})
    add_record(path, {"run": "a", "revision": "1", "epochs": 2, "equal": False})
    assert [(r["epochs"], r["equal"]) for r in json.loads(path.read_text())["comparisons"]] == [(3, True), (2, False)]


def test_a_change_that_moves_a_number_is_found(
    recorded: Path, tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The checkout's code is a copy in which every model starts with its first weight tensor scaled."""
    code = tmp_path / "changed"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(code / "models" / "__init__.py", "a") as f:
        f.write(
            "\n_unchanged = build_model\n\n\ndef build_model(name, num_classes):\n"
            "    model = _unchanged(name, num_classes)\n"
            "    next(model.parameters()).data.mul_(1.5)\n"
            "    return model\n"
        )
    assert main([str(recorded), "--revision", "HEAD", "--data-root", str(tiny_cifar)], code=code) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT after epoch 2" in out and "model." in out


def test_a_dirty_or_unknown_revision_is_refused(recorded: Path, capsys: pytest.CaptureFixture) -> None:
    env = json.loads((recorded / "env.json").read_text())
    (recorded / "env.json").write_text(json.dumps(env | {"git_revision": "0" * 40 + "-dirty"}))
    assert main([str(recorded)]) == 2
    assert "code that git does not hold; name --revision" in capsys.readouterr().err
    assert main([str(recorded), "--revision", "no-such-revision"]) == 2
    assert "error: --revision no-such-revision:" in capsys.readouterr().err
