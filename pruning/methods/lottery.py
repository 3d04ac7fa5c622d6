"""Lottery tickets (Frankle & Carbin 2019) with rewinding (Frankle et al. 2020).

Iterative magnitude pruning (IMP): train dense (round 0), then each round removes
``prune_fraction`` (20%) of the weights still alive, globally by |w| over the selected
conv + linear weights, rewinds every surviving parameter and buffer (BN statistics
included) to their values after ``rewind`` (iterations or epochs) of round 0 (0 = the
original initialisation: the ticket of Frankle & Carbin; e.g. 500 or 2000 = late
rewinding) and retrains with the full training schedule. After r rounds the sparsity is
1 - (1 - p)^r; the last round prunes to ``sparsity`` exactly, so the number of rounds is
the smallest R with 1 - (1 - p)^R >= sparsity. The last epoch of each round in
history.csv is the ticket at that round's sparsity.

``reinit: true`` is the random re-initialisation control on the same mask: the rounds
that find the mask rewind as above, and only the last round starts from a fresh
initialisation instead of the rewound weights. The fresh initialisation permutes every
tensor of the original initialisation at random (seeded by the loop's per-stage seed):
the initialisers of models/ draw each tensor i.i.d., so a permuted tensor is a new draw
from the same distribution, without rerunning the architecture's init code.

Each round retrains for ``train.epochs`` epochs from the start of the schedule (open_lth
instead resumes the schedule at the rewind step; the difference is ``rewind``
iterations at the initial learning rate).

``last_round_epochs`` (0: off, the paper's protocol) gives the last round, the ticket that is
measured, its own length and ``last_round_schedule``: the rounds that find the mask train
``train.epochs`` each, and the ticket trains as long as a one-stage method does. This is how
open_lth's levels are run when the search uses a shorter training than the final ticket, and it
separates "the ticket is worse" from "the ticket trained for a fraction of the budget".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruning.base import (
    Duration,
    MethodConfig,
    RunContext,
    Schedule,
    Stage,
    Variant,
    duration_field,
    epochs_field,
    option,
)
from pruning.masks import MaskedConfig, MaskedMethod, PruneStage, global_magnitude_masks

State = dict[str, torch.Tensor]


@dataclass
class LotteryConfig(MaskedConfig):
    name: str = "lottery"
    prune_fraction: float = option(0.2, gt=0.0, lt=1.0)  # of the weights still alive, per round
    rewind: Duration = duration_field("0it")  # the rewind point in round 0 (e.g. 2000it; profiles scale it)
    reinit: bool = False  # control: the last round starts from a random re-initialisation
    last_round_epochs: int = epochs_field(0, ge=0, optional=True)  # 0: train.epochs, like every round
    last_round_schedule: Schedule | None = option(None, optional=True)  # with last_round_epochs (None: train's)


def imp_targets(sparsity: float, prune_fraction: float) -> list[float]:
    """Sparsity after each IMP round: 1 - (1 - p)^r, the last one clipped to ``sparsity``."""
    if sparsity <= 0.0:
        return []
    rounds = max(1, math.ceil(math.log(1.0 - sparsity) / math.log(1.0 - prune_fraction) - 1e-9))
    return [1.0 - (1.0 - prune_fraction) ** r for r in range(1, rounds)] + [sparsity]


def snapshot(model: nn.Module) -> State:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def permuted(state: State) -> State:
    """Every tensor's entries in a random order (global RNG; on the CPU, then moved back)."""
    out = {}
    for k, v in state.items():
        if v.numel() <= 1:
            out[k] = v.clone()
            continue
        order = torch.randperm(v.numel()).to(v.device)
        out[k] = v.flatten()[order].view_as(v)
    return out


class Lottery(MaskedMethod):
    name = "lottery"
    Config = LotteryConfig

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: object) -> Variant:
        if cfg.reinit:
            return Variant("lottery ticket (random reinit)", "unstructured", order=60, color="#8c564b")
        if cfg.last_round_epochs:
            return Variant("lottery ticket (full-length last round)", "unstructured", order=51, color="#c5b0d5")
        return Variant("lottery ticket", "unstructured", order=50, color="#9467bd")

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        model = super().prepare(model, ctx)
        c = self.cfg
        # The original initialisation: the rewind point for k = 0, the source of the re-init.
        self.rewind_step = c.rewind.steps(ctx.steps_per_epoch)
        self.init: State | None = snapshot(model) if (self.rewind_step == 0 or c.reinit) else None
        self.rewind: State | None = self.init if self.rewind_step == 0 else None
        return model

    def check_budget(self, steps_per_epoch: int, train_epochs: int) -> None:
        steps = self.cfg.rewind.steps(steps_per_epoch)
        if steps >= steps_per_epoch * train_epochs:
            raise ValueError(
                f"rewind: {self.cfg.rewind} (step {steps}) is not inside round 0's "
                f"{steps_per_epoch * train_epochs} steps"
            )

    def stages(self, train_epochs: int) -> list[Stage]:
        targets = imp_targets(self.cfg.sparsity, self.cfg.prune_fraction)
        out = [Stage("train", train_epochs)]
        for r, t in enumerate(targets, start=1):
            last = r == len(targets)
            name = f"round{r}" + ("_reinit" if last and self.cfg.reinit else "")
            if last and self.cfg.last_round_epochs:
                schedule = self.cfg.last_round_schedule
                out.append(PruneStage(name, self.cfg.last_round_epochs, schedule=schedule, target=t))
            else:
                out.append(PruneStage(name, train_epochs, target=t))
        return out

    def after_step(self, model: nn.Module, step: int) -> None:
        super().after_step(model, step)
        if self.rewind is None and step + 1 == self.rewind_step:
            self.rewind = snapshot(model)

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        if not isinstance(stage, PruneStage):
            return model
        weights = self.selected(model)
        masks = global_magnitude_masks(weights, stage.target, self.current_keep(weights))
        model.load_state_dict(permuted(self.init) if stage.name.endswith("_reinit") else self.rewind_state())
        self.masker.set(masks)
        return model

    def rewind_state(self) -> State:
        if self.rewind is None:
            raise RuntimeError(
                f"lottery: the rewind point {self.cfg.rewind} (step {self.rewind_step}) was never "
                "reached in round 0; use an earlier rewind"
            )
        return self.rewind

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "init": self.init, "rewind": self.rewind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.init = state["init"]
        self.rewind = state["rewind"] if self.rewind_step else self.init

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        targets = imp_targets(self.cfg.sparsity, self.cfg.prune_fraction)
        return {
            **super().metrics(model),
            "rounds": len(targets),
            "round_sparsities": targets,
            "rewind": str(self.cfg.rewind),
            "rewind_step": self.rewind_step,
            "reinit": self.cfg.reinit,
            "last_round_epochs": self.cfg.last_round_epochs,
        }
