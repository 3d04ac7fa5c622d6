"""VGG-16/19 for CIFAR, the variant of Liu et al. (network slimming, rethinking pruning).

Batch norm after every convolution, four max-pools, a 2x2 average pool and a single
linear classifier (512 -> classes): VGG-16 has 14.7M parameters, VGG-19 20.0M.
"""

from __future__ import annotations

import torch
from torch import nn

from models.topology import ChannelSite

LAYOUTS: dict[int, list[int | str]] = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class VGG(nn.Module):
    def __init__(self, depth: int = 16, num_classes: int = 10, layout: list[int | str] | None = None) -> None:
        super().__init__()
        layout = layout if layout is not None else LAYOUTS[depth]
        layers: list[nn.Module] = []
        in_channels = 3
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [
                nn.Conv2d(in_channels, int(item), 3, padding=1, bias=False),
                nn.BatchNorm2d(int(item)),
                nn.ReLU(inplace=True),
            ]
            in_channels = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))

    def channel_sites(self) -> list[ChannelSite]:
        """Every convolution's BN: its channels are read by the next convolution, or by the
        classifier after the last one (the 2x2 average pool leaves a 1x1 map)."""
        convs = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.Conv2d)]
        sites = []
        for j, i in enumerate(convs):
            if not isinstance(self.features[i + 1], nn.BatchNorm2d):
                raise ValueError(f"expected a BatchNorm2d after features.{i}")
            consumer = f"features.{convs[j + 1]}" if j + 1 < len(convs) else "classifier"
            sites.append(ChannelSite(f"features.{i + 1}", f"features.{i}", (consumer,)))
        return sites
