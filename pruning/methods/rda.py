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

from torch import nn

from pruning.accounting import prunable_layers
from pruning.base import Method, MethodConfig, Variant, lam_point, option


@dataclass
class RDAMethodConfig(MethodConfig):
    name: str = "rda"
    lam: float = option(1e-6, ge=0.0)  # penalty weight of conv and linear weights
    reweight: Literal["none", "log"] = "log"  # "none": plain l1
    max_factor: float = option(500.0, gt=1.0)  # M: the largest omega, given to the smallest weights
    group: Literal["none", "kernel", "channel"] = "none"  # structured modes act on conv weights
    prox: Literal["l1", "group"] = "l1"  # "group": group-lasso step, whole kernels / filters to zero


def zero_group_fractions(model: nn.Module) -> dict[str, float]:
    """Fractions of all-zero kernels (kh x kw slices) and all-zero output filters of the convolutions."""
    weights = [m.weight for m in prunable_layers(model, "conv").values()]
    if not weights:
        return {"kernel_sparsity": 0.0, "channel_sparsity": 0.0}
    zero_kernels = sum(int((w.detach().flatten(2) == 0).all(2).sum()) for w in weights)
    kernels = sum(w.shape[0] * w.shape[1] for w in weights)
    zero_filters = sum(int((w.detach().flatten(1) == 0).all(1).sum()) for w in weights)
    filters = sum(w.shape[0] for w in weights)
    return {"kernel_sparsity": zero_kernels / kernels, "channel_sparsity": zero_filters / filters}


def averaging_name(avg: str | float) -> str:
    """The rda optimizer's averaging: "xRDA" (a = 1 - lr / lr_0, "coupled"), "proximal SGD" (a = 0),
    "RDA (a=1)" (classic dual averaging) or "RDA (a=x)"."""
    if avg == "coupled":
        return "xRDA"
    a = float(avg)
    return "proximal SGD" if a == 0.0 else "RDA (a=1)" if a == 1.0 else f"RDA (a={a:g})"


# (averaging, reweighting, group, prox) -> (legend order, colour): every variant keeps its place and
# colour in every figure; a combination not listed here goes last, with a colour from its label.
_VARIANTS: dict[tuple[str, str, str, str], tuple[int, str]] = {
    ("xRDA", "log", "none", "l1"): (10, "#1f77b4"),
    ("xRDA", "none", "none", "l1"): (20, "#ff7f0e"),
    ("proximal SGD", "log", "none", "l1"): (80, "#7f7f7f"),
    ("RDA (a=1)", "log", "none", "l1"): (90, "#bcbd22"),
    ("xRDA", "log", "kernel", "l1"): (100, "#9edae5"),
    ("xRDA", "log", "channel", "l1"): (110, "#1b9e77"),
    ("xRDA", "log", "kernel", "group"): (120, "#d95f02"),
    ("xRDA", "log", "channel", "group"): (130, "#7570b3"),
    ("xRDA", "none", "kernel", "l1"): (180, "#666666"),
    ("xRDA", "none", "channel", "l1"): (190, "#e41a1c"),
    ("proximal SGD", "none", "none", "l1"): (200, "#377eb8"),
    ("RDA (a=1)", "none", "none", "l1"): (210, "#4daf4a"),
}


class RDAMethod(Method):
    """Dense training with xRDA; the penalty lives in the optimizer's parameter groups."""

    name = "rda"
    Config = RDAMethodConfig
    requires_optimizer = "rda"
    cfg: RDAMethodConfig

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: Any) -> Variant:
        """ "<averaging> <log-l1 | plain l1>", then " (kernel)" / " (channel)" for grouped penalties
        and ", group prox" for the group-lasso step; averagings other than xRDA are ablations."""
        if cfg.lam == 0:  # nothing penalised: the dense control of the xRDA recipe
            return Variant("dense (xRDA optimizer)", "dense", order=1, color="#555555")
        averaging = averaging_name(getattr(optimizer, "avg", "coupled"))
        label = f"{averaging} {'log-l1' if cfg.reweight == 'log' else 'plain l1'}"
        if cfg.group != "none":
            label += f" ({cfg.group})"
        if cfg.prox == "group":
            label += ", group prox"
        order, color = _VARIANTS.get((averaging, cfg.reweight, cfg.group, cfg.prox), (1000, None))
        family = "unstructured" if cfg.group == "none" else "structured"
        return Variant(label, family, order, color, main=averaging == "xRDA")

    @classmethod
    def operating_point(cls, cfg: MethodConfig) -> str:
        return lam_point(cfg.lam)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Conv / linear weights with the penalty options; everything else with lam = 0."""
        penalised = [m.weight for m in prunable_layers(model).values() if m.weight.requires_grad]
        ids = {id(p) for p in penalised}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        c = self.cfg
        groups = [
            {
                "params": penalised,
                "lam": c.lam,
                "reweight": c.reweight,
                "max_factor": c.max_factor,
                "group": c.group,
                "prox": c.prox,
            },
            {"params": rest, "lam": 0.0, "reweight": "none", "group": "none", "prox": "l1"},
        ]
        return [g for g in groups if g["params"]]

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        return zero_group_fractions(model)
