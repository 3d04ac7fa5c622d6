"""Shared fixtures: a tiny CIFAR-10 in the official python format, written per test."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_cifar10(root: Path, per_batch: int = 20, test: int = 30, seed: int = 0) -> Path:
    """Write ROOT/cifar-10-batches-py with random images; returns ROOT."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        entry = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
            "batch_label": name,
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=4)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> None:
    """Tests use tiny tensors: thread start-up and contention would dominate their run time."""
    torch.set_num_threads(1)


@pytest.fixture
def tiny_cifar(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path / "data")


@pytest.fixture
def real_subset() -> Path:
    """The real CIFAR-10 files when DATA_ROOT points at them; skipped otherwise."""
    root = os.environ.get("DATA_ROOT")
    if not root or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip("DATA_ROOT does not hold cifar-10-batches-py")
    return Path(root)
