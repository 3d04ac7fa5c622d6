"""``latency``: inference latency of channel-pruned runs (network slimming, L0-HC, Dep-L0), again
and on a quiet machine: each finished run's exported model is rebuilt from its checkpoint
(``experiments.run.load_exported``) and timed in turns against the dense architecture it was
shrunk from (``pruning.latency.pruned_vs_dense``), with more repeats than the measurement at the
end of a run, which may have shared the machine with other runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from experiments.bench.common import device_name
from pruning.latency import pruned_vs_dense
from training.record_schema import RecordError, read_metrics, skip
from training.runner import load_exported


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
        runs.append(
            {
                "run": str(run_dir),
                "name": metrics["name"],
                "test_acc": metrics["test_acc"],
                "params_physical": metrics["params_physical"],
                "params_physical_dense": sum(p.numel() for p in reference.parameters()),
                "flops_physical": metrics["flops_physical"],
                "latency": pruned_vs_dense(final, reference, shape, batch_sizes, warmup, repeats),
            }
        )
    return {
        "device": device_name(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "warmup": warmup,
        "repeats": repeats,
        "runs": runs,
        "skipped": skipped,
    }


def latency_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders as given, and below a results folder every finished run whose metrics have a latency."""
    dirs = []
    for path in paths:
        if (path / "metrics.json").exists():
            dirs.append(path)
            continue
        for metrics in sorted(path.glob("*/seed*/metrics.json")):
            try:
                has_latency = "latency" in read_metrics(metrics)
            except RecordError as exc:  # named, and left out
                skip(exc)
                continue
            if has_latency:
                dirs.append(metrics.parent)
    return dirs


def format_latency_table(result: dict[str, Any]) -> str:
    keys = sorted(
        {k for run in result["runs"] for k in run["latency"] if k != "load_average"},
        key=lambda k: (k.split("_batch")[0], int(k.split("_batch")[1])),
    )
    lines = [
        f"latency: pruned against dense architecture, median of {result['repeats']} passes in turns; "
        f"{result['device']}",
        f"{'run':48s} {'params':>8s} " + " ".join(f"{k + ' ms (x)':>24s}" for k in keys),
    ]
    for run in result["runs"]:
        cells = []
        for k in keys:
            t = run["latency"][k]
            cells.append(
                f"{t['pruned']['latency_median_ms']:.2f}/{t['dense']['latency_median_ms']:.2f} ({t['speedup']:.2f}x)"
            )
        share = run["params_physical"] / run["params_physical_dense"]
        lines.append(f"{run['name'][:48]:48s} {100 * share:7.1f}% " + " ".join(f"{c:>24s}" for c in cells))
    if result["skipped"]:
        lines.append(f"skipped (not channel-pruned): {len(result['skipped'])} run(s)")
    return "\n".join(lines)
