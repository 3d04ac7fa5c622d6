"""ResNet-18 with the CIFAR stem and ResNet-50 for ImageNet (He et al. 2016).

The CIFAR stem is one 3x3 stride-1 convolution and no max-pool (11.2M parameters);
the ImageNet stem is the usual 7x7 stride-2 convolution and a 3x3 max-pool
(ResNet-50: 25.6M). Projection shortcuts (1x1 convolution + BN) where shapes change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.topology import ChannelSite

# (in_channels, out_channels, stride) -> the module that carries the residual stream past a block
ShortcutFactory = Callable[[int, int, int], nn.Module]


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option-B shortcut: identity where the shape stays, else a strided 1x1 convolution + BN."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


def _shortcut_convs(block: nn.Module) -> tuple[str, ...]:
    """The convolutions of a block's shortcut (a projection), by name relative to the block."""
    return tuple(f"shortcut.{n}" for n, m in block.shortcut.named_modules() if isinstance(m, nn.Conv2d))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut built by ``shortcut`` (after the convolutions, so the
    order of the initial random draws does not depend on it)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, shortcut: ShortcutFactory = projection) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = shortcut(in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

    def channel_sites(self) -> list[ChannelSite]:
        """The inner channels; bn2 writes into the residual stream and keeps its width."""
        return [ChannelSite("bn1", "conv1", ("conv2",))]

    def stream_readers(self) -> tuple[str, ...]:
        """The layers reading the block's input (the residual stream) directly."""
        return ("conv1", *_shortcut_convs(self))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))

    def channel_sites(self) -> list[ChannelSite]:
        return [ChannelSite("bn1", "conv1", ("conv2",)), ChannelSite("bn2", "conv2", ("conv3",))]

    def stream_readers(self) -> tuple[str, ...]:
        return ("conv1", *_shortcut_convs(self))


class ResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock] | type[Bottleneck], blocks: tuple[int, ...], num_classes: int, cifar_stem: bool
    ) -> None:
        super().__init__()
        if cifar_stem:
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            )
        layers = []
        in_channels = 64
        for i, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
            for b in range(count):
                stride = 2 if i > 0 and b == 0 else 1
                layers.append(block(in_channels, width, stride))
                in_channels = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def channel_sites(self) -> list[ChannelSite]:
        """The stem's channels: gated, but not removable, since they start the residual stream
        (its closed channels become exact zeros instead)."""
        readers = tuple(f"layers.0.{name}" for name in self.layers[0].stream_readers())
        return [ChannelSite("stem.1", "stem.0", readers, removable=False)]


def resnet18_cifar(num_classes: int = 10) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, cifar_stem=True)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, cifar_stem=False)
