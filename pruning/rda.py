"""The compressed-sensing method: a dense model trained with xRDA and a reweighted l1 penalty.

Siegel, Chen, Zhang & Xu, arXiv 2008.09661. One stage from random initialisation, no
masks and no pruning step: the proximal step of the optimizer (optim/rda.py) sets
weights exactly to zero. This class only says which tensors are penalised: the weights
of Conv2d and Linear layers get ``lam`` and the reweighting / grouping options; BN
parameters and biases go in a group with lam = 0 (trained by the same xRDA update, never
penalised). It must be trained with the ``rda`` optimizer (the config checks this).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from pruning.accounting import prunable_layers
from pruning.base import Method, MethodConfig


@dataclass
class RDAMethodConfig(MethodConfig):
    name: str = "rda"
    lam: float = 1e-6  # penalty weight of conv and linear weights
    reweight: Literal["none", "log"] = "log"  # "none": plain l1
    max_factor: float = 500.0  # M: the largest omega, given to the smallest weights
    group: Literal["none", "kernel", "channel"] = "none"  # structured modes act on conv weights
    prox: Literal["l1", "group"] = "l1"  # "group": group-lasso step, whole kernels / filters to zero

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"lam: expected >= 0, got {self.lam}")
        if not self.max_factor > 1:
            raise ValueError(f"max_factor: expected > 1, got {self.max_factor}")


def _conv_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


def zero_group_fractions(model: nn.Module) -> dict[str, float]:
    """Fractions of all-zero kernels (kh x kw slices) and all-zero output filters of the convolutions."""
    weights = _conv_weights(model)
    if not weights:
        return {"kernel_sparsity": 0.0, "channel_sparsity": 0.0}
    zero_kernels = sum(int((w.detach().flatten(2) == 0).all(2).sum()) for w in weights)
    kernels = sum(w.shape[0] * w.shape[1] for w in weights)
    zero_filters = sum(int((w.detach().flatten(1) == 0).all(1).sum()) for w in weights)
    filters = sum(w.shape[0] for w in weights)
    return {"kernel_sparsity": zero_kernels / kernels, "channel_sparsity": zero_filters / filters}


class RDAMethod(Method):
    """Dense training with xRDA; the penalty lives in the optimizer's parameter groups."""

    Config = RDAMethodConfig

    def __init__(self, cfg: RDAMethodConfig) -> None:
        super().__init__(cfg)
        self.cfg: RDAMethodConfig = cfg

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Conv / linear weights with the penalty options; everything else with lam = 0."""
        penalised = [m.weight for m in prunable_layers(model).values() if m.weight.requires_grad]
        ids = {id(p) for p in penalised}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        c = self.cfg
        groups = [
            {"params": penalised, "lam": c.lam, "reweight": c.reweight, "max_factor": c.max_factor,
             "group": c.group, "prox": c.prox},
            {"params": rest, "lam": 0.0, "reweight": "none", "group": "none", "prox": "l1"},
        ]
        return [g for g in groups if g["params"]]

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        return zero_group_fractions(model)
