"""Network slimming (Liu et al. 2017): L1 on BN scales, global channel threshold, surgery.

Stages:

1. ``train``: the loss gets s * sum |gamma| over the BN scales, whose subgradient is
   s * sign(gamma) (s = 1e-4 for VGG, 1e-5 for ResNet and DenseNet): over every BN, as the
   release's ``updateBN`` does (``l1_on: all``), or over the prunable ones only (``prunable``:
   the BNs writing into a residual stream keep every channel, and shrinking their scales
   only costs accuracy). On VGG and DenseNet every BN is prunable, so the two agree.
2. ``finetune``: channels are ranked by |gamma| over all prunable BNs together and the
   ``round(channel_ratio * C)`` smallest are removed (ties by position); a layer left
   with fewer than ``min_channels`` keeps its ``min_channels`` largest, so no layer
   ever has zero width. During fine-tuning the model stays *masked*: BN weight and bias
   of a removed channel, its producing convolution's filter (none in a DenseNet, whose BNs
   read a concatenation) and its consumer's input weights are held at 0, so the masked
   model has exactly the nonzero weights of the physically pruned one.
3. ``export`` removes the channels physically (``surgery.shrink``): a smaller model
   computing, in eval mode, exactly what the masked one computes.

``metrics`` reports the physical size (parameters, FLOPs) of the pruned and the dense
architecture, the channels kept per layer, and the latency of both on the CPU (and on
CUDA when available) at the configured batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from pruning import surgery
from pruning.base import Method, MethodConfig, RunContext, Schedule, Stage, Variant, epochs_field, option
from pruning.latency import pruned_vs_dense
from pruning.masks import ParamMasks


@dataclass
class SlimmingConfig(MethodConfig):
    name: str = "slimming"
    l1: float = option(1e-4, ge=0.0)  # s: 1e-4 for VGG, 1e-5 for ResNet / DenseNet
    l1_on: Literal["all", "prunable"] = "all"  # the BNs penalised: every one (the release), or the prunable
    channel_ratio: float = option(0.5, ge=0.0, lt=1.0)  # fraction of the prunable BNs' channels removed
    min_channels: int = option(1, ge=1)  # never fewer channels in a layer
    finetune_epochs: int = epochs_field(160)
    finetune_lr: float | None = option(0.1, gt=0.0)  # None: the optimizer's lr
    finetune_schedule: Schedule = field(default_factory=lambda: Schedule(name="multistep", milestones=[80, 120]))
    latency_batch_sizes: list[int] = option(default_factory=lambda: [1, 128], ge=1)
    latency_warmup: int = option(2, ge=0)
    latency_repeats: int = option(5, ge=1)


def channel_keep(gammas: dict[str, torch.Tensor], ratio: float, min_channels: int = 1) -> dict[str, torch.Tensor]:
    """Boolean keep masks: the ``round(ratio * C)`` smallest |gamma| of all C channels go.

    Afterwards every layer keeps at least ``min(min_channels, width)`` channels, its
    largest |gamma|, so the achieved ratio can fall below ``ratio``.
    """
    names = list(gammas)
    scores = torch.cat([gammas[n].detach().abs().flatten().float() for n in names])
    order = torch.argsort(scores, stable=True)
    kept = torch.ones_like(scores, dtype=torch.bool)
    kept[order[: round(ratio * scores.numel())]] = False
    keep = {n: k.clone() for n, k in zip(names, kept.split([gammas[n].numel() for n in names]))}
    for n in names:
        floor = min(min_channels, keep[n].numel())
        if int(keep[n].sum()) < floor:
            keep[n][torch.topk(gammas[n].detach().abs(), floor).indices] = True
    return keep


class Slimming(Method):
    name = "slimming"
    Config = SlimmingConfig

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: object) -> Variant:
        """The network-slimming recipe retrains the pruned network at the training lr; the rethinking
        paper's fine-tunes it at a small constant lr (40 epochs at 0.001)."""
        if cfg.finetune_lr is not None and cfg.finetune_lr < 0.01:
            return Variant("network slimming (rethinking fine-tune)", "structured", order=142, color="#ce6dbd")
        return Variant("network slimming", "structured", order=140, color="#e7298a")

    @classmethod
    def operating_point(cls, cfg: MethodConfig) -> str:
        return f"{100 * cfg.channel_ratio:g}% channels removed"

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        model = super().prepare(model, ctx)
        self.sites = surgery.removable_sites(model)
        self.bns = list(self.sites)
        self.gammas = [model.get_submodule(n).weight for n in self.bns]
        penalised = (
            self.bns
            if self.cfg.l1_on == "prunable"
            else [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        )
        self.penalised = [model.get_submodule(n).weight for n in penalised]
        self.masker = ParamMasks(model)
        self.keep: dict[str, torch.Tensor] | None = None
        self.reference: nn.Module | None = None  # set by export: the masked dense architecture
        return model

    def stages(self, train_epochs: int) -> list[Stage]:
        c = self.cfg
        return [
            Stage("train", train_epochs),
            Stage("finetune", c.finetune_epochs, lr=c.finetune_lr, schedule=c.finetune_schedule, penalty=False),
        ]

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if self.cfg.l1 == 0:
            return None
        return self.cfg.l1 * torch.stack([g.abs().sum() for g in self.penalised]).sum()

    def _set_keep(self, keep: dict[str, torch.Tensor]) -> None:
        """Masks of removed channels: BN weight and bias, the producing conv's filters and the
        consumers' input weights (a layer may be both a producer and a consumer: masks multiply)."""
        masks: dict[str, torch.Tensor] = {}

        def mask(name: str, m: torch.Tensor) -> None:
            m = m.expand_as(self.masker.params[name])
            masks[name] = masks[name] & m if name in masks else m.clone()

        for bn, k in keep.items():
            k = k.to(self.masker.params[f"{bn}.weight"].device)
            mask(f"{bn}.weight", k)
            mask(f"{bn}.bias", k)
            site = self.sites[bn]
            if site.producer is not None:
                mask(f"{site.producer}.weight", k.view(-1, 1, 1, 1))
            for consumer in site.consumers:
                weight = f"{consumer}.weight"
                mask(weight, k.view(1, -1, *[1] * (self.masker.params[weight].dim() - 2)))
        self.keep = keep
        self.masker.set(masks)

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        if stage.name == "finetune":
            gammas = {n: g for n, g in zip(self.bns, self.gammas)}
            self._set_keep(channel_keep(gammas, self.cfg.channel_ratio, self.cfg.min_channels))
        return model

    def after_step(self, model: nn.Module, step: int) -> None:
        self.masker.apply()

    def export(self, model: nn.Module) -> nn.Module:
        if self.keep is None:
            return model
        self.reference = model
        return surgery.shrink(model, self.keep)

    def state_dict(self) -> dict[str, Any]:
        return {"keep": self.keep}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["keep"] is not None:
            self._set_keep(state["keep"])

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        out: dict[str, Any] = {"channel_ratio": self.cfg.channel_ratio}
        if self.keep is None:
            return out
        kept = {n: int(k.sum()) for n, k in self.keep.items()}
        total = sum(k.numel() for k in self.keep.values())
        shape = self.ctx.input_shape
        reference = self.reference if self.reference is not None else model  # the dense architecture, masked
        dense = surgery.physical_report(reference, shape)
        out |= {
            "channel_ratio_achieved": 1.0 - sum(kept.values()) / total,
            "kept_channels": {n: [kept[n], self.keep[n].numel()] for n in self.bns},
            **surgery.physical_report(model, shape),
            "params_physical_dense": dense["params_physical"],
            "flops_physical_dense": dense["flops_physical"],
            "latency": pruned_vs_dense(
                model, reference, shape, self.cfg.latency_batch_sizes, self.cfg.latency_warmup, self.cfg.latency_repeats
            ),
        }
        return out
