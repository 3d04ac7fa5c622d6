"""Model registry: ``build_model(name, num_classes)`` for every architecture used here."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.densenet import DenseNet
from models.resnet import resnet18_cifar, resnet50
from models.resnet_cifar import CifarResNet
from models.vgg import VGG

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "vgg16": lambda classes: VGG(16, classes),
    "vgg19": lambda classes: VGG(19, classes),
    "resnet20": lambda classes: CifarResNet(20, classes),
    "resnet32": lambda classes: CifarResNet(32, classes),
    "resnet56": lambda classes: CifarResNet(56, classes),
    "resnet110": lambda classes: CifarResNet(110, classes),
    "resnet18": resnet18_cifar,
    "densenet40": lambda classes: DenseNet(40, 12, classes),
    "resnet50": resnet50,
}


def build_model(name: str, num_classes: int) -> nn.Module:
    """Build a freshly initialised model; the caller seeds the global RNG first."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes)
