"""Speed benchmarks: ``python -m experiments.bench SUBCOMMAND [options]``.

``optimizer``: one optimizer step on ResNet-56's parameters with random gradients, xRDA
(as method rda groups them: conv / linear weights penalised, the rest not; at half its
initial lr, so 0 < a < 1 and every line of the update runs) against torch's foreach SGD
with momentum and weight decay. Each optimizer has its own copy of the parameters; after
a warm-up they take turns, one step each per round (``--repeats`` rounds, the device
synchronised around each step), so a change of load on a shared machine hits all alike
and each step starts with the caches that the others left, as in training. The table
shows the median and the fastest step and both ratios to SGD ("ratio" in the JSON is the
ratio of medians for the paper's setting, "rda log l1"). Timings depend on the machine
and its load: report them with the device they were measured on. On a shared CPU use
``--threads 1``: with more threads than free cores every op waits at thread barriers.

``train``: images per second of training, per model (ResNet-56 and VGG-16 by default, batch
128, CIFAR-shaped random data): dense SGD, xRDA, magnitude pruning (its fine-tuning stage:
90% of the weights masked, masks held every step), L0-HC and Dep-L0, each built as a real run
builds it (``METHODS``, the runner's ``optimizer_factory``, the one ``Trainer``) and timed over
whole epochs of ``--steps`` batches from ``DeviceBatches`` (data and augmentation on the device;
on CUDA channels_last and bf16 autocast unless switched off, ``--compile`` optional). The test
set is empty, so an epoch is training plus the per-epoch hooks. Beside them, a plain reference
loop as pruning code usually has it: a DataLoader over the same images, random crop and flip
done per image in Python, fp32, contiguous memory, the loss read back every step. The first
``--warmup`` epochs (torch.compile, cuDNN autotuning, loader start-up) are not timed; the table
shows the median epoch's images/s, the ratio to dense SGD, and the speed-up of dense SGD over
the reference loop.

``latency``: inference latency of channel-pruned runs (network slimming, L0-HC, Dep-L0), again
and on a quiet machine: each finished run's exported model is rebuilt from its checkpoint
(``experiments.run.load_exported``) and timed in turns against the dense architecture it was
shrunk from (``pruning.latency.pruned_vs_dense``), with more repeats than the measurement at the
end of a run, which may have shared the machine with other runs.

``jobs``: training throughput with N runs side by side on one device: for each N of
``--jobs``, N processes each time dense SGD (``train --variants "dense sgd"``) at once; the
total is the sum of their images/s, with the overlap of their timed windows (intersection over
union of wall-clock spans) to show how far they ran together.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from experiments import config as C
from experiments.data import CIFAR, DeviceBatches, Split
from experiments.run import load_exported, optimizer_factory
from experiments.train import LoopSettings, Trainer
from models import build_model
from optim.rda import RDA
from pruning import METHODS
from pruning.base import MethodConfig, Schedule
from pruning.dense import DenseConfig
from pruning.dep_l0 import DepL0Config
from pruning.latency import pruned_vs_dense
from pruning.l0 import L0HCConfig
from pruning.magnitude import MagnitudeConfig
from pruning.rda import RDAMethod, RDAMethodConfig

# The paper's ResNet-56 settings (lr 0.25, tau 12.37, lam 1.3e-6, M 500, wd 5e-4).
RDA_OPTIONS = dict(lr=0.25, momentum_timescale=12.37, weight_decay=5e-4)
RDA_VARIANTS: dict[str, RDAMethodConfig] = {
    "rda log l1": RDAMethodConfig(lam=1.3e-6, reweight="log"),
    "rda plain l1": RDAMethodConfig(lam=1.3e-6, reweight="none"),
    "rda log kernel": RDAMethodConfig(lam=1.3e-6, reweight="log", group="kernel"),
    "rda log channel group-prox": RDAMethodConfig(lam=1.3e-6, reweight="log", group="channel", prox="group"),
}
SGD = "sgd momentum (foreach)"
REFERENCE = "rda log l1"  # the paper's default, compared with SGD


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(steps: dict[str, Callable[[], None]], device: torch.device, repeats: int,
               warmup: int) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` calls of every step, after ``warmup`` untimed ones.

    The steps take turns (one call of each per round), so a change in the machine's load
    during the run affects all of them alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _model_with_grads(model: str, device: torch.device, seed: int) -> torch.nn.Module:
    """The model (same weights for every seed) with fixed random gradients: a step's cost does not depend on them."""
    torch.manual_seed(seed)
    net = build_model(model, 10).to(device)
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return net


