"""CIFAR-10/100 from the official python-format batches, held whole on the device.

Layout under a data root, as torchvision writes it: ``ROOT/cifar-10-batches-py`` and
``ROOT/cifar-100-python``. A missing folder is downloaded with torchvision (imported
only then); offline, or with a corrupt file, ``DataError`` says which folder and how to
fix it. Training batches are augmented on the device (random crop with 4 pixels of zero
padding, horizontal flip), then normalised; the order and the augmentation of epoch e
depend only on (seed, e), so a resumed run sees exactly the batches it would have seen.

The batch files are pickles, which can run code when unpickled: they are read with an
unpickler that admits only numpy arrays, dtypes and plain containers (the official format),
their images must be uint8 rows of 3 x 32 x 32 and their labels integers in range. A file of
the official size must have the official md5 sum (torchvision's list); other files (a subset,
a copy) are accepted, and every file's md5 is returned to be recorded with the run. A file is read
only if it is a regular file no larger than an official batch can be (``batch_limit``): a link to a
device or a huge file is refused before it is read.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.files import FileRefused, read_bounded


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
    md5: dict[str, str]  # of the official files (as torchvision checks them)


CIFAR = {
    "cifar10": CifarSpec(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "labels",
        10,
        50000,
        10000,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        "CIFAR-10",
        {
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
        },
    ),
    "cifar100": CifarSpec(
        "cifar-100-python",
        ("train",),
        "test",
        "fine_labels",
        100,
        50000,
        10000,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "CIFAR-100",
        {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
    ),
}


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x 3 x 32 x 32
    labels: torch.Tensor  # int64, N


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a class or function outside the CIFAR format."""


class _BatchUnpickler(pickle.Unpickler):
    """Admits the classes of the official CIFAR pickles (numpy arrays and dtypes) and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise RefusedGlobal(f"it asks for {module}.{name}, which is not part of the CIFAR format and was refused")
        return super().find_class(module, name)


def batch_limit(rows: int) -> int:
    """The most bytes a pickled batch of ``rows`` images can take: 3072 bytes an image, and a generous
    allowance for its label, file name and the pickle's framing (the official files use about 32)."""
    return rows * (3072 + 128) + (1 << 16)


def _read_batch(path: Path, spec: CifarSpec, official_rows: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Images (N x 3 x 32 x 32 uint8), labels (int64) and the file's md5, all checked."""
    try:
        raw = read_bounded(path, batch_limit(official_rows))
    except FileNotFoundError:
        raise DataError(
            f"{path}: missing; delete {path.parent} and rerun to download it again, "
            "or point --data-root / DATA_ROOT at a complete copy"
        ) from None
    except FileRefused as exc:
        raise DataError(f"{exc}: not a CIFAR batch of at most {official_rows} images; replace it") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    md5 = hashlib.md5(raw).hexdigest()
    try:
        entry = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
        data, labels = entry["data"], entry[spec.label_key]
    except RefusedGlobal as exc:
        raise DataError(f"{path}: not a CIFAR batch ({exc}); replace it with the official file") from None
    except Exception as exc:  # unpickling garbage raises many kinds of errors
        raise DataError(
            f"{path}: not a readable CIFAR batch ({type(exc).__name__}); delete {path.parent} "
            "and rerun to download it again"
        ) from None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise DataError(
            f"{path}: 'data' must be a uint8 array of rows of 3072 values, got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be a list of integers")
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels; the file is corrupt")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{path}: labels outside 0..{spec.num_classes - 1}; the file is corrupt")
    if len(data) == official_rows and md5 != spec.md5[path.name]:
        raise DataError(
            f"{path}: has the official number of images but not the official md5 sum "
            f"({md5}, expected {spec.md5[path.name]}): the file is damaged; delete {path.parent} and "
            "rerun to download it again"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64), md5


def download_cifar(root: Path, dataset: str) -> None:
    """Fetch the official archive with torchvision (imported here only)."""
    from training.torchvision_check import TorchvisionError, import_torchvision

    folder = root / CIFAR[dataset].folder
    try:  # optional, heavy, and broken beside some CPU builds: imported here only
        torchvision = import_torchvision()
    except TorchvisionError as exc:
        raise DataError(f"{folder}: not found, and it cannot be downloaded: {exc}") from None
    try:
        cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[dataset]
        cls(str(root), train=True, download=True)
    except Exception as exc:
        raise DataError(
            f"{folder}: not found and the download failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); download {CIFAR[dataset].title} "
            "(python version) there, or point --data-root / DATA_ROOT at a copy"
        ) from None


_LOADED: dict[tuple[Any, ...], tuple[Split, Split, dict[str, str]]] = {}


