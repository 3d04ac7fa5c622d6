"""``train``: images per second of training, per model (ResNet-56 and VGG-16 by default, batch
128, CIFAR-shaped random data): dense SGD, xRDA, magnitude pruning (its fine-tuning stage:
90% of the weights masked, masks held every step), L0-HC and Dep-L0 at the papers' settings, and
every other registered method at its default config (its last stage), each built as a real run
builds it (``training.build``: the method registry, ``optimizer_factory``, the one ``Trainer``) and timed over
whole epochs of ``--steps`` batches from ``DeviceBatches`` (data and augmentation on the device;
on CUDA channels_last and bf16 autocast unless switched off, ``--compile`` optional). The test
set is empty, so an epoch is training plus the per-epoch hooks. Beside them, a plain reference
loop as pruning code usually has it: a DataLoader over the same images, random crop and flip
done per image in Python, fp32, contiguous memory, the loss read back every step. The first
``--warmup`` epochs (torch.compile, cuDNN autotuning, loader start-up) are not timed; the
variants take turns epoch by epoch, so that the machine's load changes hit them alike. The table
shows the median epoch's images/s, the ratio to dense SGD, the speed-up of dense SGD over the
reference loop and, counted with torch.profiler, the operators each method adds to a step: on a
GPU, where small CIFAR networks are bound by kernel launches, what a method costs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from experiments.bench.common import device_name, sync
from models import build_model
from pruning.base import MethodConfig, Schedule
from pruning.methods.dense import DenseConfig
from pruning.methods.dep_l0 import DepL0Config
from pruning.methods.grasp import GraSPConfig
from pruning.methods.l0hc import L0HCConfig
from pruning.methods.magnitude import MagnitudeConfig
from pruning.methods.rda import RDAMethodConfig
from pruning.registry import METHODS
from reporting.stats import median_interval
from training.build import build_model_and_method, optimizer_factory, run_context
from training.config import OPTIMIZERS, DataConfig, ExperimentConfig, OptimizerConfig, RDAConfig, SGDConfig, TrainConfig
from training.data import CIFAR, DeviceBatches, Split
from training.loop import LoopSettings, Trainer

_SGD = SGDConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
# label -> (method config, optimizer config, index of the method's stage that is timed). The
# settings are the paper / release ones; they do not change a step's cost, only what it computes.
TRAIN_VARIANTS: dict[str, tuple[MethodConfig, OptimizerConfig, int]] = {
    "dense sgd": (DenseConfig(), _SGD, 0),
    "rda": (
        RDAMethodConfig(lam=1.3e-6, reweight="log"),
        RDAConfig(name="rda", lr=0.25, momentum_timescale=12.37, weight_decay=5e-4),
        0,
    ),
    "magnitude (masked)": (MagnitudeConfig(sparsity=0.9, rounds=1), _SGD, -1),  # fine-tuning: masks held
    "l0hc": (L0HCConfig(lam=5e-7), _SGD, 0),
    "dep_l0": (DepL0Config(lam=1e-6), _SGD, 0),
    # scored once, before the timed stage, on one image a class (a few steps' data must hold them)
    "grasp": (GraSPConfig(sparsity=0.9, samples_per_class=1), _SGD, -1),
}
# Every other method, by its name: its default config, with the optimizer it requires (else SGD),
# timed on its last stage (where masks are held, if any).
_COVERED = {cfg.name for cfg, _, _ in TRAIN_VARIANTS.values()}
TRAIN_VARIANTS |= {
    name: (
        cls.Config(),
        OPTIMIZERS[cls.requires_optimizer](name=cls.requires_optimizer) if cls.requires_optimizer else _SGD,
        -1,
    )
    for name, cls in METHODS.items()
    if name not in _COVERED
}
DENSE = "dense sgd"
# An A/A control: dense SGD again, in its own trainer and thread. Its ratio to dense is what the
# benchmark reads where there is no difference, so a method's difference smaller than the
# control's is not resolved (on the development machine dense has come out 4% slower than its copy).
CONTROL = "dense sgd (control)"
TRAIN_VARIANTS[CONTROL] = TRAIN_VARIANTS[DENSE]
REFERENCE_LOOP = "reference loop"


def synthetic_cifar(n: int, seed: int = 0) -> Split:
    """``n`` random CIFAR-shaped uint8 images with labels 0..9 in turn (speed does not depend on content)."""
    gen = torch.Generator().manual_seed(seed)
    return Split(
        torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
        torch.arange(n) % 10,  # every class in every epoch of 10 images or more (GraSP scores per class)
    )


def method_trainer(
    model_name: str,
    variant: str,
    split: Split,
    batch: int,
    device: torch.device,
    epochs: int,
    channels_last: bool,
    bf16: bool,
    compile: bool,
    seed: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Trainer:
    """A Trainer of ``variant`` on ``split`` for ``epochs`` epochs of its timed stage, built as the runner
    builds a run (``trainer.run()`` trains; ``trainer.history`` then holds each epoch's seconds)."""
    method_cfg, opt_cfg, stage_index = TRAIN_VARIANTS[variant]
    cfg = ExperimentConfig(
        name="bench",
        model=model_name,
        data=DataConfig(dataset="cifar10", batch_size=batch),
        train=TrainConfig(
            epochs=epochs, schedule=Schedule("constant"), bf16=bf16, channels_last=channels_last, compile=compile
        ),
        optimizer=opt_cfg,
        method=method_cfg,
    )
    spec = CIFAR["cifar10"]
    common = dict(device=device, mean=spec.mean, std=spec.std, channels_last=channels_last)
    train = DeviceBatches(split, batch, train=True, augment=True, seed=seed, **common)
    empty = DeviceBatches(Split(split.images[:0], split.labels[:0]), batch, train=False, augment=False, **common)
    torch.manual_seed(seed)
    ctx = run_context(device, {"input_shape": [3, 32, 32], "num_classes": 10}, train, seed)
    model, method = build_model_and_method(cfg, ctx, channels_last)
    stage = dataclasses.replace(method.stages(epochs)[stage_index], epochs=epochs)
    settings = LoopSettings(seed=seed, device=device, bf16=bf16, compile=compile, progress=False)
    return Trainer(
        model, method, [stage], train, empty, optimizer_factory(cfg, method), settings, on_epoch, log=lambda line: None
    )


def epochs_in_turns(trainers: dict[str, Callable[..., Trainer]]) -> dict[str, list[tuple[float, float]]]:
    """(seconds, wall-clock end) of each epoch of every trainer, the trainers taking turns one epoch at a
    time, so that a change in the machine's load affects them alike; round r runs them rotated by r
    (A B C, B C A, C A B, A B C, ...), so that none always runs first or last in a round. (On the
    development machine, in a fixed order, dense and the four variants after it ran up to a third
    slower than the rest of the round, for no reason in this code. What remains between two
    identical trainers is what the A/A control measures.)

    ``trainers[name](on_epoch=...)`` builds one. Each trains in its own thread, but only the one whose
    turn it is runs: at the end of each of its epochs (``on_epoch``) it hands the turn on and waits.
    """
    names = list(trainers)
    cond = threading.Condition()
    state: dict[str, Any] = {"turn": names[0], "slot": 0, "alive": set(names), "error": None}
    ends: dict[str, list[float]] = {name: [] for name in names}
    history: dict[str, list[tuple[float, float]]] = {}

    def slot_name(slot: int) -> str:  # the turns of round r are the names rotated by r
        r, i = divmod(slot, len(names))
        return names[(i + r) % len(names)]

    def hand_on(name: str, leaving: bool) -> None:  # with cond held
        if leaving:
            state["alive"].discard(name)
        state["turn"] = None
        if state["alive"]:
            slot = state["slot"] + 1
            while slot_name(slot) not in state["alive"]:
                slot += 1
            state["slot"], state["turn"] = slot, slot_name(slot)
        cond.notify_all()

    def worker(name: str) -> None:
        def on_epoch(epoch_state: dict[str, Any]) -> None:
            ends[name].append(time.time())
            with cond:
                hand_on(name, leaving=False)
                cond.wait_for(lambda: state["turn"] == name)

        with cond:
            cond.wait_for(lambda: state["turn"] == name)
        try:
            trainer = trainers[name](on_epoch=on_epoch)
            trainer.run()
            history[name] = [(row["seconds"], end) for row, end in zip(trainer.history, ends[name])]
        except BaseException as exc:  # re-raised by the caller
            state["error"] = state["error"] or exc
        finally:
            with cond:
                hand_on(name, leaving=True)

    threads = [threading.Thread(target=worker, args=(name,), daemon=True) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"] is not None:
        raise state["error"]
    return {name: history[name] for name in names}


def top_level_ops(fn: Callable[[], None]) -> Counter[str]:
    """The aten operators ``fn`` calls from Python and autograd (not those they call inside), by name:
    on a GPU, roughly the kernels launched."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: Counter[str] = Counter()
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            counts[event.name] += 1
    return counts


# Operators that only make a new view of a tensor's memory (or nothing): no kernel on any device.
VIEW_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "view alias as_strided expand unsqueeze squeeze select slice split split_with_sizes chunk unbind "
        "narrow t transpose permute reshape _reshape_alias detach lift_fresh empty empty_like"
    ).split()
)


def operators_per_step(
    model_name: str, variant: str, device: torch.device, batch: int = 10, **fast: Any
) -> dict[str, int]:
    """Top-level operators of one steady-state training step of ``variant``, by name: those of an epoch
    of 2 steps minus those of an epoch of 1 (what an epoch does once, at its start and end, cancels,
    and so does the first step's optimizer-state set-up). A batch of 10 holds every class once, as a
    method that scores on a class-balanced batch (GraSP) needs even in an epoch of one step."""
    split = synthetic_cifar(2 * batch)
    found = []
    for steps in (1, 2):
        part = Split(split.images[: steps * batch], split.labels[: steps * batch])
        found.append(top_level_ops(method_trainer(model_name, variant, part, batch, device, 1, **fast).run))
    return {op: found[1][op] - found[0][op] for op in sorted(found[1] | found[0]) if found[1][op] != found[0][op]}


def operator_table(per_variant: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Per variant: its operators per step, those that launch a kernel (views excluded), and what it
    adds to dense SGD's, in all and by operator."""

    def kernels(ops: dict[str, int]) -> int:
        return sum(n for op, n in ops.items() if op not in VIEW_OPS)

    dense = per_variant.get(DENSE, {})
    table = {}
    for variant, ops in per_variant.items():
        added = {op: ops.get(op, 0) - dense.get(op, 0) for op in sorted(ops.keys() | dense.keys())}
        table[variant] = {
            "operators": sum(ops.values()),
            "kernel_operators": kernels(ops),
            "added_operators": sum(ops.values()) - sum(dense.values()),
            "added_kernel_operators": kernels(ops) - kernels(dense),
            "added_by_operator": {op: n for op, n in added.items() if n},
        }
    return table


class PerImageAugment(Dataset):
    """uint8 images transformed one at a time, as a torchvision pipeline does it:
    RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize (without the PIL round trip)."""

    def __init__(self, split: Split, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.images, self.labels = split.images, split.labels
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(self.images[i], (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        x = x[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        return (x.float() / 255 - self.mean) / self.std, self.labels[i]


def reference_epochs(
    model_name: str, split: Split, batch: int, device: torch.device, epochs: int, workers: int, seed: int = 0
) -> list[float]:
    """Seconds of each epoch of a plain loop: DataLoader + per-image transforms, fp32, ``loss.item()`` per step."""
    torch.manual_seed(seed)
    model = build_model(model_name, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    spec = CIFAR["cifar10"]
    loader = DataLoader(
        PerImageAugment(split, spec.mean, spec.std),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    times = []
    model.train()
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        running = 0.0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def paired_ratio(dense_epochs: list[float], epochs: list[float]) -> dict[str, Any]:
    """A variant's speed relative to dense SGD, round by round: epoch k of each ran in the same round
    of turns, so dense's seconds over the variant's in that round cancel what the machine's speed did
    between rounds. The median of the rounds, with its distribution-free interval (order statistics)
    and that interval's exact coverage."""
    rounds = [d / t for d, t in zip(dense_epochs, epochs)]
    median, low, high, coverage = median_interval(rounds)
    return {"median": median, "interval": [low, high], "coverage": coverage, "rounds": rounds}


def _row(times: list[float], warmup: int, images: int) -> dict[str, Any]:
    timed = times[warmup:]
    median = statistics.median(timed)
    return {
        "images_per_s": images / median,
        "epoch_s": median,
        "epoch_s_timed": timed,
        "epoch_s_warmup": times[:warmup],
    }


def bench_train(
    device: torch.device,
    models: tuple[str, ...] = ("resnet56", "vgg16"),
    batch: int = 128,
    steps: int = 50,
    epochs: int = 3,
    warmup: int = 1,
    channels_last: bool = True,
    bf16: bool = True,
    compile: bool = False,
    workers: int = 4,
    variants: tuple[str, ...] | None = None,
    reference: bool = True,
    seed: int = 0,
    count_operators: bool = True,
) -> dict[str, Any]:
    """Training images/s of every variant (and the reference loop) on each model, median of ``epochs`` epochs.

    An epoch is ``steps`` batches of ``batch`` images; the variants take turns epoch by epoch
    (``epochs_in_turns``). The fast-path switches apply on CUDA only (as in the runner); what was
    used is recorded, with the 1-minute load average before and after each model's timing and,
    with ``count_operators``, the operators each variant runs per step (``operator_table``).
    """
    if epochs < 1 or warmup < 0 or steps < 1 or batch < 2:
        raise ValueError("need epochs >= 1, warmup >= 0, steps >= 1 and batch >= 2")
    variants = tuple(variants or TRAIN_VARIANTS)
    unknown = [v for v in variants if v not in TRAIN_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(TRAIN_VARIANTS)}")
    cuda = device.type == "cuda"
    fast = {"channels_last": cuda and channels_last, "bf16": cuda and bf16, "compile": cuda and compile}
    images = steps * batch
    split = synthetic_cifar(images, seed)
    results: dict[str, dict[str, Any]] = {}
    operators: dict[str, dict[str, Any]] = {}
    loads = [os.getloadavg()[0]]
    for model_name in models:
        epochs_of = epochs_in_turns(
            {
                v: functools.partial(
                    method_trainer, model_name, v, split, batch, device, warmup + epochs, seed=seed, **fast
                )
                for v in variants
            }
        )
        rows = {}
        for v, done in epochs_of.items():
            rows[v] = _row([seconds for seconds, _ in done], warmup, images)
            rows[v]["wall_clock"] = [done[warmup][1] - done[warmup][0], done[-1][1]]  # the timed epochs' span
        loads.append(os.getloadavg()[0])
        if count_operators:
            ops = {v: operators_per_step(model_name, v, device, **fast) for v in variants}
            operators[model_name] = operator_table(ops)
        if reference:
            rows[REFERENCE_LOOP] = _row(
                reference_epochs(model_name, split, batch, device, warmup + epochs, workers, seed), warmup, images
            )
        base = rows.get(DENSE, {}).get("images_per_s")
        for name, row in rows.items():
            row["ratio_to_dense"] = row["images_per_s"] / base if base else None
            if base and name != REFERENCE_LOOP:
                row["paired_ratio_to_dense"] = paired_ratio(rows[DENSE]["epoch_s_timed"], row["epoch_s_timed"])
        results[model_name] = rows
    return {
        "benchmark": "train",
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "steps": steps,
        "epochs": epochs,
        "warmup": warmup,
        "images_per_epoch": images,
        "fast_path": fast,
        "loader_workers": workers,
        "interleaved": "the variants take turns, one epoch each, round r in the order rotated by r; each epoch "
        "is timed on its own",
        "load_average_1min": [round(x, 2) for x in loads],
        "results": results,
        "operators_per_step": operators,
        "speedup_over_reference": {
            m: rows[DENSE]["images_per_s"] / rows[REFERENCE_LOOP]["images_per_s"]
            for m, rows in results.items()
            if DENSE in rows and REFERENCE_LOOP in rows
        },
    }


def format_train_table(result: dict[str, Any]) -> str:
    fast = ", ".join(k for k, v in result["fast_path"].items() if v) or "fp32, contiguous"
    lines = [
        f"train: {result['device']}, batch {result['batch']}, {result['steps']} steps per epoch, median of "
        f"{result['epochs']} epochs after {result['warmup']} warm-up; fast path: {fast}",
        f"{'model':<10} {'variant':<22} {'images/s':>10} {'epoch s':>9} {'x dense sgd':>12} "
        f"{'paired (interval, coverage)':>32}",
    ]
    for model, rows in result["results"].items():
        for name, row in rows.items():
            ratio = f"{row['ratio_to_dense']:.3f}" if row["ratio_to_dense"] is not None else "-"
            paired = row.get("paired_ratio_to_dense")
            pair = (
                f"{paired['median']:.3f} [{paired['interval'][0]:.3f}, {paired['interval'][1]:.3f}] "
                f"{paired['coverage']:.0%}"
                if paired
                else "-"
            )
            lines.append(
                f"{model:<10} {name:<22} {row['images_per_s']:>10.1f} {row['epoch_s']:>9.3f} {ratio:>12} {pair:>32}"
            )
    for model, table in result.get("operators_per_step", {}).items():
        added = ", ".join(f"{v} +{row['added_kernel_operators']}" for v, row in table.items() if v != DENSE)
        lines.append(f"{model}: operators (kernels) per step, dense sgd {table[DENSE]['kernel_operators']}; {added}")
    for model, speedup in result["speedup_over_reference"].items():
        lines.append(f"{model}: dense sgd is {speedup:.2f}x the reference loop's images/s")
    return "\n".join(lines)
