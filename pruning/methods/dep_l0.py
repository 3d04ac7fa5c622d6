"""Dep-L0 (Li & Ji, arXiv 2107.00070): hard-concrete channel gates whose log alphas are generated.

Instead of a free log alpha per channel, a chain of Linear layers, one per gated layer and as
wide as that layer's channels, maps a constant all-ones vector to every layer's log alphas:

    h_0 = 1 (width of the chain's first layer),   h_l = ln(100) tanh(W_l h_{l-1} + b_l),   log alpha_l = h_l

so the gates of one layer depend on those of the layers before it in the chain, and
log alpha stays in (-ln 100, ln 100). ``forward``: the chain runs from the first gated layer
to the last; ``backward``: from the last to the first (its outputs are then reversed). As in
the release, W_l keeps PyTorch's Linear initialisation (U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
and b_l ~ N(3, 0.01^2): the first layer's gates start open (pre-activation 3 +- 0.6); later
layers' pre-activations spread as 3 +- about 2.6, so about 7% of all gates start closed
(VGG-16, ResNet-56, ResNet-50; the mean P(z != 0) is about 0.92). The chain's input is as wide as
its first layer, except where ``input_width`` says otherwise: the release's VGG feeds both of its
chains a 64-wide input, so its backward chain starts 64 -> 512 (the VGG backward paper configs set
``input_width: 64``). The width of a constant input changes the first Linear's initial spread
(U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and how fast Adam moves its pre-activations.

Everything else (gate placement, penalty, Adam for the gate parameters, export) is that of
``pruning.gates``; here the generator's weights and biases are the gate parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pruning.base import MethodConfig, Variant, option
from pruning.gates import ChannelGates, GateConfig, GateParameters

LOG_ALPHA_LIMIT = math.log(100.0)


class GateGenerator(GateParameters):
    """The Dep-L0 MLP chain; plain parameters, no nn.Linear, so that the generator is never
    mistaken for a prunable layer of the network."""

    def __init__(
        self,
        widths: list[int],
        direction: Literal["forward", "backward"] = "forward",
        init_bias: float = 3.0,
        device: torch.device | None = None,
        input_width: int | None = None,
    ) -> None:
        super().__init__()
        if direction not in ("forward", "backward"):
            raise ValueError(f"direction: expected 'forward' or 'backward', got {direction!r}")
        self.direction = direction
        order = list(widths) if direction == "forward" else list(reversed(widths))
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        for fan_in, fan_out in zip([input_width or order[0], *order[:-1]], order):
            w = torch.empty(fan_out, fan_in, device=device)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Linear's default
            self.weight.append(nn.Parameter(w))
            self.bias.append(nn.Parameter(torch.randn(fan_out, device=device) * 0.01 + init_bias))

    def log_alphas(self) -> list[torch.Tensor]:
        h = torch.ones(self.weight[0].shape[1], device=self.weight[0].device, dtype=self.weight[0].dtype)
        out = []
        for w, b in zip(self.weight, self.bias):
            h = LOG_ALPHA_LIMIT * torch.tanh(F.linear(h, w, b))
            out.append(h)
        return out if self.direction == "forward" else out[::-1]


@dataclass
class DepL0Config(GateConfig):
    name: str = "dep_l0"
    lam: float = option(1e-6, ge=0.0)
    direction: Literal["forward", "backward"] = "forward"  # order in which the chain runs over layers
    init_bias: float = option(3.0, unbounded=True)  # mean of the generator's initial biases (std 0.01)
    input_width: int | None = option(None, ge=1)  # width of the chain's all-ones input; None: its first layer's


class DepL0(ChannelGates):
    """Dep-L0: the log alphas of every gated layer come from one ``GateGenerator``."""

    name = "dep_l0"
    Config = DepL0Config

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: object) -> Variant:
        if cfg.direction == "backward":
            return Variant("Dep-L0 (backward)", "structured", order=170, color="#a6761d")
        return Variant("Dep-L0 (forward)", "structured", order=160, color="#e6ab02")

    def make_gates(self, widths: list[int], device: torch.device) -> GateParameters:
        return GateGenerator(
            widths, self.cfg.direction, self.cfg.init_bias, device=device, input_width=self.cfg.input_width
        )
