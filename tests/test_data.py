import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_cifar10
from training.data import (
    CIFAR,
    DataError,
    DeviceBatches,
    Split,
    augment_batch,
    batch_limit,
    describe,
    erase_boxes,
    fingerprint,
    load_cifar,
    validation_split,
)


def test_loads_official_layout(tiny_cifar: Path) -> None:
    train, test, _ = load_cifar(tiny_cifar, "cifar10", download=False)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (30, 3, 32, 32) and test.labels.dtype == torch.int64
    # Rows are channel-major RGB: pixel (0, 0) of the first image, red then green channel.
    with open(tiny_cifar / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert train.images[0, 0, 0, 0] == raw["data"][0][0]
    assert train.images[0, 1, 0, 0] == raw["data"][0][1024]
    assert train.labels[0] == raw["labels"][0]


def test_real_subset_loads(real_subset: Path) -> None:
    train, test, _ = load_cifar(real_subset, "cifar10", download=False)
    assert len(train.labels) in (5170, 50000) and len(test.labels) in (1017, 10000)
    assert set(train.labels.tolist()) == set(range(10))


def test_missing_folder_offline_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cifar-100-python: not found"):
        load_cifar(tmp_path, "cifar100", download=False)


def test_failed_download_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.data as data

    def offline(root: Path, dataset: str) -> None:
        raise DataError(f"{root / CIFAR[dataset].folder}: not found and the download failed (URLError)")

    monkeypatch.setattr(data, "download_cifar", offline)
    with pytest.raises(DataError, match="download failed") as info:
        load_cifar(tmp_path, "cifar10")
    assert "\n" not in str(info.value)


def test_corrupt_batch_is_reported(tiny_cifar: Path) -> None:
    (tiny_cifar / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3: not a readable CIFAR batch"):
        load_cifar(tiny_cifar, "cifar10", download=False)


def test_missing_batch_is_reported(tiny_cifar: Path) -> None:
    (tiny_cifar / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch: missing"):
        load_cifar(tiny_cifar, "cifar10", download=False)


def test_subset_is_labelled() -> None:
    assert describe("cifar10", 50000, 10000, None, None) == "CIFAR-10"
    assert describe("cifar10", 5170, 1017, None, None) == "CIFAR-10 subset (5170 train / 1017 test)"


def test_augmentation_is_a_crop_of_the_padded_image_and_a_flip() -> None:
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    shifts = torch.tensor([[0, 0], [4, 4], [8, 3]])
    flips = torch.tensor([False, True, True])
    out = augment_batch(x, shifts, flips)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    assert torch.equal(out[0], padded[0, :, 0:32, 0:32])
    assert torch.equal(out[1], x[1].flip(2))  # centre crop, flipped
    assert torch.equal(out[2], padded[2].flip(2)[:, 8:40, 3:35])


def _batches(tiny_cifar: Path, seed: int) -> DeviceBatches:
    train, _, _ = load_cifar(tiny_cifar, "cifar10", download=False)
    spec = CIFAR["cifar10"]
    return DeviceBatches(
        train, 32, torch.device("cpu"), train=True, augment=True, mean=spec.mean, std=spec.std, seed=seed
    )


def test_epochs_are_deterministic_per_seed_and_epoch(tiny_cifar: Path) -> None:
    a, b, c = _batches(tiny_cifar, 0), _batches(tiny_cifar, 0), _batches(tiny_cifar, 1)
    first = [x for x, _ in a.epoch(3)]
    assert all(torch.equal(x, y) for x, (y, _) in zip(first, b.epoch(3)))
    assert not torch.equal(first[0], next(iter(a.epoch(4)))[0])
    assert not torch.equal(first[0], next(iter(c.epoch(3)))[0])


def test_an_epoch_covers_every_image_once(tiny_cifar: Path) -> None:
    batches = _batches(tiny_cifar, 0)
    labels = torch.cat([y for _, y in batches.epoch(0)])
    assert len(labels) == 100 and len(batches) == 4
    assert torch.equal(labels.sort().values, batches.labels.sort().values)


def test_normalisation_uses_dataset_statistics(tiny_cifar: Path) -> None:
    train, _, _ = load_cifar(tiny_cifar, "cifar10", download=False)
    spec = CIFAR["cifar10"]
    batches = DeviceBatches(train, 100, torch.device("cpu"), train=False, augment=False, mean=spec.mean, std=spec.std)
    x, _ = next(iter(batches.epoch(0)))
    expected = (train.images[0, 0, 0, 0].item() / 255 - spec.mean[0]) / spec.std[0]
    assert x[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-5)


def test_single_image_remainder_is_dropped(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, per_batch=13)  # 65 images = 2 batches of 32 + 1
    train, _, _ = load_cifar(root, "cifar10", download=False)
    spec = CIFAR["cifar10"]
    batches = DeviceBatches(train, 32, torch.device("cpu"), train=True, augment=False, mean=spec.mean, std=spec.std)
    assert len(batches) == 2 and sum(len(y) for _, y in batches.epoch(0)) == 64
    assert len(train.labels) == 65


# ---------------------------------------------------------------- untrusted files


class _Payload:
    """Unpickling this runs a command (here: it would create a file)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.target}",))


def test_a_batch_that_would_run_code_is_refused(tiny_cifar: Path, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tiny_cifar / "cifar-10-batches-py" / "data_batch_2"
    with open(path, "wb") as f:
        pickle.dump({"data": _Payload(target), "labels": [0]}, f)
    with pytest.raises(DataError, match=r"data_batch_2: not a CIFAR batch \(it asks for (posix|os)\.system"):
        load_cifar(tiny_cifar, "cifar10", download=False)
    assert not target.exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"data": np.zeros((4, 3072), dtype=np.float32), "labels": [0] * 4}, "'data' must be a uint8 array"),
        ({"data": np.zeros((4, 1000), dtype=np.uint8), "labels": [0] * 4}, "'data' must be a uint8 array"),
        ({"data": np.zeros((4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 10]}, "labels outside 0..9"),
        ({"data": np.zeros((4, 3072), dtype=np.uint8), "labels": [0.5] * 4}, "labels must be a list of integers"),
    ],
)
def test_images_and_labels_are_checked(tiny_cifar: Path, entry: dict, message: str) -> None:
    with open(tiny_cifar / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump(entry, f)
    with pytest.raises(DataError, match=message):
        load_cifar(tiny_cifar, "cifar10", download=False)


def test_official_sized_files_must_have_the_official_md5(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path / "data", per_batch=20, test=10000)  # a test batch of the official size
    with pytest.raises(DataError, match="test_batch: has the official number of images but not the official md5"):
        load_cifar(root, "cifar10", download=False)


def test_other_files_are_accepted_and_their_md5_returned(tiny_cifar: Path) -> None:
    _, _, md5 = load_cifar(tiny_cifar, "cifar10", download=False)
    folder = tiny_cifar / "cifar-10-batches-py"
    assert md5 == {
        name: hashlib.md5((folder / name).read_bytes()).hexdigest()
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    }


def test_validation_split_is_class_balanced_fixed_and_disjoint(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path / "data", per_batch=40)
    train, _, _ = load_cifar(root, "cifar10", download=False)
    rest, val = validation_split(train, 30, 10)
    assert len(val.labels) == 30 and len(rest.labels) == len(train.labels) - 30
    assert torch.bincount(val.labels, minlength=10).tolist() == [3] * 10
    again_rest, again_val = validation_split(train, 30, 10)  # no seed: the same images every time
    assert torch.equal(val.images, again_val.images) and torch.equal(rest.labels, again_rest.labels)
    rows = {tuple(x.flatten().tolist()) for x in train.images}
    assert len(rows) == len(train.labels)  # (random images are distinct)
    assert not {tuple(x.flatten().tolist()) for x in val.images} & {tuple(x.flatten().tolist()) for x in rest.images}
    with pytest.raises(DataError, match="cannot be split evenly over 10 classes"):
        validation_split(train, 25, 10)


def test_the_fingerprint_tells_data_apart(tmp_path: Path) -> None:
    a, _, _ = load_cifar(write_cifar10(tmp_path / "a"), "cifar10", download=False)
    b, _, _ = load_cifar(write_cifar10(tmp_path / "b", seed=1), "cifar10", download=False)
    assert fingerprint(a) == fingerprint(a) and fingerprint(a) != fingerprint(b)
    first = Split(a.images[:50], a.labels[:50])
    assert fingerprint(first) != fingerprint(a)


# ---------------------------------------------------------------- random erasing (the xRDA release's ResNet-20)


def test_erase_boxes_follow_torchvision_random_erasing() -> None:
    n = 4000
    boxes = erase_boxes(n, 0.5, 32, 32, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    erased = h > 0
    assert abs(erased.float().mean().item() - 0.5) < 0.03  # p = 0.5 (a box of zero area is no box)
    assert ((h < 32) & (w < 32)).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 32).all() and (left + w <= 32).all()
    area = (h * w).float()[erased] / 1024
    assert area.max() <= 0.4 + 0.05 and area.mean() > 0.1  # up to 40% of the image (rounding adds a little)
    ratio = (h.float() / w.float())[erased & (w > 2) & (h > 2)]
    assert ratio.min() > 0.2 and ratio.max() < 5  # aspect within (0.3, 3.3), up to rounding
    assert torch.equal(boxes, erase_boxes(n, 0.5, 32, 32, torch.Generator().manual_seed(0)))


def test_erasing_zeroes_its_box_after_normalisation_and_changes_no_other_draw(tiny_cifar: Path) -> None:
    train, _, _ = load_cifar(tiny_cifar, "cifar10", download=False)
    spec = CIFAR["cifar10"]
    common = dict(
        batch_size=25, device=torch.device("cpu"), train=True, augment=True, mean=spec.mean, std=spec.std, seed=3
    )
    plain = list(DeviceBatches(train, **common).epoch(1))
    erased = list(DeviceBatches(train, erasing=0.5, **common).epoch(1))
    off = list(DeviceBatches(train, erasing=0.0, **common).epoch(1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(plain, off))  # p = 0: the same batches as before
    changed = 0
    for (x, y), (xe, ye) in zip(plain, erased):
        assert torch.equal(y, ye)  # same order
        differs = x != xe
        assert (xe[differs] == 0).all()  # only erased pixels differ, and they are 0 (the mean, normalised)
        changed += int(differs.flatten(1).any(1).sum())
    assert 20 <= changed <= 80  # about half of the 100 images
    assert DeviceBatches(train, **{**common, "train": False}, erasing=0.5).erasing == 0.0  # never at evaluation


@pytest.mark.parametrize("erasing", [0.0, 0.5])
def test_channels_last_batches_keep_their_layout_with_erasing(erasing: float) -> None:
    gen = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (40, 3, 8, 8), generator=gen, dtype=torch.uint8), torch.arange(40) % 10)
    batches = DeviceBatches(
        split, 16, torch.device("cpu"), True, True, (0.5,) * 3, (0.25,) * 3, channels_last=True, erasing=erasing
    )
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x, _ in batches.epoch(0))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_batch_that_links_to_an_endless_device_is_refused_unread(tiny_cifar: Path, device: str) -> None:
    path = tiny_cifar / "cifar-10-batches-py" / "data_batch_2"
    path.unlink()
    path.symlink_to(device)
    with pytest.raises(DataError, match=rf"^{path}: a character device, not a regular file: not a CIFAR batch"):
        load_cifar(tiny_cifar, "cifar10", download=False)


def test_a_batch_larger_than_its_official_size_is_refused_before_it_is_read(tiny_cifar: Path) -> None:
    path = tiny_cifar / "cifar-10-batches-py" / "test_batch"
    with open(path, "r+b") as f:
        f.truncate(batch_limit(10_000) + 1)  # sparse: no disk, and nothing of it is read
    with pytest.raises(DataError, match=rf"^{path}: {batch_limit(10_000) + 1} bytes, more than the"):
        load_cifar(tiny_cifar, "cifar10", download=False)


def test_the_official_batches_fit_their_bound() -> None:
    # data_batch_1 of the official release: 31,035,704 bytes; CIFAR-100's train: 155,000,000 or so.
    assert batch_limit(10_000) > 31_035_704 and batch_limit(50_000) > 157_000_000
