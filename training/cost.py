"""What a resolved config will cost on a GPU, before it runs (``python -m experiments.run --list``).

Images a run pushes through the model: every stage's epochs times the training images, plus one
forward pass over the evaluation images (validation split, and the test set each epoch or once)
counted as a third of a training image (a forward is about a third of forward + backward).
GPU-seconds are those images over a throughput: the measured images/s of the model and method on a
named GPU when ``results/bench/gpu_train.json`` holds them (a ``bench train --json`` record, which
``scripts/gpu_check.sh`` writes), else an **estimate**: training FLOPs (3x the forward FLOPs of the
dense model) at ``UTILISATION`` of the estimate GPU's bf16 dense peak. Small CIFAR networks keep a
large GPU far from its peak, so the estimate is rough; a measured table replaces it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import FULL_TRAIN_SIZES, ExperimentConfig, plan

ROOT = Path(__file__).resolve().parent.parent
THROUGHPUT = ROOT / "results" / "bench" / "gpu_train.json"
ESTIMATE_GPU = "H100 SXM"
PEAK_FLOPS = 989e12  # bf16 dense tensor-core peak of the H100 SXM (NVIDIA's data sheet)
UTILISATION = 0.05  # of that peak, for the estimate
TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 50_000}
INPUT_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "imagenet": (3, 224, 224)}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
# bench train's row for a method, where its name differs
BENCH_VARIANT = {"dense": "dense sgd", "magnitude": "magnitude (masked)"}


@dataclass(frozen=True)
class Cost:
    gpu_hours: float
    source: str  # "measured on <GPU>" or "estimate"


def images(cfg: ExperimentConfig) -> tuple[int, int]:
    """(training images, evaluation images) of one seed of a resolved config."""
    d = cfg.data
    train = FULL_TRAIN_SIZES[d.dataset] if d.max_train is None else min(d.max_train, FULL_TRAIN_SIZES[d.dataset])
    test = TEST_SIZES[d.dataset] if d.max_test is None else min(d.max_test, TEST_SIZES[d.dataset])
    epochs = sum(stage.epochs for stage in plan(cfg))
    tests = epochs if cfg.train.test_each_epoch else 1
    return epochs * (train - d.validation), epochs * d.validation + tests * test


@functools.cache
def forward_flops(model: str, dataset: str) -> int:
    """Dense multiply-add FLOPs (x2) of one forward pass of one image."""
    from models import build_model
    from pruning.accounting import layer_flops

    net = build_model(model, NUM_CLASSES[dataset])
    return sum(dense for dense, _ in layer_flops(net, INPUT_SHAPES[dataset]).values())


@functools.cache
def _table(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return {"gpu": record.get("provenance", {}).get("device_name", record.get("device")), **record}


def measured_rate(cfg: ExperimentConfig, path: Path = THROUGHPUT) -> tuple[float, str] | None:
    """Training images/s of the config's model and method (else its dense SGD) in the measured table."""
    table = _table(path)
    if table is None or cfg.model not in table["results"]:
        return None
    rows = table["results"][cfg.model]
    row = rows.get(BENCH_VARIANT.get(cfg.method.name, cfg.method.name)) or rows.get("dense sgd")
    return (row["images_per_s"], table["gpu"]) if row else None


def gpu_hours(cfg: ExperimentConfig, path: Path = THROUGHPUT) -> Cost:
    """GPU-hours of one seed of a resolved config on one GPU."""
    train, evaluation = images(cfg)
    equivalent = train + evaluation / 3
    measured = measured_rate(cfg, path)
    if measured is not None:
        rate, gpu = measured
        return Cost(equivalent / rate / 3600, f"measured on {gpu}")
    flops = 3 * forward_flops(cfg.model, cfg.data.dataset) * equivalent
    return Cost(flops / (PEAK_FLOPS * UTILISATION) / 3600, "estimate")


def describe_estimate() -> str:
    return (
        f"estimate: 3x forward FLOPs per training image at {100 * UTILISATION:g}% of the {ESTIMATE_GPU}'s "
        f"bf16 peak ({PEAK_FLOPS / 1e12:g} TFLOPS); a measured table ({THROUGHPUT.relative_to(ROOT)}) replaces it"
    )
