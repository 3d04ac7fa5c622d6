"""DenseNet-40 (k = 12) for CIFAR (Huang et al. 2017), as used by Liu et al.

Three dense blocks of 12 pre-activation layers (BN-ReLU-3x3 conv adding k channels),
no bottleneck and no compression; transitions are BN-ReLU-1x1 conv-2x2 average pool.
About 1.06M parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.topology import ChannelSite

# Every BN of a DenseNet reads the concatenation of all earlier outputs, which later layers read
# too: the concatenation keeps its width, and a shrunk BN selects its channels from it.
_PRE_ACTIVATION = [ChannelSite("bn", None, ("conv",), gated=False)]


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)

    def channel_sites(self) -> list[ChannelSite]:
        return _PRE_ACTIVATION


class Transition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)

    def channel_sites(self) -> list[ChannelSite]:
        return _PRE_ACTIVATION


class DenseNet(nn.Module):
    def __init__(self, depth: int = 40, growth: int = 12, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 3:
            raise ValueError(f"DenseNet depth must be 3n + 4, got {depth}")
        per_block = (depth - 4) // 3
        channels = 2 * growth
        self.conv1 = nn.Conv2d(3, channels, 3, 1, 1, bias=False)
        stages: list[nn.Module] = []
        for block in range(3):
            for _ in range(per_block):
                stages.append(DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                stages.append(Transition(channels, channels))
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.features(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def channel_sites(self) -> list[ChannelSite]:
        return [ChannelSite("bn", None, ("fc",), gated=False)]
