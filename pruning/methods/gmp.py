"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").

One training run in which the sparsity rises along the cubic schedule

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3,   t = t_0, t_0 + dt, ..., t_0 + n dt,

t counting optimizer steps taken: at each of those steps the smallest |w| are masked until the
selected weights reach s_t, over all of them together (``scope: global``) or in every layer alike
(``scope: layer``, as Zhu & Gupta); before t_0 nothing is pruned, after t_0 + n dt the masks stay.
A newly masked weight loses its optimizer state (momentum) with its value.
t_0 is ``begin``, dt is ``every`` and n = floor((``end`` - ``begin``) / dt), so the target s_f
(``sparsity``) is reached at the last pruning step at or before ``end``. Masks only shrink. This is the one-run
baseline that Gale et al. ("The State of Sparsity", 2019) found to beat L0 regularisation at scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from pruning.base import Duration, RunContext, Variant, duration_field, option
from pruning.masks import MaskedConfig, MaskedMethod, global_magnitude_masks


@dataclass
class GMPConfig(MaskedConfig):
    name: str = "gmp"
    initial_sparsity: float = option(0.0, ge=0.0, lt=1.0)  # s_i, applied at the first pruning step
    begin: Duration = duration_field("8ep")  # t_0
    end: Duration = duration_field("120ep")  # the target is reached at the last pruning step up to here
    every: Duration = duration_field("100it")  # dt
    scope: Literal["global", "layer"] = "global"

    def __post_init__(self) -> None:
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity must not exceed sparsity, got {self.initial_sparsity}")


def cubic_sparsity(t: int, initial: float, final: float, t0: int, n: int, dt: int) -> float | None:
    """The target after ``t`` steps if ``t`` is a pruning step of the schedule, else None."""
    if t < t0 or (t - t0) % dt or (t - t0) // dt > n:
        return None
    if n == 0:
        return final
    return final + (initial - final) * (1.0 - (t - t0) / (n * dt)) ** 3


class GMP(MaskedMethod):
    name = "gmp"
    Config = GMPConfig
    variant_info = Variant("gradual magnitude (GMP)", "unstructured", order=45, color="#393b79")
    cfg: GMPConfig

    def check_budget(self, steps_per_epoch: int, train_epochs: int) -> None:
        self.cfg.end.check_within("end", steps_per_epoch, train_epochs)

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        model = super().prepare(model, ctx)
        steps = ctx.steps_per_epoch
        self.t0, self.dt = self.cfg.begin.steps(steps), max(1, self.cfg.every.steps(steps))
        self.n = max(0, (self.cfg.end.steps(steps) - self.t0) // self.dt)
        return model

    def target(self, t: int) -> float | None:
        return cubic_sparsity(t, self.cfg.initial_sparsity, self.cfg.sparsity, self.t0, self.n, self.dt)

    def after_step(self, model: nn.Module, step: int) -> None:
        target = self.target(step + 1)
        if target is None:
            super().after_step(model, step)
            return
        weights = self.selected(model)
        keep = self.current_keep(weights)
        if self.cfg.scope == "global":
            masks = global_magnitude_masks(weights, target, keep)
        else:
            masks = {}
            for name, w in weights.items():
                masks |= global_magnitude_masks({name: w}, target, {name: keep[name]} if keep else None)
        self.masker.set(masks)  # also zeroes the newly masked weights
        self.masker.zero_optimizer_state(self.ctx.optimizers, {name: ~mask for name, mask in masks.items()})
