"""The dense control: plain training, nothing pruned."""
from __future__ import annotations

from dataclasses import dataclass

from pruning.base import Method, MethodConfig


@dataclass
class DenseConfig(MethodConfig):
    name: str = "dense"


class Dense(Method):
    Config = DenseConfig