def bench_optimizer(device: torch.device, repeats: int = 50, warmup: int = 5, model: str = "resnet56",
                    seed: int = 0) -> dict[str, Any]:
    """Per-step times (ms) of SGD and the xRDA variants, each on its own copy of ``model``'s parameters."""
    sgd_net = _model_with_grads(model, device, seed)
    optimizers = {SGD: torch.optim.SGD(sgd_net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True)}
    for name, cfg in RDA_VARIANTS.items():
        net = _model_with_grads(model, device, seed)
        optimizers[name] = opt = RDA(RDAMethod(cfg).param_groups(net), **RDA_OPTIONS)
        for group in opt.param_groups:  # mid-schedule: 0 < a < 1, the general update
            group["lr"] = RDA_OPTIONS["lr"] / 2
    times = time_steps({name: opt.step for name, opt in optimizers.items()}, device, repeats, warmup)
    rows = {name: {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t)} for name, t in times.items()}
    for row in rows.values():
        row["ratio_to_sgd"] = row["median_ms"] / rows[SGD]["median_ms"]
        row["ratio_min_to_sgd"] = row["min_ms"] / rows[SGD]["min_ms"]
    params = list(sgd_net.parameters())
    return {
        "benchmark": "optimizer", "model": model, "device": device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats, "warmup": warmup,
        "tensors": len(params), "parameters": sum(p.numel() for p in params),
        "results": rows, "reference": REFERENCE, "ratio": rows[REFERENCE]["ratio_to_sgd"],
        "ratio_min": rows[REFERENCE]["ratio_min_to_sgd"],
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{result['benchmark']}: {result['model']}, {result['tensors']} tensors, "
             f"{result['parameters']:,} parameters, {result['device']}, median of {result['repeats']} steps",
             f"{'optimizer':<28} {'median ms':>10} {'min ms':>9} {'x sgd (median)':>15} {'x sgd (min)':>12}"]
    for name, row in result["results"].items():
        lines.append(f"{name:<28} {row['median_ms']:>10.3f} {row['min_ms']:>9.3f} {row['ratio_to_sgd']:>15.2f} "
                     f"{row['ratio_min_to_sgd']:>12.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- training throughput

_SGD = C.SGDConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
# label -> (method config, optimizer config, index of the method's stage that is timed). The
# settings are the paper / release ones; they do not change a step's cost, only what it computes.
TRAIN_VARIANTS: dict[str, tuple[MethodConfig, C.OptimizerConfig, int]] = {
    "dense sgd": (DenseConfig(), _SGD, 0),
    "rda": (RDAMethodConfig(lam=1.3e-6, reweight="log"),
            C.RDAConfig(name="rda", lr=0.25, momentum_timescale=12.37, weight_decay=5e-4), 0),
    "magnitude (masked)": (MagnitudeConfig(sparsity=0.9, rounds=1), _SGD, -1),  # fine-tuning: masks held
    "l0hc": (L0HCConfig(lam=5e-7), _SGD, 0),
    "dep_l0": (DepL0Config(lam=1e-6), _SGD, 0),
}
DENSE = "dense sgd"
REFERENCE_LOOP = "reference loop"


def synthetic_cifar(n: int, seed: int = 0) -> Split:
    """``n`` random CIFAR-shaped uint8 images with labels in 0..9 (speed does not depend on content)."""
    gen = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
                 torch.randint(0, 10, (n,), generator=gen))


