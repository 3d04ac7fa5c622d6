"""L0-HC (Louizos, Welling & Kingma, ICLR 2018): hard-concrete channel gates, a free log alpha each.

The gates, their placement, the L0 penalty and the export are those of ``pruning.gates``; this
method only says where the log alphas come from: one trainable tensor per gated layer,
initialised N(``init_log_alpha``, 0.01^2), so every gate starts open.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pruning.base import Variant, option
from pruning.gates import ChannelGates, GateConfig, GateParameters


class IndependentLogAlphas(GateParameters):
    """A free log alpha per channel, initialised N(mean, std^2) (3 +- 0.01: open)."""

    def __init__(
        self, widths: list[int], mean: float = 3.0, std: float = 0.01, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.log_alpha = nn.ParameterList([nn.Parameter(torch.randn(w, device=device) * std + mean) for w in widths])

    def log_alphas(self) -> list[torch.Tensor]:
        return list(self.log_alpha)


@dataclass
class L0HCConfig(GateConfig):
    name: str = "l0hc"
    init_log_alpha: float = option(3.0, unbounded=True)  # mean of the initial log alphas (std 0.01)


class L0HC(ChannelGates):
    """L0-HC: an independent log alpha per channel."""

    name = "l0hc"
    Config = L0HCConfig
    variant_info = Variant("L0-HC", "structured", order=150, color="#66a61e")

    def make_gates(self, widths: list[int], device: torch.device) -> GateParameters:
        return IndependentLogAlphas(widths, self.cfg.init_log_alpha, device=device)
