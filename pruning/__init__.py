"""Sparse-training methods, each a small class plugged into the one training loop."""
from __future__ import annotations

from pruning.base import Method
from pruning.dense import Dense
from pruning.dep_l0 import DepL0
from pruning.l0 import L0HC
from pruning.rda import RDAMethod

# name in the YAML `method: {name: ...}` -> class; each class carries its Config dataclass.
METHODS: dict[str, type[Method]] = {
    "dense": Dense,
    "l0hc": L0HC,
    "dep_l0": DepL0,
    "rda": RDAMethod,
}
