"""How reports name and colour a run: read from the run's method class, never hard-coded here.

Each method declares its variants (``pruning.base.Variant``: label, family, legend order, colour)
and its operating point beside its class; ``describe`` validates a run's resolved config and asks
the method. A new method therefore appears in every table and figure with no edit here.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt

from pruning.base import Variant
from pruning.registry import METHODS
from training.config import run_config_from_mapping

# Colours for variants that declare none: picked by the label, so adding a method moves no other colour.
_PALETTE = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors + plt.get_cmap("Set1").colors


def describe(config: dict[str, Any]) -> tuple[Variant, str]:
    """The variant and the operating point of a run, from its resolved config (config.yaml as a
    mapping); a config that does not validate raises ``training.schema.ConfigError``."""
    cfg = run_config_from_mapping(config)
    method = METHODS[cfg.method.name]
    return method.variant(cfg.method, cfg.optimizer), method.operating_point(cfg.method)


def color_of(variant: Variant) -> Any:
    """The variant's fixed colour: its own, or one derived from its label."""
    if variant.color is not None:
        return variant.color
    return _PALETTE[sum(map(ord, variant.label)) % len(_PALETTE)]
