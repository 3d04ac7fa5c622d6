"""Synthetic stand-ins for the data sets, in their official layouts, for rehearsals.

A rehearsal (``--profile rehearsal``) runs every experiment at toy size to find what would crash
before GPU hours are spent. Where the data root lacks a data set, ``synthetic_root`` writes one in
the official layout into a cache folder of its own (``$SPARSE_SYNTHETIC_DATA``, else
``~/.cache/sparse-training-reproduced/synthetic-data``), never into the data root, so that it is
read by the same loaders as the real thing:

- ``cifar-10-batches-py`` / ``cifar-100-python``: the official pickles (five training batches and a
  test batch; one training and one test file), ``TRAIN_PER_FILE`` / ``TEST_IMAGES`` images;
- ``imagenet/{train,val}/<class>/*.JPEG``: an ImageFolder tree of small JPEG files,
  ``IMAGENET_CLASSES`` classes.

Images are noise around a colour of their class (a network can learn them a little), drawn from a
fixed seed: the same bytes on every machine. Every file and folder says "synthetic" in its name or
batch label, and the runs that read them record ``synthetic: true``, a label starting
"synthetic", and a data fingerprint starting "synthetic-", so they cannot be pooled with real runs.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np

from training.data import CIFAR

TRAIN_PER_FILE = {"cifar10": 100, "cifar100": 500}  # images per training file: 500 in all for both
TEST_IMAGES = 100
IMAGENET_CLASSES = 8
IMAGENET_TRAIN_PER_CLASS = 4  # 32 training images: a ResNet-50 step at 224 pixels costs ~50x a CIFAR one
IMAGENET_VAL_PER_CLASS = 2  # 16 validation images
IMAGENET_SIZE = 64  # pixels a side: the loader resizes to 224 as for any image
PREFIX = "synthetic-"  # of the data fingerprint of a run on synthetic data
# Raised whenever the generator changes what it writes: a cache of an older generator is then not
# taken for the current one (each version has its own folder).
VERSION = 2


def cache_root() -> Path:
    """Where synthetic data sets are written (a folder of their own, not a data root)."""
    configured = os.environ.get("SPARSE_SYNTHETIC_DATA")
    base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (base if configured else base / "sparse-training-reproduced" / "synthetic-data") / f"v{VERSION}"


def dataset_folder(dataset: str) -> str:
    """The folder a data set occupies under a data root."""
    return "imagenet" if dataset == "imagenet" else CIFAR[dataset].folder


def present(data_root: Path, dataset: str) -> bool:
    """Whether the data root holds the data set (its official folder, and for ImageNet both splits)."""
    folder = Path(data_root) / dataset_folder(dataset)
    if dataset == "imagenet":
        return (folder / "train").is_dir() and (folder / "val").is_dir()
    return folder.is_dir()


def _images(rng: np.random.Generator, labels: np.ndarray, num_classes: int, size: int) -> np.ndarray:
    """uint8 images (N, size, size, 3): noise around a colour of each image's class."""
    colours = np.random.default_rng(1234).integers(40, 216, (num_classes, 3))
    noise = rng.normal(0.0, 40.0, (len(labels), size, size, 3))
    return np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)


def _cifar_entry(rng: np.random.Generator, n: int, dataset: str, name: str) -> dict:
    spec = CIFAR[dataset]
    # Every class once in each run of num_classes images, in a random order: a prefix (a profile's
    # max_train) holds every class as evenly as it can, as a class-balanced batch needs.
    labels = np.concatenate([rng.permutation(spec.num_classes) for _ in range(-(-n // spec.num_classes))])[:n]
    data = _images(rng, labels, spec.num_classes, 32).transpose(0, 3, 1, 2).reshape(n, 3072)
    return {
        "batch_label": f"synthetic {name} ({n} generated images, not {spec.title})",
        spec.label_key: [int(v) for v in labels],
        "data": np.ascontiguousarray(data),
    }


def _write_cifar(folder: Path, dataset: str) -> None:
    spec = CIFAR[dataset]
    rng = np.random.default_rng(0 if dataset == "cifar10" else 1)
    for name in spec.train_files:
        entry = _cifar_entry(rng, TRAIN_PER_FILE[dataset], dataset, name)
        (folder / name).write_bytes(pickle.dumps(entry, protocol=4))
    entry = _cifar_entry(rng, TEST_IMAGES, dataset, spec.test_file)
    (folder / spec.test_file).write_bytes(pickle.dumps(entry, protocol=4))
    meta = "batches.meta" if dataset == "cifar10" else "meta"
    names = [f"synthetic_class_{c}" for c in range(spec.num_classes)]
    key = "label_names" if dataset == "cifar10" else "fine_label_names"
    (folder / meta).write_bytes(pickle.dumps({key: names}, protocol=4))


def _write_imagenet(folder: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, per_class in (("train", IMAGENET_TRAIN_PER_CLASS), ("val", IMAGENET_VAL_PER_CLASS)):
        labels = np.repeat(np.arange(IMAGENET_CLASSES), per_class)
        images = _images(rng, labels, IMAGENET_CLASSES, IMAGENET_SIZE)
        for k, (image, label) in enumerate(zip(images, labels)):
            target = folder / split / f"synthetic_class_{label}"
            target.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=90)
            (target / f"synthetic_{split}_{k:04d}.JPEG").write_bytes(buffer.getvalue())


def synthetic_root(dataset: str, cache: Path | None = None) -> Path:
    """A data root holding a synthetic ``dataset`` in its official layout (written once; several
    processes may ask at once: the folder appears whole, by an atomic rename)."""
    root = Path(cache) if cache is not None else cache_root()
    final = root / dataset_folder(dataset)
    if present(root, dataset):
        return root
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset}-", dir=root))
    try:
        if dataset == "imagenet":
            _write_imagenet(staging)
        else:
            _write_cifar(staging, dataset)
        try:
            staging.rename(final)
        except OSError:  # another process got there first: its copy is the same
            if not present(root, dataset):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
