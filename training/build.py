"""The one place where a config becomes objects: data, run context, model, method, optimizers.

The runner (``training.runner``), the benchmarks and the export all build through these
functions, so what they time or rebuild is what a run trains.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import build_model
from optim.rda import RDA
from pruning.base import Batches, Method, RunContext, Schedule, Stage
from pruning.registry import METHODS
from training import distributed
from training.config import ExperimentConfig, OptimizerConfig, RDAConfig, SGDConfig, synthetic_allowed
from training.data import CIFAR, DataError, DeviceBatches, describe, fingerprint, load_cifar, validation_split
from training.loop import Optimizers
from training.schema import ConfigError
from training.synthetic import PREFIX, present, synthetic_root


def build_data(
    cfg: ExperimentConfig, data_root: Path, device: torch.device, seed: int, cuda_fast: bool
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Training, validation (None without ``data.validation``) and test batches, and what the run
    records about its data (label, sizes, the files' md5 sums, the fingerprint of what it loaded)."""
    d = cfg.data
    synthetic = synthetic_allowed(cfg) and not present(data_root, d.dataset)
    if synthetic:  # a rehearsal without this data set: a generated one in its layout, labelled so
        data_root = synthetic_root(d.dataset)
    train_b, val_b, test_b, info = _load_data(cfg, data_root, device, seed)
    if synthetic:
        info["synthetic"] = True
        info["data_label"] = f"synthetic {info['data_label']} (generated in {data_root}, not the real data)"
        info["data_fingerprint"] = PREFIX + info["data_fingerprint"]
    return train_b, val_b, test_b, info


def _load_data(cfg: ExperimentConfig, data_root: Path, device: torch.device, seed: int) -> tuple[Any, Any, Any, dict]:
    d = cfg.data
    rank, world = distributed.rank(), distributed.world_size()  # each process takes its share of every batch
    if d.dataset == "imagenet":
        from training.imagenet import imagenet_batches

        if problem := distributed.uneven_split(0, d.batch_size, world):
            raise DataError(f"{cfg.name}: {problem}")
        if d.validation:
            raise DataError(f"{cfg.name}: data.validation is not available for ImageNet here")
        train_b, test_b, info = imagenet_batches(cfg, data_root, device, seed, rank, world)
        return train_b, None, test_b, info
    spec = CIFAR[d.dataset]
    train, test, md5 = load_cifar(data_root, d.dataset)
    full_sizes = (len(train.labels), len(test.labels))
    if d.max_train is not None:
        train = dataclasses.replace(train, images=train.images[: d.max_train], labels=train.labels[: d.max_train])
    if d.max_test is not None:
        test = dataclasses.replace(test, images=test.images[: d.max_test], labels=test.labels[: d.max_test])
    val = None
    if d.validation:
        train, val = validation_split(train, d.validation, spec.num_classes)
    if problem := distributed.uneven_split(len(train.labels), d.batch_size, world):
        raise DataError(f"{cfg.name}: {problem}")
    common = dict(
        device=device,
        mean=spec.mean,
        std=spec.std,
        channels_last=cfg.train.channels_last,
        rank=rank,
        world_size=world,
    )
    train_b = DeviceBatches(
        train, d.batch_size, train=True, augment=d.augment, seed=seed, erasing=d.random_erasing, **common
    )
    val_b = DeviceBatches(val, 500, train=False, augment=False, **common) if val is not None else None
    test_b = DeviceBatches(test, 500, train=False, augment=False, **common)
    info = {
        "dataset": d.dataset,
        "num_classes": spec.num_classes,
        "input_shape": [3, 32, 32],
        "data_label": describe(d.dataset, *full_sizes, d.max_train, d.max_test),
        "data_files": {"train": full_sizes[0], "test": full_sizes[1]},
        "data_md5": md5,
        "train_size": len(train.labels),
        "validation_size": len(val.labels) if val is not None else 0,
        "test_size": len(test.labels),
        "data_fingerprint": fingerprint(*(s for s in (train, val, test) if s is not None)),
    }
    if len(test.labels) != full_sizes[1] or (d.max_train is not None and d.max_train < full_sizes[0]):
        info["data_label"] += f", first {d.max_train or full_sizes[0]} train / {len(test.labels)} test images used"
    if val is not None:
        info["data_label"] += f", {len(val.labels)} training images held out for validation"
    return train_b, val_b, test_b, info


