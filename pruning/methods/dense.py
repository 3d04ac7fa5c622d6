"""The dense control: plain training, nothing pruned."""

from __future__ import annotations

from dataclasses import dataclass

from pruning.base import Method, MethodConfig, Variant


@dataclass
class DenseConfig(MethodConfig):
    name: str = "dense"


class Dense(Method):
    name = "dense"
    Config = DenseConfig
    variant_info = Variant("dense", "dense", order=0, color="black")