def load_cifar(root: str | Path, dataset: str, download: bool = True) -> tuple[Split, Split, dict[str, str]]:
    """Train and test splits as uint8 CPU tensors, and the md5 of every file read; downloads the data
    if it is missing. Loaded once per process and set of files (unchanged size and time stamp)."""
    if dataset not in CIFAR:
        raise DataError(f"unknown CIFAR dataset {dataset!r}; choose one of {', '.join(CIFAR)}")
    spec = CIFAR[dataset]
    root = Path(root)
    folder = root / spec.folder
    if not folder.is_dir():
        if not download:
            raise DataError(f"{folder}: not found; point --data-root / DATA_ROOT at the folder that holds it")
        download_cifar(root, dataset)
    files = [(folder / name, spec.train_size // len(spec.train_files)) for name in spec.train_files]
    files.append((folder / spec.test_file, spec.test_size))
    key = (
        dataset,
        *((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else str(p) for p, _ in files),
    )
    if key not in _LOADED:
        parts = [_read_batch(path, spec, rows) for path, rows in files]
        train = Split(
            torch.from_numpy(np.concatenate([p[0] for p in parts[:-1]])),
            torch.from_numpy(np.concatenate([p[1] for p in parts[:-1]])),
        )
        test = Split(torch.from_numpy(parts[-1][0]), torch.from_numpy(parts[-1][1]))
        _LOADED.clear()  # keep one data set in memory
        _LOADED[key] = train, test, {path.name: part[2] for (path, _), part in zip(files, parts)}
    return _LOADED[key]


def validation_split(train: Split, images: int, num_classes: int) -> tuple[Split, Split]:
    """(training, validation): ``images`` training images held out, the same number of every class,
    chosen by a fixed permutation (the same images for every seed and every run)."""
    if images % num_classes:
        raise DataError(f"data.validation: {images} images cannot be split evenly over {num_classes} classes")
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(0))
    held = torch.zeros(len(train.labels), dtype=torch.bool)
    for c in range(num_classes):
        of_class = order[train.labels[order] == c]
        if len(of_class) <= images // num_classes:
            raise DataError(f"data.validation: {images} images leave no training image of class {c}")
        held[of_class[: images // num_classes]] = True
    return Split(train.images[~held], train.labels[~held]), Split(train.images[held], train.labels[held])


def fingerprint(*splits: Split) -> str:
    """A short hash of the images and labels of ``splits``, in order: what a run was trained on."""
    digest = hashlib.sha256()
    for split in splits:
        digest.update(split.images.contiguous().numpy().tobytes())
        digest.update(split.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


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
    ``erasing`` > 0 adds random erasing after normalisation (``erase_boxes``), as the xRDA release's
    ResNet-20 script does; its random numbers are drawn after the others, so that switching it on
    changes no other draw.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        train: bool,
        augment: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        erasing: float = 0.0,
    ) -> None:
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
        self.erasing = erasing if self.augment else 0.0

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
            if self.erasing:
                boxes = erase_boxes(n, self.erasing, self.images.shape[2], self.images.shape[3], gen).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world_size > 1:  # each rank takes its share of the global batch
                idx = idx[self.rank :: self.world_size]
            x = self.images[idx]
            if self.augment:
                x = augment_batch(x, shifts[idx], flips[idx])
            x = (x.float() - self.mean) / self.std
            if self.erasing:
                x = erase(x, boxes[idx])
            # last: erasing's masked_fill returns the default layout whatever it is given
            yield x.contiguous(memory_format=self.memory_format), self.labels[idx]


def erase_boxes(
    n: int,
    p: float,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.0, 0.4),
    ratio: tuple[float, float] = (0.3, 3.3),
    attempts: int = 10,
) -> torch.Tensor:
    """Random-erasing rectangles (top, left, height, width) for ``n`` images, as torchvision's
    ``RandomErasing(p, scale, ratio)`` draws them: with probability ``p`` an image gets the first
    of ``attempts`` candidates (area a fraction in ``scale`` of the image, log aspect ratio uniform in
    ``ratio``) that fits inside it, and no box (height 0) if none fits or it is not erased."""
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator))
    log_ratio = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    h = torch.sqrt(area * torch.exp(log_ratio)).round().long()
    w = torch.sqrt(area / torch.exp(log_ratio)).round().long()
    top = (torch.rand(n, attempts, generator=generator) * (height - h + 1)).floor().long()
    left = (torch.rand(n, attempts, generator=generator) * (width - w + 1)).floor().long()
    erased = torch.rand(n, generator=generator) < p
    fits = (h < height) & (w < width)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(n, dtype=torch.long))
    pick = lambda t: t.gather(1, first[:, None])[:, 0]  # noqa: E731
    keep = erased & fits.any(1)
    return torch.stack([pick(top), pick(left), pick(h) * keep, pick(w) * keep], 1)


def erase(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) with each image's box (top, left, height, width) set to 0."""
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, 1, -1)
    top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return x.masked_fill(inside[:, None], 0.0)


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
