"""Sparse-training methods, each a small class plugged into the one training loop."""
from __future__ import annotations

from pruning.base import Method
from pruning.dense import Dense
from pruning.rda import RDAMethod

# name in the YAML `method: {name: ...}` -> class; each class carries its Config dataclass.
METHODS: dict[str, type[Method]] = {
    "dense": Dense,
    "rda": RDAMethod,
}
