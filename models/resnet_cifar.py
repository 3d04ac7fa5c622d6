"""ResNet-20/32/56/110 for CIFAR (He et al. 2016, section 4.2).

Three stages of 16/32/64 channels, ``n`` basic blocks each (depth = 6n + 2), and
option-A shortcuts: where the shape changes, the identity is subsampled and padded
with zero channels, so shortcuts add no parameters (ResNet-20 has 0.27M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.resnet import BasicBlock
from models.topology import ChannelSite


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero channels on both sides."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


def pad_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option A: identity where the shape stays, else subsampling and zero channels."""
    if stride != 1 or in_channels != out_channels:
        return PadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers = []
        in_channels = widths[0]
        for i, width in enumerate(widths):
            for b in range(blocks):
                stride = 2 if i > 0 and b == 0 else 1
                layers.append(BasicBlock(in_channels, width, stride, shortcut=pad_shortcut))
                in_channels = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)
        for m in self.modules():  # He et al. initialisation of the convolutions; PyTorch's default for fc
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

    def channel_sites(self) -> list[ChannelSite]:
        """The stem's channels: gated, but not removable (they start the residual stream)."""
        readers = tuple(f"layers.0.{name}" for name in self.layers[0].stream_readers())
        return [ChannelSite("bn1", "conv1", readers, removable=False)]
