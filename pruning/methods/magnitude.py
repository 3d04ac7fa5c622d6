"""Magnitude pruning (Han et al. 2015): train dense, prune the smallest weights, retrain.

Stages: ``train`` (dense, the main schedule), then ``rounds`` stages that each prune
globally by |w| (over conv + linear weights, or conv only as Liu et al.) to that round's
target and retrain with their own learning rate and schedule. Round r of R prunes to

- ``geometric``: s_r = 1 - (1 - s)^(r / R)  (every round removes the same fraction of
  the weights still alive), or
- ``linear``:    s_r = s * r / R,

so the last round reaches the target s exactly. ``rounds: 1`` is the one-shot variant
(prune once, fine-tune; Liu et al.: 40 epochs at lr 0.001).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from pruning.base import MethodConfig, Schedule, Stage, Variant, epochs_field, option
from pruning.masks import MaskedConfig, MaskedMethod, PruneStage, global_magnitude_masks


@dataclass
class MagnitudeConfig(MaskedConfig):
    name: str = "magnitude"
    rounds: int = option(1, ge=1)  # prune + retrain rounds; 1 = one-shot
    round_schedule: Literal["geometric", "linear"] = "geometric"
    retrain_epochs: int = epochs_field(40)  # per round
    retrain_lr: float | None = option(0.001, gt=0.0)  # None: the optimizer's lr
    retrain_schedule: Schedule = field(default_factory=lambda: Schedule(name="constant"))


def round_targets(sparsity: float, rounds: int, kind: str) -> list[float]:
    """Target sparsity after each of ``rounds`` rounds; the last is ``sparsity``."""
    if kind == "geometric":
        return [1.0 - (1.0 - sparsity) ** (r / rounds) for r in range(1, rounds)] + [sparsity]
    return [sparsity * r / rounds for r in range(1, rounds)] + [sparsity]


class Magnitude(MaskedMethod):
    name = "magnitude"
    Config = MagnitudeConfig

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: object) -> Variant:
        conv = cfg.layers == "conv"  # Liu et al.'s weight-level pruning leaves the classifier dense
        if cfg.rounds == 1:
            return (
                Variant("magnitude one-shot (conv only)", "unstructured", order=32, color="#98df8a")
                if conv
                else Variant("magnitude one-shot", "unstructured", order=30, color="#2ca02c")
            )
        return (
            Variant("magnitude iterative (conv only)", "unstructured", order=42, color="#ff9896")
            if conv
            else Variant("magnitude iterative", "unstructured", order=40, color="#d62728")
        )

    def stages(self, train_epochs: int) -> list[Stage]:
        c = self.cfg
        targets = round_targets(c.sparsity, c.rounds, c.round_schedule)
        name = "finetune" if c.rounds == 1 else "retrain{}"
        return [Stage("train", train_epochs)] + [
            PruneStage(
                name.format(r), c.retrain_epochs, lr=c.retrain_lr, schedule=c.retrain_schedule, penalty=False, target=t
            )
            for r, t in enumerate(targets, start=1)
        ]

    def new_masks(self, model: nn.Module, target: float) -> dict[str, torch.Tensor]:
        """Global magnitude masks at ``target``, nested in the current masks."""
        weights = self.selected(model)
        return global_magnitude_masks(weights, target, self.current_keep(weights))

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        if isinstance(stage, PruneStage):
            self.masker.set(self.new_masks(model, stage.target))
        return model
