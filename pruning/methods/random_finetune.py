"""Random pruning, fine-tuned: magnitude pruning's schedule with random positions.

A control for magnitude pruning (not open_lth's random-pruning control of a lottery ticket, which
is ``random_ticket``).

Everything is as in ``pruning.methods.magnitude`` (dense training, the same rounds, the same
retraining) except which weights go: at each round the global magnitude mask of the
trained model at that round's target fixes how many weights every layer keeps, and that
many are kept per layer at uniformly random positions (among the weights still alive).
So the control differs from magnitude pruning only in the choice of positions, not in
the per-layer densities nor in the training budget. Positions are drawn from the global
RNG, which the training loop seeds from (run seed, stage index) before every stage:
reproducible per seed, different across seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pruning.base import MethodConfig, Variant
from pruning.masks import densities, random_masks
from pruning.methods.magnitude import Magnitude, MagnitudeConfig


@dataclass
class RandomFinetuneConfig(MagnitudeConfig):
    name: str = "random_finetune"


class RandomFinetune(Magnitude):
    name = "random_finetune"
    Config = RandomFinetuneConfig

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: object) -> Variant:
        return Variant("random pruning, fine-tuned", "unstructured", order=70, color="#e377c2")

    def new_masks(self, model: nn.Module, target: float) -> dict[str, torch.Tensor]:
        magnitude = super().new_masks(model, target)
        weights = self.selected(model)
        shapes = {n: w.shape for n, w in weights.items()}
        return random_masks(shapes, densities(magnitude), self.current_keep(weights))
