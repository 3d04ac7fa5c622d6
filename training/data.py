"""CIFAR-10/100 from the official python-format batches, held whole on the device.

Layout under a data root, as torchvision writes it: ``ROOT/cifar-10-batches-py`` and
``ROOT/cifar-100-python``. A missing folder is downloaded with torchvision (imported
only then); offline, or with a corrupt file, ``DataError`` says which folder and how to
fix it. Training batches are augmented on the device (random crop with 4 pixels of zero
padding, horizontal flip), then normalised; the order and the augmentation of epoch e
depend only on (seed, e), so a resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DataError(RuntimeError):
    """The data cannot be found or read; the message says where and what to do."""


@dataclass(frozen=True)
class CifarSpec:
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    num_classes: int
    train_size: int  # of the official release, to tell a subset from the real thing
    test_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    title: str


CIFAR = {
    "cifar10": CifarSpec("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                         "labels", 10, 50000, 10000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                         "CIFAR-10"),
    "cifar100": CifarSpec("cifar-100-python", ("train",), "test", "fine_labels", 100, 50000, 10000,
                          (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR-100"),
}


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x 3 x 32 x 32
    labels: torch.Tensor  # int64, N


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; delete {path.parent} and rerun to download it again, "
                        "or point --data-root / DATA_ROOT at a complete copy") from None
    except Exception as exc:  # unpickling garbage raises many kinds of errors
        raise DataError(f"{path}: not a readable CIFAR batch ({type(exc).__name__}); delete {path.parent} "
                        "and rerun to download it again") from None
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels; the file is corrupt")
    return data, labels


def download_cifar(root: Path, dataset: str) -> None:
    """Fetch the official archive with torchvision (imported here only)."""
    try:
        import torchvision  # noqa: PLC0415 - optional, heavy, and broken beside some CPU builds
        cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[dataset]
        cls(str(root), train=True, download=True)
    except Exception as exc:
        folder = root / CIFAR[dataset].folder
        raise DataError(f"{folder}: not found and the download failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); download {CIFAR[dataset].title} "
                        "(python version) there, or point --data-root / DATA_ROOT at a copy") from None


def load_cifar(root: str | Path, dataset: str, download: bool = True) -> tuple[Split, Split]:
    """Train and test splits as uint8 CPU tensors; downloads the data if it is missing."""
    if dataset not in CIFAR:
        raise DataError(f"unknown CIFAR dataset {dataset!r}; choose one of {', '.join(CIFAR)}")
    spec = CIFAR[dataset]
    root = Path(root)
    folder = root / spec.folder
    if not folder.is_dir():
        if not download:
            raise DataError(f"{folder}: not found; point --data-root / DATA_ROOT at the folder that holds it")
        download_cifar(root, dataset)
    parts = [_read_batch(folder / name, spec.label_key) for name in spec.train_files]
    train = Split(torch.from_numpy(np.concatenate([p[0] for p in parts])),
                  torch.from_numpy(np.concatenate([p[1] for p in parts])))
    test_x, test_y = _read_batch(folder / spec.test_file, spec.label_key)
    for split, name in ((train, "train"), (Split(torch.from_numpy(test_x), torch.from_numpy(test_y)), "test")):
        if split.labels.numel() and (split.labels.min() < 0 or split.labels.max() >= spec.num_classes):
            raise DataError(f"{folder}: {name} labels outside 0..{spec.num_classes - 1}; the files are corrupt")
    return train, Split(torch.from_numpy(test_x), torch.from_numpy(test_y))


def describe(dataset: str, train_size: int, test_size: int, max_train: int | None, max_test: int | None) -> str:
    """A label that says whether the numbers come from the official data or a subset."""
    spec = CIFAR[dataset]
    if train_size == spec.train_size and test_size == spec.test_size:
        return spec.title
    return f"{spec.title} subset ({train_size} train / {test_size} test)"


def derive_seed(*values: int) -> int:
    """One seed from several integers (stable across runs and machines)."""
    out = 0x9E3779B97F4A7C15
    for v in values:
        out = (out ^ (v + 0x9E3779B97F4A7C15 + (out << 6) + (out >> 2))) & 0xFFFFFFFFFFFF
    return out


class DeviceBatches:
    """Batches of a split held whole on ``device``, augmented and normalised there.

    ``epoch(e)`` yields the batches of epoch e; with ``train`` the order is shuffled and the images
    augmented from a generator seeded by (seed, e); without, the order is fixed.
    A trailing batch of one image is dropped in training (batch norm cannot use it).
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device, train: bool, augment: bool,
                 mean: tuple[float, ...], std: tuple[float, ...], seed: int = 0,
                 channels_last: bool = False, rank: int = 0, world_size: int = 1) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.augment = augment and train
        self.seed = seed
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = len(self.labels)
        batches = -(-n // self.batch_size)
        if self.train and n % self.batch_size == 1:
            batches -= 1
        return batches

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.train:
            # Random numbers come from a CPU generator: the same batches on every device.
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(n, generator=gen)
            shifts = torch.randint(0, 9, (n, 2), generator=gen)
            flips = torch.rand(n, generator=gen) < 0.5
            order, shifts, flips = (t.to(self.device, non_blocking=True) for t in (order, shifts, flips))
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.world_size > 1:  # each rank takes its share of the global batch
                idx = idx[self.rank::self.world_size]
            x = self.images[idx]
            if self.augment:
                x = augment_batch(x, shifts[idx], flips[idx])
            yield self.normalise(x), self.labels[idx]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)


def augment_batch(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop from a zero-padded image (offsets ``shifts`` in 0..2 pad) and flip."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (shifts[:, 0:1] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (shifts[:, 1:2] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    cols = torch.where(flips.view(b, 1, 1, 1), 2 * pad + w - 1 - cols, cols)  # flip = read columns backwards
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]
