"""The interface every method implements to plug into the one training loop.

A method is a small class. The loop (experiments/train.py) calls, in order:

    model = method.prepare(model)                 # wrap the dense model (gates, masks)
    for stage in method.stages(cfg.train.epochs):
        model = method.begin_stage(stage, model)  # prune, rewind, ...; fresh optimizer follows
        for each epoch of the stage:
            for each batch:
                loss = cross_entropy + method.penalty(model)
                optimizer.step(); method.after_step(model, step)
            method.end_epoch(model, stage)
    final = method.export(model)                  # the sparse model that is measured

Everything a method must remember across epochs (masks, saved weights) lives in
``state_dict()`` so that a run killed mid-way resumes exactly; ``begin_stage`` is not
re-run for the stage that was in progress.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from pruning.accounting import weight_sparsity


def epochs_field(default: int) -> Any:
    """A config field counted in epochs: profiles scale it with the training budget."""
    return field(default=default, metadata={"epochs": True})


@dataclass
class Schedule:
    """Learning-rate schedule of one stage; milestones are epochs of that stage."""

    name: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = field(default_factory=list, metadata={"epochs": True})
    gamma: float = 0.1


@dataclass
class Stage:
    """One call of the training loop: ``epochs`` epochs with a fresh optimizer."""

    name: str
    epochs: int
    lr: float | None = None  # None: the optimizer config's lr
    schedule: Schedule | None = None  # None: the train config's schedule
    penalty: bool = True  # False: method.penalty is not added (fine-tuning)


@dataclass
class MethodConfig:
    name: str


class Method:
    """A method that changes nothing: the dense control. Subclasses override hooks."""

    Config: type[MethodConfig] = MethodConfig

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Parameter groups for the main optimizer; options override the optimizer's."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def stages(self, train_epochs: int) -> list[Stage]:
        return [Stage("train", train_epochs)]

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        return model

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step; ``step`` counts from 0 over the whole run."""

    def end_epoch(self, model: nn.Module, stage: Stage) -> None:
        pass

    def sparsity(self, model: nn.Module) -> torch.Tensor:
        """Weight sparsity logged each epoch (0-d tensor, no host sync); gates may override."""
        return weight_sparsity(model)

    def export(self, model: nn.Module) -> nn.Module:
        """The final model to measure: masks folded in, channels physically removed."""
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        """Method-specific entries for metrics.json, computed on the exported model."""
        return {}
