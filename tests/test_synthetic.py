"""Synthetic stand-in data sets (training/synthetic.py) and how the runs that read them are labelled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import training.data as data_module
from experiments.run import main
from tests.conftest import write_cifar10
from training import synthetic
from training.data import DataError, load_cifar
from training.imagenet import imagenet_batches

TINY = """\
model: resnet20
data: {dataset: DATASET, batch_size: 32}
train: {epochs: 1}
optimizer: {name: sgd, lr: 0.05}
profiles: {rehearsal: {max_train: 64, max_test: 32}}
"""


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_is_written_in_the_official_layout_and_the_same_bytes_every_time(tmp_path: Path, dataset: str) -> None:
    root = synthetic.synthetic_root(dataset, tmp_path / "a")
    train, test, md5 = load_cifar(root, dataset, download=False)  # the real loader reads it
    classes = 10 if dataset == "cifar10" else 100
    assert len(train.labels) == 500 and len(test.labels) == synthetic.TEST_IMAGES
    assert set(train.labels.tolist()) == set(range(classes))
    # every class once in the first `classes` images: a profile's first images hold every class
    assert sorted(train.labels.tolist()[:classes]) == list(range(classes))
    again = synthetic.synthetic_root(dataset, tmp_path / "b")
    folder = synthetic.dataset_folder(dataset)
    digest = lambda root: {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (root / folder).iterdir()}  # noqa: E731
    assert digest(root) == digest(again) and md5.items() <= digest(root).items()
    assert [p.name for p in (tmp_path / "a").iterdir()] == [folder]  # no staging folder left behind


def test_imagenet_is_an_image_folder_tree_read_by_the_loader(tmp_path: Path) -> None:
    root = synthetic.synthetic_root("imagenet", tmp_path)
    files = sorted((root / "imagenet" / "train").rglob("*.JPEG"))
    assert len(files) == synthetic.IMAGENET_CLASSES * synthetic.IMAGENET_TRAIN_PER_CLASS
    assert all("synthetic" in f.parent.name for f in files)
    cfg = type("C", (), {"data": type("D", (), {"max_train": None, "max_test": 16, "workers": 0, "batch_size": 8})})
    train, test, info = imagenet_batches(cfg, root, torch.device("cpu"), seed=0)
    x, y = next(iter(train.epoch(1)))
    assert x.shape == (8, 3, 224, 224) and y.max() < synthetic.IMAGENET_CLASSES
    assert len(train) == 32 // 8 and info["test_size"] == 16


def rehearse(tmp_path: Path, data_root: Path, dataset: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("SPARSE_SYNTHETIC_DATA", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("DATASET", dataset))
    out = tmp_path / "results"
    args = [str(path), "--profile", "rehearsal", "--data-root", str(data_root), "--results", str(out), "--no-progress"]
    assert main(args) == 0
    run = out / "tiny" / "seed0"
    return {name: json.loads((run / name).read_text()) for name in ("metrics.json", "env.json")}


def test_a_rehearsal_without_the_data_set_runs_on_synthetic_data_labelled_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_root = tmp_path / "data"
    data_root.mkdir()
    records = rehearse(tmp_path, data_root, "cifar100", monkeypatch)
    metrics, env = records["metrics.json"], records["env.json"]
    assert metrics["synthetic"] is True and env["synthetic_data"] is True
    assert metrics["data_label"].startswith("synthetic CIFAR-100") and "not the real data" in metrics["data_label"]
    assert metrics["data_fingerprint"].startswith(synthetic.PREFIX)
    assert metrics["train_size"] == 64 and metrics["test_size"] == 32
    assert not any(data_root.iterdir())  # nothing was written into the data root
    assert (synthetic.cache_root() / "cifar-100-python").is_dir()


def test_a_rehearsal_reads_a_data_set_the_data_root_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_root = write_cifar10(tmp_path / "data", per_batch=20)
    metrics, env = (rehearse(tmp_path, data_root, "cifar10", monkeypatch)[k] for k in ("metrics.json", "env.json"))
    assert "synthetic" not in metrics and env["synthetic_data"] is False
    assert not metrics["data_fingerprint"].startswith(synthetic.PREFIX) and not (tmp_path / "cache").exists()


def test_other_profiles_never_make_data_up(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(root: Path, dataset: str) -> None:
        raise DataError(f"{root}: no {dataset} here, and offline")

    monkeypatch.setattr(data_module, "download_cifar", offline)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("DATASET", "cifar100"))
    (tmp_path / "data").mkdir()
    code = main([str(path), "--profile", "smoke", "--data-root", str(tmp_path / "data"), "--results", str(tmp_path)])
    assert code == 3 and "no cifar100 here" in capsys.readouterr().err and not any((tmp_path / "data").iterdir())


def test_a_rehearsal_of_grasp_on_cifar100_scores_on_one_image_of_every_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GraSP's class-balanced batch (10 images a class) cannot come from a rehearsal's 128 images of
    100 classes: the rehearsal lowers it to what the method accepts (``rehearsal_options``), and the
    synthetic data holds every class in its first 100 images."""
    monkeypatch.setenv("SPARSE_SYNTHETIC_DATA", str(tmp_path / "cache"))
    path = tmp_path / "grasp.yaml"
    path.write_text(
        "model: resnet20\ndata: {dataset: cifar100, batch_size: 32}\ntrain: {epochs: 1}\n"
        "optimizer: {name: sgd, lr: 0.05}\nmethod: {name: grasp, sparsity: 0.5}\n"
    )
    (tmp_path / "data").mkdir()
    out = tmp_path / "results"
    args = [str(path), "--profile", "rehearsal", "--data-root", str(tmp_path / "data"), "--results", str(out)]
    assert main([*args, "--no-progress"]) == 0
    config_text = (out / "grasp" / "seed0" / "config.yaml").read_text()
    assert "samples_per_class: 1" in config_text
