"""Weight masks shared by the unstructured baselines (magnitude, lottery, random) and slimming.

Conventions:

- A mask is a boolean tensor of a parameter's shape, True = kept; masks are keyed by the
  parameter's qualified name (``"layers.0.conv1.weight"``).
- Global selection at sparsity s over N selected weights removes exactly ``round(s * N)`` of
  them, ranked by a score over all selected layers together (``global_score_masks``: keep the
  highest or the lowest; magnitude pruning keeps the highest |w|). Ties
  are broken by position (a stable sort), so the count is exact whatever the values;
  weights already pruned rank first, so masks only ever shrink.
- Masks hold through training: ``ParamMasks`` zeroes the gradient of every masked entry as
  soon as it is accumulated, and the weights themselves after every optimizer step. With
  SGD the update of a weight is lr * (momentum buffer), and the buffer accumulates
  grad + weight_decay * w; both terms are 0 for a masked entry whose weight is 0, so a
  fresh optimizer's momentum buffer stays exactly 0 there and weight decay and momentum
  cannot revive a pruned weight (Adam's moments likewise stay 0).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from pruning.accounting import LayerScope, prunable_weights
from pruning.base import Method, MethodConfig, RunContext, Stage, option, sparsity_point


@dataclass
class PruneStage(Stage):
    """A (re)training stage that begins by pruning to ``target`` sparsity."""

    target: float = 0.0


def global_score_masks(
    scores: dict[str, torch.Tensor],
    sparsity: float,
    keep: Literal["highest", "lowest"],
    alive: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks removing ``round(sparsity * N)`` of the N entries of ``scores`` ranked over all of them
    together: ``keep="highest"`` removes the lowest scores, ``keep="lowest"`` the highest (signed
    scores, as GraSP's). Ties are broken by position (a stable sort), so the count is exact.

    ``alive`` (optional, same keys) marks entries still alive: the others count as pruned already
    and are removed first, so the new masks are subsets of ``alive``.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must lie in [0, 1], got {sparsity}")
    if keep not in ("highest", "lowest"):
        raise ValueError(f"keep must be 'highest' or 'lowest', got {keep!r}")
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().float() for n in names])
    rank = flat if keep == "highest" else -flat  # the first in ascending rank go first
    pruned_before = 0
    if alive is not None:
        living = torch.cat([alive[n].flatten().to(rank.device) for n in names])
        rank = torch.where(living, rank, torch.full_like(rank, -torch.inf))
        pruned_before = int((~living).sum())
    count = max(round(sparsity * rank.numel()), pruned_before)
    order = torch.argsort(rank, stable=True)
    kept = torch.ones_like(rank, dtype=torch.bool)
    kept[order[:count]] = False
    return {n: part.view_as(scores[n]) for n, part in zip(names, kept.split([scores[n].numel() for n in names]))}


def global_magnitude_masks(
    weights: dict[str, torch.Tensor], sparsity: float, keep: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Masks removing the ``round(sparsity * N)`` smallest |w| over all ``weights`` together
    (``global_score_masks`` of |w|, keeping the highest).

    ``keep`` (optional, same keys) marks weights still alive: the others count as pruned
    already and are removed first, so the new masks are subsets of ``keep``.
    """
    return global_score_masks({n: w.detach().abs() for n, w in weights.items()}, sparsity, "highest", keep)


