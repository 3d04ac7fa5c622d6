"""RigL (Evci, Gale, Menick, Castro & Elsen, ICML 2020): a sparse network whose connections move.

The network is sparse from the start: each selected layer keeps a fixed number of weights, at
random positions, with per-layer densities from the Erdős–Rényi-kernel rule (``distribution: erk``:
density proportional to (sum of the tensor's dimensions) / (their product), scaled so that the
selected weights reach ``sparsity`` overall; a layer that would exceed density 1 is kept dense and
the others rescaled) or the same density everywhere (``uniform``). Every ``every`` steps until
``end``, each layer drops the k = floor(f_t n_l) of its n_l active weights with the smallest |w| and
regrows the k inactive ones with the largest |gradient| (of the dense weights, on that step's batch;
summed over processes), where f_t = (alpha / 2) (1 + cos(pi t / T_end)) decays from ``drop_fraction``
= alpha. Regrown weights start at 0, and the optimizer state (momentum) of every weight that changed
is reset. The number of active weights of every layer never changes.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from pruning.base import Duration, RunContext, Variant, duration_field, option
from pruning.masks import MaskedConfig, MaskedMethod, random_masks


@dataclass
class RigLConfig(MaskedConfig):
    name: str = "rigl"
    distribution: Literal["erk", "uniform"] = "erk"  # per-layer densities
    drop_fraction: float = option(
        0.3, gt=0.0, lt=1.0
    )  # alpha: the fraction of active weights moved at the first update
    every: Duration = duration_field("100it")  # Delta T: steps between updates
    end: Duration = duration_field("120ep")  # T_end: no updates from here on (75% of training in the paper)


def erk_densities(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    """Erdős–Rényi-kernel densities of tensors of ``shapes`` whose weighted mean is ``density``."""
    dense: set[str] = set()
    while True:
        raw = {n: sum(s) / math.prod(s) for n, s in shapes.items() if n not in dense}
        budget = density * sum(math.prod(s) for s in shapes.values()) - sum(math.prod(shapes[n]) for n in dense)
        scale = budget / sum(raw[n] * math.prod(shapes[n]) for n in raw)
        largest = max(raw.values())
        if scale * largest <= 1.0:
            return {n: 1.0 if n in dense else scale * raw[n] for n in shapes}
        dense |= {n for n, r in raw.items() if r == largest}


def update_fraction(t: int, alpha: float, t_end: int) -> float:
    """f_t = (alpha / 2) (1 + cos(pi t / T_end))."""
    return alpha / 2 * (1 + math.cos(math.pi * t / t_end))


class RigL(MaskedMethod):
    name = "rigl"
    Config = RigLConfig
    variant_info = Variant("RigL", "unstructured", order=74, color="#d6616b")
    exact_target = False  # each layer's count is rounded on its own (ERK or uniform densities)
    cfg: RigLConfig

    def check_budget(self, steps_per_epoch: int, train_epochs: int) -> None:
        self.cfg.end.check_within("end", steps_per_epoch, train_epochs)

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        weights = self.selected(model)
        self.steps_done = 0
        self.grads: dict[str, torch.Tensor] = {}
        for name, w in weights.items():  # before the masks' own hooks: the gradient before masking
            w.register_post_accumulate_grad_hook(self._keep_grad(name))
        model = super().prepare(model, ctx)
        self.every = max(1, self.cfg.every.steps(ctx.steps_per_epoch))
        self.t_end = self.cfg.end.steps(ctx.steps_per_epoch)
        return model

    def _keep_grad(self, name: str) -> Any:
        owner = weakref.ref(self)  # not a cycle through the tensor's C++ hooks (ParamMasks._grad_hook)

        def hook(p: torch.Tensor) -> None:
            method = owner()
            if method is not None and method.is_update(method.steps_done + 1):
                method.grads[name] = p.grad.detach().clone()

        return hook

    def is_update(self, t: int) -> bool:
        return t % self.every == 0 and t < self.t_end

    def densities(self, model: nn.Module) -> dict[str, float]:
        shapes = {name: w.shape for name, w in self.selected(model).items()}
        if self.cfg.distribution == "uniform":
            return dict.fromkeys(shapes, 1.0 - self.cfg.sparsity)
        return erk_densities(shapes, 1.0 - self.cfg.sparsity)

    def begin_stage(self, stage: Any, model: nn.Module) -> nn.Module:
        shapes = {name: w.shape for name, w in self.selected(model).items()}
        self.masker.set(random_masks(shapes, self.densities(model)))
        return model

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        self.steps_done = step + 1
        if not self.is_update(self.steps_done):
            super().after_step(model, step)
            return
        fraction = update_fraction(self.steps_done, self.cfg.drop_fraction, self.t_end)
        weights, masks, changed = self.selected(model), {}, {}
        for name, w in weights.items():
            active = self.masker.masks[name]
            k = math.floor(fraction * int(active.sum()))
            if k == 0:
                masks[name] = active
                continue
            magnitude = torch.where(active, w.abs(), torch.full_like(w, math.inf)).flatten()
            kept = active.flatten().clone()
            kept[torch.topk(magnitude, k, largest=False).indices] = False  # drop the k smallest active
            growth = self.ctx.reduce(self.grads.pop(name)).abs().flatten()
            growth = torch.where(kept, torch.full_like(growth, -math.inf), growth)
            kept[torch.topk(growth, k).indices] = True  # regrow the k largest gradients (just dropped ones too)
            masks[name] = kept.view_as(active)
            changed[name] = masks[name] != active
        self.grads.clear()
        grown = {name: masks[name] & changed[name] for name in changed}
        self.masker.set(masks)  # zeroes the dropped weights
        for name, entries in grown.items():
            weights[name].masked_fill_(entries, 0.0)  # regrown connections start from zero
        self.masker.zero_optimizer_state(self.ctx.optimizers, changed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps_done = state["steps_done"]
