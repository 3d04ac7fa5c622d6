"""The few torchvision pieces the ImageNet loader uses, with PIL alone.

Used only where torchvision cannot be imported (its CUDA build beside a CPU-only torch fails on
``import torchvision``). Each piece follows torchvision's definition for PIL images: an ImageFolder
(classes are the sorted sub-folders, samples sorted by path), RandomResizedCrop (scale (0.08, 1),
ratio (3/4, 4/3), ten tries, then a centre crop of the clamped ratio), bilinear resizing (PIL's,
antialiased, as torchvision's on PIL images), centre crop, flip, ToTensor and Normalize. Random
numbers come from torch's generator, as torchvision's do, so the loader's seeding applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``: (transformed image, class index); ``samples`` as torchvision's."""

    def __init__(self, root: str, transform: Callable[[Image.Image], Any] | None = None) -> None:
        folder = Path(root)
        self.classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"{folder}: no class folders")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [
            (str(path), self.class_to_idx[c])
            for c in self.classes
            for path in sorted((folder / c).rglob("*"))
            if path.suffix.lower() in EXTENSIONS
        ]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        with open(path, "rb") as handle:
            image = Image.open(handle).convert("RGB")
        return (self.transform(image) if self.transform is not None else image), label


class Compose:
    def __init__(self, steps: list[Callable[[Any], Any]]) -> None:
        self.steps = steps

    def __call__(self, x: Any) -> Any:
        for step in self.steps:
            x = step(x)
        return x


class RandomResizedCrop:
    def __init__(
        self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ) -> None:
        self.size, self.scale, self.ratio = size, scale, ratio

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop, drawn as torchvision draws it."""
        area = width * height
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(*self.scale).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item()).item())
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,)).item())
                left = int(torch.randint(0, width - w + 1, size=(1,)).item())
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, round(width / min(self.ratio))
        elif in_ratio > max(self.ratio):
            h, w = height, round(height * max(self.ratio))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Image.Image) -> Image.Image:
        top, left, h, w = self.box(*image.size)
        return image.crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BILINEAR)


class RandomHorizontalFlip:
    def __call__(self, image: Image.Image) -> Image.Image:
        return image.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1).item() < 0.5 else image


class Resize:
    """The shorter side to ``size``, the aspect ratio kept (the longer side truncated, as torchvision)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        other = int(self.size * long / short)
        size = (self.size, other) if width <= height else (other, self.size)
        return image.resize(size, Image.BILINEAR)


class CenterCrop:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        top = int(round((height - self.size) / 2.0))
        left = int(round((width - self.size) / 2.0))
        return image.crop((left, top, left + self.size, top + self.size))


class ToTensor:
    def __call__(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.uint8).copy()
        return torch.from_numpy(array).permute(2, 0, 1).float().div(255)


class Normalize:
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