def densities(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of kept entries per mask (a count over a size, in double precision)."""
    return {n: int(m.sum()) / m.numel() for n, m in masks.items()}


def random_masks(
    shapes: dict[str, torch.Size],
    density: dict[str, float],
    keep: dict[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per layer, ``round(density * n)`` entries kept at uniformly random positions.

    Positions come from the (seeded) ``generator`` on the CPU; with ``keep`` they are drawn
    among the entries still alive (the density must not exceed that of ``keep``).
    """
    masks = {}
    for n, shape in shapes.items():
        size = torch.Size(shape).numel()
        count = round(density[n] * size)
        scores = torch.rand(size, generator=generator)
        if keep is not None:
            alive = keep[n].flatten().cpu()
            if count > int(alive.sum()):
                raise ValueError(f"{n}: density {density[n]} exceeds the entries still alive")
            scores = torch.where(alive, scores, torch.full_like(scores, -1.0))
        mask = torch.zeros(size, dtype=torch.bool)
        mask[torch.topk(scores, count).indices] = True
        device = keep[n].device if keep is not None else torch.device("cpu")
        masks[n] = mask.view(shape).to(device)
    return masks


class ParamMasks:
    """Holds masks on a model's parameters and keeps the masked entries at exactly 0.

    A post-accumulate-grad hook on every parameter zeroes the masked gradient entries (so
    optimizer state such as momentum never sees them), and ``apply`` zeroes the masked
    weights; call it after every optimizer step. Masks may be replaced at any time.
    """

    def __init__(self, model: nn.Module) -> None:
        self.masks: dict[str, torch.Tensor] = {}
        self._targets: list[torch.Tensor] = []
        self._factors: list[torch.Tensor] = []
        self.params = dict(model.named_parameters())
        for name, p in self.params.items():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(self._grad_hook(name))

    def _grad_hook(self, name: str) -> Callable[[torch.Tensor], None]:
        # The hook is held by the tensor on the C++ side, out of the garbage collector's sight: a
        # strong reference back to these masks (which hold the tensor) would be a cycle never freed,
        # and one process running many experiments would keep every model it trained.
        owner = weakref.ref(self)

        def hook(p: torch.Tensor) -> None:
            masks = owner()
            mask = masks.masks.get(name) if masks is not None else None
            if mask is not None and p.grad is not None:
                p.grad.mul_(mask)

        return hook

    def set(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace the masks (moved to their parameters' devices) and apply them."""
        unknown = set(masks) - set(self.params)
        if unknown:
            raise ValueError(f"mask for an unknown parameter {sorted(unknown)[0]!r}")
        for n, m in masks.items():
            if m.shape != self.params[n].shape or m.dtype != torch.bool:
                raise ValueError(f"mask of {n!r} must be a bool tensor of shape {tuple(self.params[n].shape)}")
        self.masks = {n: m.to(self.params[n].device) for n, m in masks.items()}
        # 0/1 in each weight's dtype: ``apply`` is then one fused multiply of every masked weight
        self._targets = [self.params[n] for n in self.masks]
        # (empty_like keeps each weight's strides, channels_last included: a foreach kernel needs them alike)
        self._factors = [torch.empty_like(p).copy_(m) for m, p in zip(self.masks.values(), self._targets)]
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the masked weights of every layer, in one foreach multiply (the product by 1.0 or 0.0
        is exact: the same numbers as a layer-by-layer ``mul_`` of the bool mask)."""
        if self._targets:
            torch._foreach_mul_(self._targets, self._factors)

    @torch.no_grad()
    def zero_optimizer_state(self, optimizers: list[torch.optim.Optimizer], where: dict[str, torch.Tensor]) -> None:
        """Set to 0 the optimizer state (momentum, Adam's moments) of the entries where ``where`` is True,
        for masks changed in the middle of a stage: a pruned weight keeps no momentum, and a regrown
        one starts from nothing."""
        for optimizer in optimizers:
            for name, entries in where.items():
                for value in optimizer.state.get(self.params[name], {}).values():
                    if torch.is_tensor(value) and value.shape == entries.shape:
                        value.masked_fill_(entries.to(value.device), 0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.masks)

    def load_state_dict(self, masks: dict[str, torch.Tensor]) -> None:
        self.set(masks)


@dataclass
class MaskedConfig(MethodConfig):
    """What every masked method's config has: the final sparsity and which weights are pruned."""

    sparsity: float = option(0.9, ge=0.0, lt=1.0)  # final fraction of the selected weights set to zero
    layers: LayerScope = "conv_linear"  # conv + linear weights, or conv only (Liu et al.)
    exclude: list[str] = field(default_factory=list)  # module names kept dense (e.g. "classifier")


class MaskedMethod(Method):
    """Base of the unstructured methods: masks on conv/linear weights, held every step.

    Its config is a ``MaskedConfig`` (subclass it to add options). Subclasses decide in
    ``begin_stage`` or ``after_step`` which masks to set (``self.masker.set``); the masks are part
    of the method's state, so a resumed run continues with exactly the same ones.
    """

    cfg: MaskedConfig
    # True: exactly round(sparsity * N) of the N selected weights end masked (the contract suite checks
    # it). False: per-layer counts, each rounded: the total lies within one weight a layer of it.
    exact_target: ClassVar[bool] = True

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        model = super().prepare(model, ctx)
        self.selected(model)  # an ``exclude`` naming no module fails here, before any training
        self.masker = ParamMasks(model)
        return model

    def selected(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The weights this method prunes (config fields ``layers`` and ``exclude``)."""
        return prunable_weights(model, self.cfg.layers, self.cfg.exclude)

    def current_keep(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        masks = self.masker.masks
        return {n: masks[n] for n in weights} if masks else None

    def after_step(self, model: nn.Module, step: int) -> None:
        self.masker.apply()

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masker.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masker.load_state_dict(state["masks"])

    @classmethod
    def operating_point(cls, cfg: MethodConfig) -> str:
        return sparsity_point(cfg.sparsity)

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        masks = self.masker.masks
        total = sum(m.numel() for m in masks.values())
        kept = sum(int(m.sum()) for m in masks.values())
        return {
            "target_sparsity": self.cfg.sparsity,
            "pruned_layers": self.cfg.layers,
            "mask_sparsity": 1.0 - kept / total if total else 0.0,
        }


class PruneAtInit(MaskedMethod):
    """Prune once, before any training, by a score of every selected weight (SNIP, GraSP): the
    ``round(s N)`` scores on the wrong side of ``keep`` go, and the masks hold for the whole training,
    one stage with the experiment's schedule. A subclass gives ``scores`` and ``keep``."""

    keep: ClassVar[Literal["highest", "lowest"]] = "highest"

    def scores(self, model: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        self.masker.set(global_score_masks(self.scores(model), self.cfg.sparsity, keep=self.keep))
        return model
