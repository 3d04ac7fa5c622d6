"""The CIFAR-10 subset is rebuilt from the official data, row for row, byte for byte."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
import torch

from experiments import make_subset
from tests.conftest import write_cifar10
from training.data import DataError, load_cifar
from training.subset import MD5, ROWS, build, subset_files

SMALL = {"data_batch_1": 7, "data_batch_2": 5, "data_batch_3": 5, "data_batch_4": 5, "data_batch_5": 5, "test_batch": 6}


def test_the_subset_holds_the_first_rows_in_order(tmp_path: Path) -> None:
    official = write_cifar10(tmp_path / "official", per_batch=20, test=20)
    files = subset_files(official, SMALL)
    sums = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    assert build(official, tmp_path / "out", SMALL, sums) == sums
    full_train, full_test, _ = load_cifar(official, "cifar10", download=False)
    train, test, md5 = load_cifar(tmp_path / "out", "cifar10", download=False)
    first = torch.cat([torch.arange(20 * k, 20 * k + SMALL[f"data_batch_{k + 1}"]) for k in range(5)])
    assert torch.equal(train.images, full_train.images[first]) and torch.equal(train.labels, full_train.labels[first])
    assert torch.equal(test.images, full_test.images[:6]) and md5 == {k: v for k, v in sums.items() if k in SMALL}


def test_nothing_is_written_unless_every_md5_matches(tmp_path: Path) -> None:
    official = write_cifar10(tmp_path / "official", per_batch=20, test=20)
    with pytest.raises(DataError, match="batches.meta: md5 .*, expected d511c352"):
        build(official, tmp_path / "out", SMALL)  # the committed sums: these are not the official rows
    assert not (tmp_path / "out").exists()
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(official / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert make_subset.main([str(archive), str(tmp_path / "out")]) == 1  # not the official archive


def test_the_committed_sums_cover_every_file() -> None:
    assert set(MD5) == {*ROWS, "batches.meta"}
    assert sum(v for k, v in ROWS.items() if k != "test_batch") == 5170 and ROWS["test_batch"] == 1017


def test_rebuilding_the_real_subset_gives_the_committed_sums(real_subset: Path, tmp_path: Path) -> None:
    """The subset's rows are the official first rows, so rebuilding from them checks the format byte for byte."""
    assert build(real_subset, tmp_path / "out") == MD5
