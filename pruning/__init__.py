"""Sparse-training methods, each a small class plugged into the one training loop."""
from __future__ import annotations

from pruning.base import Method
from pruning.dense import Dense
from pruning.dep_l0 import DepL0
from pruning.l0 import L0HC
from pruning.lottery import Lottery
from pruning.magnitude import Magnitude
from pruning.random_prune import RandomPrune
from pruning.slimming import Slimming
from pruning.rda import RDAMethod

# name in the YAML `method: {name: ...}` -> class; each class carries its Config dataclass.
METHODS: dict[str, type[Method]] = {
    "dense": Dense,
    "l0hc": L0HC,
    "dep_l0": DepL0,
    "magnitude": Magnitude,
    "lottery": Lottery,
    "random": RandomPrune,
    "slimming": Slimming,
    "rda": RDAMethod,
}
