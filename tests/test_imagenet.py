from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from training.data import DataError
from training.imagenet import LoaderBatches, imagenet_batches


def dataset() -> TensorDataset:
    return TensorDataset(torch.arange(20.0).view(20, 1), torch.arange(20))


def test_shuffle_depends_only_on_seed_and_epoch() -> None:
    a = LoaderBatches(dataset(), 4, torch.device("cpu"), train=True, seed=3, workers=0)
    b = LoaderBatches(dataset(), 4, torch.device("cpu"), train=True, seed=3, workers=0)
    order = lambda batches, e: torch.cat([y for _, y in batches.epoch(e)]).tolist()  # noqa: E731
    assert order(a, 5) == order(b, 5) and order(a, 5) != order(a, 6)
    assert sorted(order(a, 5)) == list(range(20)) and len(a) == 5


def test_ranks_read_disjoint_shards() -> None:
    shards = [
        LoaderBatches(dataset(), 2, torch.device("cpu"), train=True, seed=0, workers=0, rank=r, world_size=2)
        for r in range(2)
    ]
    seen = [set(torch.cat([y for _, y in s.epoch(1)]).tolist()) for s in shards]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(20))


def test_missing_imagenet_folder_is_named(tmp_path: Path) -> None:
    cfg = SimpleNamespace(data=SimpleNamespace(max_train=None, max_test=None, workers=0, batch_size=8))
    with pytest.raises(DataError, match="imagenet/train: not found"):
        imagenet_batches(cfg, tmp_path, torch.device("cpu"), 0)
