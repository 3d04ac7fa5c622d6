"""``jobs``: training throughput with N runs side by side on one device: for each N of
``--jobs``, N processes each time dense SGD (``train --variants "dense sgd"``) at once; the
total is the sum of their images/s, with the overlap of their timed windows (intersection over
union of wall-clock spans) to show how far they ran together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from experiments.bench.common import device_name
from experiments.bench.train import DENSE


def overlap(spans: list[list[float]]) -> float:
    """Intersection over union of wall-clock spans [start, end] (1 = all ran at the same time)."""
    inter = min(end for _, end in spans) - max(start for start, _ in spans)
    union = max(end for _, end in spans) - min(start for start, _ in spans)
    return max(inter, 0.0) / union if union > 0 else 1.0


def combine_jobs(per_process: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """Total images/s of processes that ran side by side (each a ``train`` result for dense SGD)."""
    rows = [r["results"][model][DENSE] for r in per_process]
    return {
        "processes": len(rows),
        "images_per_s": sum(r["images_per_s"] for r in rows),
        "per_process": [r["images_per_s"] for r in rows],
        "overlap": overlap([r["wall_clock"] for r in rows]),
    }


def bench_jobs(
    device: str,
    jobs: tuple[int, ...] = (1, 2, 4),
    model: str = "resnet56",
    batch: int = 128,
    steps: int = 50,
    epochs: int = 3,
    warmup: int = 2,
    threads: int | None = None,
) -> dict[str, Any]:
    """For each N in ``jobs``: N processes time dense SGD at once; totals and gain over one process."""
    results = []
    for n in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            paths = [Path(tmp) / f"job{k}.json" for k in range(n)]
            cmd = [
                sys.executable,
                "-m",
                "experiments.bench",
                "train",
                "--device",
                device,
                "--models",
                model,
                "--variants",
                DENSE,
                "--no-reference",
                "--batch",
                str(batch),
                "--steps",
                str(steps),
                "--epochs",
                str(epochs),
                "--warmup",
                str(warmup),
            ]
            if threads is not None:
                cmd += ["--threads", str(threads)]
            procs = [
                subprocess.Popen(
                    [*cmd, "--json", str(path)],
                    stdout=subprocess.DEVNULL,
                    env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
                )
                for path in paths
            ]
            if any(p.wait() != 0 for p in procs):
                raise RuntimeError(f"a benchmark process of the {n}-process round failed")
            results.append(combine_jobs([json.loads(path.read_text()) for path in paths], model))
    single = results[0]["images_per_s"] / results[0]["processes"] if results else None
    for row in results:
        row["gain_over_one"] = row["images_per_s"] / single if single else None
    return {
        "benchmark": "jobs",
        "device": device_name(torch.device(device)),
        "torch": torch.__version__,
        "model": model,
        "batch": batch,
        "steps": steps,
        "epochs": epochs,
        "warmup": warmup,
        "results": results,
    }


def format_jobs_table(result: dict[str, Any]) -> str:
    lines = [
        f"jobs: dense sgd, {result['model']}, batch {result['batch']}, {result['device']}",
        f"{'processes':>9} {'total images/s':>15} {'x one':>7} {'overlap':>8}",
    ]
    for row in result["results"]:
        lines.append(
            f"{row['processes']:>9} {row['images_per_s']:>15.1f} {row['gain_over_one']:>7.2f} {row['overlap']:>8.2f}"
        )
    return "\n".join(lines)