class NoBatches:
    """Where a method is built without training (rebuilding a finished run's export)."""

    def epoch(self, epoch: int) -> Any:
        raise RuntimeError("no training data here: this model is rebuilt from a checkpoint, not trained")

    def __len__(self) -> int:
        return 0


def run_context(
    device: torch.device,
    data_info: dict[str, Any],
    train_batches: Batches | None = None,
    seed: int = 0,
    steps_per_epoch: int | None = None,
) -> RunContext:
    """The ``RunContext`` methods receive: this process's training batches, the input shape, the
    device and, under several processes, their sum-reduction."""
    batches = train_batches if train_batches is not None else NoBatches()
    active = distributed.active()
    return RunContext(
        device=device,
        input_shape=tuple(data_info["input_shape"]),
        num_classes=data_info["num_classes"],
        train_batches=batches,
        steps_per_epoch=steps_per_epoch if steps_per_epoch is not None else len(batches),
        seed=seed,
        reduce=distributed.all_reduce_sum if active else (lambda t: t),
        world_size=distributed.world_size(),
    )


def build_model_and_method(
    cfg: ExperimentConfig, ctx: RunContext, channels_last: bool = False
) -> tuple[nn.Module, Method]:
    """The dense architecture on ``ctx.device``, prepared by the config's method (gates, masks)."""
    model = build_model(cfg.model, ctx.num_classes)
    if cfg.bn_weight_init != 1.0:  # the release's initial BN scales (after the architecture's own init)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.uniform_(0.0, 1.0) if cfg.bn_weight_init == "uniform" else m.weight.fill_(
                        cfg.bn_weight_init
                    )
    model = model.to(ctx.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = METHODS[cfg.method.name](cfg.method)
    return method.prepare(model, ctx), method


def build_scheduler(schedule: Schedule, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    if schedule.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    milestones = schedule.milestones if schedule.name == "multistep" else []
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=schedule.gamma)


def build_optimizer(cfg: OptimizerConfig, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    if isinstance(cfg, SGDConfig):
        return torch.optim.SGD(
            groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if isinstance(cfg, RDAConfig):  # penalty options (lam, reweight, ...) come with the method's groups
        return RDA(
            groups,
            lr=lr,
            avg=cfg.avg,
            momentum_timescale=cfg.momentum_timescale,
            magnitude_timescale=cfg.magnitude_timescale,
            weight_decay=cfg.weight_decay,
        )
    raise ConfigError(f"optimizer.name: no builder for {cfg.name!r}")


def optimizer_factory(cfg: ExperimentConfig, method: Method) -> Any:
    """``make(stage, model)``: a stage's optimizers (the experiment's, then the method's own) and
    one scheduler each."""

    def make(stage: Stage, model: nn.Module) -> Optimizers:
        lr = stage.lr if stage.lr is not None else cfg.optimizer.lr
        schedule = stage.schedule or cfg.train.schedule
        optimizers = [build_optimizer(cfg.optimizer, method.param_groups(model), lr)]
        schedules = [schedule]
        for extra in method.extra_optimizers(model):
            # fused: one operation over all the (many, small) tensors instead of nine per tensor and
            # a read-back of each step count; on the CPU the numbers are the per-tensor loop's.
            group = {"params": extra.params, "lr": extra.lr, "weight_decay": extra.weight_decay}
            optimizers.append(torch.optim.Adam([group], fused=True))
            schedules.append(extra.schedule or schedule)
        return optimizers, [build_scheduler(s, o, stage.epochs) for s, o in zip(schedules, optimizers)]

    return make
