"""SNIP (Lee, Ajanthan & Torr, ICLR 2019): prune once at initialisation by connection sensitivity.

Before any training, the gradient g of the mean cross-entropy is taken on ``batches`` mini-batches
of training data (``ctx.train_batches.epoch(0)``, which training never uses; summed over the
batches, and over the processes of a data-parallel run, so every process keeps the same weights).
Each selected weight w scores |g * w|, and the ``round(s N)`` lowest scores over all N selected
weights together are removed (ties broken by position, as in magnitude pruning). The scores are
taken on a copy of the model, so its batch-norm statistics are not touched. The masks then hold
for the whole training, one stage with the experiment's schedule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pruning.base import Variant, option
from pruning.masks import MaskedConfig, PruneAtInit


@dataclass
class SNIPConfig(MaskedConfig):
    name: str = "snip"
    batches: int = option(1, ge=1)  # mini-batches of training data the sensitivity is computed on


class SNIP(PruneAtInit):
    name = "snip"
    Config = SNIPConfig
    variant_info = Variant("SNIP", "unstructured", order=72, color="#8c6d31")
    cfg: SNIPConfig

    def scores(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """|g * w| of every selected weight, g summed over ``batches`` batches (and processes)."""
        weights = self.selected(model)
        scorer = copy.deepcopy(model).train()  # the model's BN running statistics stay as they are
        params = dict(scorer.named_parameters())
        grads = {name: torch.zeros_like(w) for name, w in weights.items()}
        used = 0
        for x, y in self.ctx.train_batches.epoch(0):
            if used == self.cfg.batches:
                break
            scorer.zero_grad(set_to_none=True)
            F.cross_entropy(scorer(x), y).backward()
            for name in grads:
                grads[name] += params[name].grad
            used += 1
        if used < self.cfg.batches:
            raise ValueError(f"snip: batches {self.cfg.batches}, but an epoch has only {used}")
        return {name: (self.ctx.reduce(grads[name]) * weights[name].detach()).abs() for name in weights}
