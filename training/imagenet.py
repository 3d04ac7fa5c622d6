"""ImageNet (ILSVRC-2012) through torchvision's ImageFolder, imported only here.

Layout under the data root: ``ROOT/imagenet/train/<wnid>/*.JPEG`` and
``ROOT/imagenet/val/<wnid>/*.JPEG`` (the validation images sorted into class folders).
Standard transforms: random-resized crop 224 + flip for training; resize 256 + centre
crop 224 for evaluation. Decoding runs in ``data.workers`` loader processes. Where torchvision
cannot be imported (a CUDA build beside a CPU-only torch), ``training.pil_images`` does the same
with PIL alone, and the run records which (``image_pipeline``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from training.data import DataError, derive_seed

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class LoaderBatches:
    """A DataLoader behind the ``epoch(e)`` interface of the training loop.

    The shuffle of epoch e depends only on (seed, e), as for CIFAR. With several
    processes each rank reads its own shard (DistributedSampler).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int,
        workers: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.device = device
        self.seed = seed
        self.generator = torch.Generator()
        if world_size > 1:
            self.sampler: Any = DistributedSampler(dataset, world_size, rank, shuffle=train, seed=seed)
        elif train:
            self.sampler = RandomSampler(dataset, generator=self.generator)
        else:
            self.sampler = SequentialSampler(dataset)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            drop_last=train,
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)
        self.generator.manual_seed(derive_seed(self.seed, epoch))
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _fingerprint(root: Path, *datasets: Any) -> str:
    """A short hash of the images' paths (relative to ``root``) and classes, in order."""
    digest = hashlib.sha256()
    for dataset in datasets:
        samples = dataset.dataset.samples if isinstance(dataset, torch.utils.data.Subset) else dataset.samples
        indices = dataset.indices if isinstance(dataset, torch.utils.data.Subset) else range(len(samples))
        for i in indices:
            path, label = samples[i]
            digest.update(f"{Path(path).relative_to(root)}\t{label}\n".encode())
    return digest.hexdigest()[:16]


def imagenet_batches(
    cfg: Any, data_root: Path, device: torch.device, seed: int, rank: int = 0, world_size: int = 1
) -> tuple[LoaderBatches, LoaderBatches, dict[str, Any]]:
    root = Path(data_root) / "imagenet"
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(
                f"{root / split}: not found; ImageNet is not downloaded automatically: put the "
                "ILSVRC-2012 train and val folders (one folder per class) there"
            )
    from training.torchvision_check import TorchvisionError, import_torchvision

    try:
        torchvision = import_torchvision()
    except TorchvisionError as exc:
        # A broken torchvision (e.g. a CUDA build beside CPU-only torch): the same transforms with PIL,
        # recorded as such, and the line saying which build to install.
        from training import pil_images as datasets, pil_images as transforms  # noqa: I001

        pipeline = f"PIL (torchvision failed to import: {exc})"
    else:
        datasets, transforms = torchvision.datasets, torchvision.transforms
        pipeline = "torchvision"
    normalize = transforms.Normalize(MEAN, STD)
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    test_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize])
    train = datasets.ImageFolder(str(root / "train"), train_tf)
    test = datasets.ImageFolder(str(root / "val"), test_tf)
    d = cfg.data
    if d.max_train is not None:
        train = torch.utils.data.Subset(train, range(min(d.max_train, len(train))))
    if d.max_test is not None:
        test = torch.utils.data.Subset(test, range(min(d.max_test, len(test))))
    common = dict(device=device, workers=d.workers, rank=rank, world_size=world_size, seed=seed)
    info = {
        "dataset": "imagenet",
        "num_classes": 1000,
        "input_shape": [3, 224, 224],
        "data_label": "ImageNet (ILSVRC-2012)",
        "train_size": len(train),
        "validation_size": 0,
        "test_size": len(test),
        "data_fingerprint": _fingerprint(root, train, test),
        "image_pipeline": pipeline,
    }
    return (
        LoaderBatches(train, d.batch_size // world_size, train=True, **common),
        LoaderBatches(test, 250, train=False, **common),
        info,
    )