def method_epochs(model_name: str, variant: str, split: Split, batch: int, device: torch.device, epochs: int,
                  channels_last: bool, bf16: bool, compile: bool, seed: int = 0) -> list[float]:
    """Seconds of each epoch of ``variant`` on ``split``, through the runner's wiring and the one Trainer."""
    method_cfg, opt_cfg, stage_index = TRAIN_VARIANTS[variant]
    cfg = C.ExperimentConfig(name="bench", model=model_name, data=C.DataConfig(dataset="cifar10", batch_size=batch),
                             train=C.TrainConfig(epochs=epochs, schedule=Schedule("constant"), bf16=bf16,
                                                 channels_last=channels_last, compile=compile),
                             optimizer=opt_cfg, method=method_cfg)
    spec = CIFAR["cifar10"]
    common = dict(device=device, mean=spec.mean, std=spec.std, channels_last=channels_last)
    train = DeviceBatches(split, batch, train=True, augment=True, seed=seed, **common)
    empty = DeviceBatches(Split(split.images[:0], split.labels[:0]), batch, train=False, augment=False, **common)
    torch.manual_seed(seed)
    model = build_model(model_name, 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = METHODS[method_cfg.name](method_cfg)
    model = method.prepare(model)
    stage = dataclasses.replace(method.stages(epochs)[stage_index], epochs=epochs)
    settings = LoopSettings(seed=seed, device=device, bf16=bf16, compile=compile, progress=False)
    trainer = Trainer(model, method, [stage], train, empty, optimizer_factory(cfg, method), settings,
                      log=lambda line: None)
    trainer.run()  # each epoch ends with a host sync (the epoch's loss is read), so its time is complete
    return [row["seconds"] for row in trainer.history]


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
        x = x[:, top:top + 32, left:left + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        return (x.float() / 255 - self.mean) / self.std, self.labels[i]


def reference_epochs(model_name: str, split: Split, batch: int, device: torch.device, epochs: int, workers: int,
                     seed: int = 0) -> list[float]:
    """Seconds of each epoch of a plain loop: DataLoader + per-image transforms, fp32, ``loss.item()`` per step."""
    torch.manual_seed(seed)
    model = build_model(model_name, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    spec = CIFAR["cifar10"]
    loader = DataLoader(PerImageAugment(split, spec.mean, spec.std), batch_size=batch, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    times = []
    model.train()
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        running = 0.0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _row(times: list[float], warmup: int, images: int) -> dict[str, Any]:
    timed = times[warmup:]
    median = statistics.median(timed)
    return {"images_per_s": images / median, "epoch_s": median, "epoch_s_timed": timed,
            "epoch_s_warmup": times[:warmup]}


def bench_train(device: torch.device, models: tuple[str, ...] = ("resnet56", "vgg16"), batch: int = 128,
                steps: int = 50, epochs: int = 3, warmup: int = 1, channels_last: bool = True, bf16: bool = True,
                compile: bool = False, workers: int = 4, variants: tuple[str, ...] | None = None,
                reference: bool = True, seed: int = 0) -> dict[str, Any]:
    """Training images/s of every variant (and the reference loop) on each model, median of ``epochs`` epochs.

    An epoch is ``steps`` batches of ``batch`` images. The fast-path switches apply on CUDA only
    (as in the runner); what was used is recorded.
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
    for model_name in models:
        rows = {}
        for variant in variants:
            rows[variant] = _row(method_epochs(model_name, variant, split, batch, device, warmup + epochs,
                                               seed=seed, **fast), warmup, images)
            end = time.time()  # the timed epochs were the last ones: their wall-clock span
            rows[variant]["wall_clock"] = [end - sum(rows[variant]["epoch_s_timed"]), end]
        if reference:
            rows[REFERENCE_LOOP] = _row(reference_epochs(model_name, split, batch, device, warmup + epochs, workers,
                                                         seed), warmup, images)
        base = rows.get(DENSE, {}).get("images_per_s")
        for row in rows.values():
            row["ratio_to_dense"] = row["images_per_s"] / base if base else None
        results[model_name] = rows
    return {
        "benchmark": "train", "device": device_name(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch": batch, "steps": steps, "epochs": epochs, "warmup": warmup,
        "images_per_epoch": images, "fast_path": fast, "loader_workers": workers, "results": results,
        "speedup_over_reference": {m: rows[DENSE]["images_per_s"] / rows[REFERENCE_LOOP]["images_per_s"]
                                   for m, rows in results.items() if DENSE in rows and REFERENCE_LOOP in rows},
    }


def format_train_table(result: dict[str, Any]) -> str:
    fast = ", ".join(k for k, v in result["fast_path"].items() if v) or "fp32, contiguous"
    lines = [f"train: {result['device']}, batch {result['batch']}, {result['steps']} steps per epoch, median of "
             f"{result['epochs']} epochs after {result['warmup']} warm-up; fast path: {fast}",
             f"{'model':<10} {'variant':<22} {'images/s':>10} {'epoch s':>9} {'x dense sgd':>12}"]
    for model, rows in result["results"].items():
        for name, row in rows.items():
            ratio = f"{row['ratio_to_dense']:.3f}" if row["ratio_to_dense"] is not None else "-"
            lines.append(f"{model:<10} {name:<22} {row['images_per_s']:>10.1f} {row['epoch_s']:>9.3f} {ratio:>12}")
    for model, speedup in result["speedup_over_reference"].items():
        lines.append(f"{model}: dense sgd is {speedup:.2f}x the reference loop's images/s")
    return "\n".join(lines)


# ---------------------------------------------------------------- several runs side by side


def overlap(spans: list[list[float]]) -> float:
    """Intersection over union of wall-clock spans [start, end] (1 = all ran at the same time)."""
    inter = min(end for _, end in spans) - max(start for start, _ in spans)
    union = max(end for _, end in spans) - min(start for start, _ in spans)
    return max(inter, 0.0) / union if union > 0 else 1.0


def combine_jobs(per_process: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """Total images/s of processes that ran side by side (each a ``train`` result for dense SGD)."""
    rows = [r["results"][model][DENSE] for r in per_process]
    return {"processes": len(rows), "images_per_s": sum(r["images_per_s"] for r in rows),
            "per_process": [r["images_per_s"] for r in rows], "overlap": overlap([r["wall_clock"] for r in rows])}


def bench_jobs(device: str, jobs: tuple[int, ...] = (1, 2, 4), model: str = "resnet56", batch: int = 128,
               steps: int = 50, epochs: int = 3, warmup: int = 2, threads: int | None = None) -> dict[str, Any]:
    """For each N in ``jobs``: N processes time dense SGD at once; totals and gain over one process."""
    results = []
    for n in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            paths = [Path(tmp) / f"job{k}.json" for k in range(n)]
            cmd = [sys.executable, "-m", "experiments.bench", "train", "--device", device, "--models", model,
                   "--variants", DENSE, "--no-reference", "--batch", str(batch), "--steps", str(steps),
                   "--epochs", str(epochs), "--warmup", str(warmup)]
            if threads is not None:
                cmd += ["--threads", str(threads)]
            procs = [subprocess.Popen([*cmd, "--json", str(path)], stdout=subprocess.DEVNULL,
                                      env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
                     for path in paths]
            if any(p.wait() != 0 for p in procs):
                raise RuntimeError(f"a benchmark process of the {n}-process round failed")
            results.append(combine_jobs([json.loads(path.read_text()) for path in paths], model))
    single = results[0]["images_per_s"] / results[0]["processes"] if results else None
    for row in results:
        row["gain_over_one"] = row["images_per_s"] / single if single else None
    return {"benchmark": "jobs", "device": device_name(torch.device(device)), "torch": torch.__version__,
            "model": model, "batch": batch, "steps": steps, "epochs": epochs, "warmup": warmup, "results": results}


def format_jobs_table(result: dict[str, Any]) -> str:
    lines = [f"jobs: dense sgd, {result['model']}, batch {result['batch']}, {result['device']}",
             f"{'processes':>9} {'total images/s':>15} {'x one':>7} {'overlap':>8}"]
    for row in result["results"]:
        lines.append(f"{row['processes']:>9} {row['images_per_s']:>15.1f} {row['gain_over_one']:>7.2f} "
                     f"{row['overlap']:>8.2f}")
    return "\n".join(lines)


def bench_latency(run_dirs: list[Path], batch_sizes: list[int], warmup: int, repeats: int) -> dict[str, Any]:
    """``pruned_vs_dense`` of every channel-pruned run among ``run_dirs`` (others are listed as skipped)."""
    runs, skipped = [], []
    for run_dir in run_dirs:
        final, method, metrics = load_exported(run_dir, torch.device("cpu"))
        reference = getattr(method, "reference", None)
        if reference is None:  # not a channel-pruning run: nothing physically smaller to time
            skipped.append(str(run_dir))
            continue
        shape = tuple(metrics["input_shape"])
        runs.append({"run": str(run_dir), "name": metrics["name"], "test_acc": metrics["test_acc"],
                     "params_physical": metrics["params_physical"],
                     "params_physical_dense": sum(p.numel() for p in reference.parameters()),
                     "flops_physical": metrics["flops_physical"],
                     "latency": pruned_vs_dense(final, reference, shape, batch_sizes, warmup, repeats)})
    return {"device": device_name(torch.device("cpu")), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "warmup": warmup, "repeats": repeats, "runs": runs, "skipped": skipped}


def latency_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders as given, and below a results folder every finished run whose metrics have a latency."""
    dirs = []
    for path in paths:
        if (path / "metrics.json").exists():
            dirs.append(path)
            continue
        for metrics in sorted(path.glob("*/seed*/metrics.json")):
            if "latency" in json.loads(metrics.read_text()):
                dirs.append(metrics.parent)
    return dirs


def format_latency_table(result: dict[str, Any]) -> str:
    keys = sorted({k for run in result["runs"] for k in run["latency"] if k != "load_average"},
                  key=lambda k: (k.split("_batch")[0], int(k.split("_batch")[1])))
    lines = [f"latency: pruned against dense architecture, median of {result['repeats']} passes in turns; "
             f"{result['device']}",
             f"{'run':48s} {'params':>8s} " + " ".join(f"{k + ' ms (x)':>24s}" for k in keys)]
    for run in result["runs"]:
        cells = []
        for k in keys:
            t = run["latency"][k]
            cells.append(f"{t['pruned']['latency_median_ms']:.2f}/{t['dense']['latency_median_ms']:.2f} "
                         f"({t['speedup']:.2f}x)")
        share = run["params_physical"] / run["params_physical_dense"]
        lines.append(f"{run['name'][:48]:48s} {100 * share:7.1f}% " + " ".join(f"{c:>24s}" for c in cells))
    if result["skipped"]:
        lines.append(f"skipped (not channel-pruned): {len(result['skipped'])} run(s)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("optimizer", help="one xRDA step against one foreach SGD-momentum step")
    opt.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    opt.add_argument("--repeats", type=int, default=50, help="timed steps per optimizer")
    opt.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    opt.add_argument("--model", default="resnet56")
    opt.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    opt.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    # --device is required: the figures mean nothing without knowing which device produced them.
    tr = sub.add_parser("train", help="training images/s of every method against dense SGD and a reference loop")
    tr.add_argument("--device", required=True, choices=["cpu", "cuda"])
    tr.add_argument("--models", nargs="+", default=["resnet56", "vgg16"])
    tr.add_argument("--variants", nargs="+", default=None, choices=list(TRAIN_VARIANTS), metavar="VARIANT",
                    help=f"default: all ({', '.join(TRAIN_VARIANTS)})")
    tr.add_argument("--batch", type=int, default=128)
    tr.add_argument("--steps", type=int, default=50, help="batches per epoch")
    tr.add_argument("--epochs", type=int, default=3, help="timed epochs (the median is reported)")
    tr.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    tr.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="CUDA: contiguous memory")
    tr.add_argument("--no-bf16", dest="bf16", action="store_false", help="CUDA: fp32 instead of bf16 autocast")
    tr.add_argument("--compile", action="store_true", help="CUDA: torch.compile the model (warm-up not timed)")
    tr.add_argument("--workers", type=int, default=4, help="DataLoader processes of the reference loop")
    tr.add_argument("--no-reference", dest="reference", action="store_false", help="skip the reference loop")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    tr.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    lt = sub.add_parser("latency", help="CPU latency of channel-pruned runs' exported models against dense")
    lt.add_argument("runs", nargs="+", type=Path, help="run folders (<results>/<experiment>/seed<k>) or results "
                    "folders (every finished run below that has a latency entry)")
    lt.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 128])
    lt.add_argument("--warmup", type=int, default=10, help="untimed passes of each model first")
    lt.add_argument("--repeats", type=int, default=50, help="timed passes of each model, in turns")
    lt.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    lt.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    jb = sub.add_parser("jobs", help="total training images/s of N runs side by side on one device")
    jb.add_argument("--device", required=True, choices=["cpu", "cuda"])
    jb.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4], help="numbers of processes to try")
    jb.add_argument("--model", default="resnet56")
    jb.add_argument("--batch", type=int, default=128)
    jb.add_argument("--steps", type=int, default=50)
    jb.add_argument("--epochs", type=int, default=3)
    jb.add_argument("--warmup", type=int, default=2)
    jb.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    jb.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is available", file=sys.stderr)
        return 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.command == "optimizer":
        result = bench_optimizer(torch.device(args.device), args.repeats, args.warmup, args.model)
        print(format_table(result))
    elif args.command == "latency":
        result = bench_latency(latency_run_dirs(args.runs), args.batch_sizes, args.warmup, args.repeats)
        print(format_latency_table(result))
    elif args.command == "train":
        result = bench_train(torch.device(args.device), tuple(args.models), args.batch, args.steps, args.epochs,
                             args.warmup, args.channels_last, args.bf16, args.compile, args.workers,
                             tuple(args.variants) if args.variants else None, args.reference)
        print(format_train_table(result))
    else:
        result = bench_jobs(args.device, tuple(args.jobs), args.model, args.batch, args.steps, args.epochs,
                            args.warmup, args.threads)
        print(format_jobs_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
