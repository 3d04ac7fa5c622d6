import sys
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


def test_without_torchvision_the_images_are_read_with_pil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``import torchvision`` fails, the loader reads the same ImageFolder tree with PIL and
    the standard transforms, and says so in its record."""
    from training.synthetic import synthetic_root

    root = synthetic_root("imagenet", tmp_path)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now raises ImportError
    cfg = SimpleNamespace(data=SimpleNamespace(max_train=None, max_test=None, workers=0, batch_size=16))
    train, test, info = imagenet_batches(cfg, root, torch.device("cpu"), seed=1)
    assert info["image_pipeline"].startswith("PIL (torchvision failed to import")
    x, y = next(iter(train.epoch(1)))
    assert x.shape == (16, 3, 224, 224) and x.dtype == torch.float32 and len(set(y.tolist())) > 1
    assert -3 < float(x.mean()) < 3  # normalised
    assert len(test) == 1 and next(iter(test.epoch(0)))[0].shape[1:] == (3, 224, 224)


def test_pil_transforms_follow_torchvision_geometry() -> None:
    from PIL import Image

    from training import pil_images

    image = Image.new("RGB", (300, 200))
    assert pil_images.Resize(256)(image).size == (384, 256)  # the shorter side to 256, the ratio kept
    assert pil_images.CenterCrop(224)(pil_images.Resize(256)(image)).size == (224, 224)
    crop = pil_images.RandomResizedCrop(224)
    torch.manual_seed(0)
    for _ in range(50):
        top, left, h, w = crop.box(300, 200)
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 300
        assert 0.08 * 300 * 200 * 0.9 <= h * w and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    assert crop(image).size == (224, 224)
    pixels = torch.arange(12, dtype=torch.uint8).view(2, 2, 3).numpy()
    tensor = pil_images.ToTensor()(Image.fromarray(pixels))
    assert tensor.shape == (3, 2, 2) and float(tensor[2, 1, 1]) == pytest.approx(11 / 255)
