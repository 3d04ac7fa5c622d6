"""GraSP (Wang, Zhang & Grosse, ICLR 2020): prune once at initialisation, preserving gradient flow.

Before any training, a class-balanced batch of ``samples_per_class`` training images of every class
is drawn from ``ctx.train_batches.epoch(0)`` (which training never uses) and ordered by class, as
the release's ``GraSP_fetch_data`` does; the release then splits it into two halves. With the
logits divided by the temperature ``T``, g is the gradient of the mean cross-entropy summed over
the halves, and Hg, the Hessian-gradient product, is the gradient of sum_halves g . grad L_half
with g held fixed (double backprop: ``create_graph``). Each selected weight scores
S = -w * Hg, and the ``round(s N)`` *highest* scores over all N selected weights together are
removed (the weights whose removal reduces gradient flow the least; ties broken by position). g
and Hg are summed over the processes of a data-parallel run, so every process keeps the same
weights. The scores are taken on a copy of the model, so its batch-norm statistics are not touched.
The masks then hold for the whole training, one stage with the experiment's schedule.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pruning.base import Variant, option
from pruning.masks import MaskedConfig, PruneAtInit


@dataclass
class GraSPConfig(MaskedConfig):
    name: str = "grasp"
    samples_per_class: int = option(10, ge=1)  # images of each class in the scoring batch (paper: 10 on CIFAR-10)
    temperature: float = option(200.0, gt=0.0)  # the logits are divided by it while scoring (paper: 200)


def class_balanced_batch(batches: object, num_classes: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class in ``batches`` (in order), ordered by class."""
    xs: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    for x, y in batches:
        for c in range(num_classes):
            missing = per_class - sum(len(t) for t in xs[c])
            if missing > 0:
                xs[c].append(x[y == c][:missing])
        if all(sum(len(t) for t in xs[c]) == per_class for c in range(num_classes)):
            break
    else:
        short = [c for c in range(num_classes) if sum(len(t) for t in xs[c]) < per_class]
        raise ValueError(f"samples_per_class {per_class}: an epoch has fewer images of class {short[0]}")
    inputs = torch.cat([torch.cat(parts) for parts in xs])
    labels = torch.arange(num_classes, device=inputs.device).repeat_interleave(per_class)
    return inputs, labels


class GraSP(PruneAtInit):
    name = "grasp"
    Config = GraSPConfig
    variant_info = Variant("GraSP", "unstructured", order=73, color="#bd9e39")
    cfg: GraSPConfig
    keep = "lowest"  # the highest -w * Hg go

    @classmethod
    def rehearsal_options(cls, cfg: GraSPConfig) -> GraSPConfig:
        # One image of every class: CIFAR-100 at 10 a class needs 1000 images, a rehearsal holds 128.
        return dataclasses.replace(cfg, samples_per_class=1)

    def scores(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """-w * Hg of every selected weight (g and Hg summed over the two halves and the processes)."""
        names = list(self.selected(model))
        scorer = copy.deepcopy(model).train()  # the model's BN running statistics stay as they are
        params = dict(scorer.named_parameters())
        weights = [params[n] for n in names]
        x, y = class_balanced_batch(self.ctx.train_batches.epoch(0), self.ctx.num_classes, self.cfg.samples_per_class)
        half = len(y) // 2
        halves = [(x[:half], y[:half]), (x[half:], y[half:])]
        T = self.cfg.temperature
        g = [torch.zeros_like(w) for w in weights]
        for xs, ys in halves:
            for total, part in zip(g, torch.autograd.grad(F.cross_entropy(scorer(xs) / T, ys), weights)):
                total += part
        g = [self.ctx.reduce(t) for t in g]
        hg = [torch.zeros_like(w) for w in weights]
        for xs, ys in halves:
            grads = torch.autograd.grad(F.cross_entropy(scorer(xs) / T, ys), weights, create_graph=True)
            z = sum((fixed * part).sum() for fixed, part in zip(g, grads))
            for total, part in zip(hg, torch.autograd.grad(z, weights)):
                total += part
        return {n: -w.detach() * self.ctx.reduce(h) for n, w, h in zip(names, weights, hg)}
