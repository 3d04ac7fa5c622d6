"""The GPU acceptance check: ``scripts/gpu_check.sh OUT`` (or ``python -m experiments.gpu_check OUT``).

On a CUDA machine, with no network and ``DATA_ROOT`` holding ``cifar-10-batches-py`` (the 19 MB
subset is enough), it runs one after the other, each as its own process:

1. ``tests/test_cuda.py`` (skipped without CUDA): bf16 + channels_last against fp32, the xRDA step
   on CUDA against the CPU in float64, device-resident batches and augmentation, surgery and export
   on CUDA, a killed run resumed on CUDA;
2. ``bench train`` of ResNet-56 and VGG-16 (dense SGD, xRDA, magnitude, L0-HC, Dep-L0 and the
   reference loop), then dense SGD and xRDA of ResNet-56 again under ``--compile``;
3. ``bench jobs --jobs 1 2 4 8``, ``bench optimizer``;
4. the ``smoke`` profile on CUDA, then ``bench latency`` of its channel-pruned runs (CPU and GPU);
5. one smoke config under ``torchrun --nproc_per_node 1`` (NCCL), and 2 where there are 2+ GPUs,
   each compared with the single-process run.

Everything lands in OUT: each step's JSON, ``gpu_check.log`` (every command and its output),
``summary.json`` and the summary table printed at the end. Exit status 0 when every step passed.
``OUT/bench_train.json`` is the throughput table the cost model reads: copy it to
``results/bench/gpu_train.json`` and commit it with the README's speed figures.

``--dry-run`` walks every step on the CPU with tiny sizes (two smoke configs, one step an
epoch, gloo instead of NCCL): it checks the script itself, and runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.files import FileRefused, describe_failure

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"
DDP_CONFIG = CONFIGS / "dense" / "subset" / "r20_dense_sgd.yaml"
DRY_SMOKE = [DDP_CONFIG, CONFIGS / "slimming" / "subset" / "r20_slimming_c50.yaml"]
TRAIN_VARIANTS = ["dense sgd", "rda", "magnitude (masked)", "l0hc", "dep_l0"]
# A process-group run against the single-process one: same global batch and synchronised batch norm,
# so they differ only by float rounding (and, on a GPU, nondeterministic kernels).
DDP_TOLERANCE = {"test_acc": 0.02, "train_loss_rel": 0.05}


@dataclass
class Step:
    name: str
    argv: list[str]
    summary: Callable[[Path], str] = lambda out: ""
    env: dict[str, str] = field(default_factory=dict)
    skip: str | None = None  # why the step does not run here


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def train_summary(name: str) -> Callable[[Path], str]:
    def summary(out: Path) -> str:
        result = _json(out / name)
        parts = []
        for model, rows in result["results"].items():
            dense = rows["dense sgd"]["images_per_s"]
            slowest = min(r["ratio_to_dense"] for name, r in rows.items() if name != "reference loop")
            speedup = result.get("speedup_over_reference", {}).get(model)
            parts.append(
                f"{model} {dense:.0f} img/s, slowest method {slowest:.2f}x dense"
                + (f", {speedup:.2f}x the reference loop" if speedup else "")
            )
        return "; ".join(parts)

    return summary


def jobs_summary(out: Path) -> str:
    rows = _json(out / "bench_jobs.json")["results"]
    return ", ".join(f"{r['processes']} job(s) {r['images_per_s']:.0f} img/s ({r['gain_over_one']:.2f}x)" for r in rows)


def optimizer_summary(out: Path) -> str:
    result = _json(out / "bench_optimizer.json")
    return f"xRDA step {result['ratio']:.2f}x an SGD step (median)"


def smoke_summary(out: Path) -> str:
    finished = sorted((out / "smoke").glob("*/seed*/metrics.json"))
    if not finished:
        raise AssertionError("no smoke run finished")
    return f"{len(finished)} run(s) finished"


def latency_summary(out: Path) -> str:
    runs = _json(out / "bench_latency.json")["runs"]
    parts = []
    for run in runs:
        speedups = {k: v["speedup"] for k, v in run["latency"].items() if isinstance(v, dict)}
        parts.append(f"{run['name']} " + " ".join(f"{k} {s:.2f}x" for k, s in speedups.items()))
    return "; ".join(parts) or "no channel-pruned run"


def compare_runs(single: Path, ddp: Path) -> dict[str, Any]:
    """Final metrics of the process-group run against the single-process run, within ``DDP_TOLERANCE``."""
    a, b = _json(single / "metrics.json"), _json(ddp / "metrics.json")
    acc = abs(a["test_acc"] - b["test_acc"])
    loss = abs(a["train_loss"] - b["train_loss"]) / max(abs(a["train_loss"]), 1e-12)
    return {
        "test_acc_diff": acc,
        "train_loss_rel_diff": loss,
        "within": acc <= DDP_TOLERANCE["test_acc"] and loss <= DDP_TOLERANCE["train_loss_rel"],
    }


def ddp_summary(nproc: int) -> Callable[[Path], str]:
    def summary(out: Path) -> str:
        single = out / "smoke" / DDP_CONFIG.stem / "seed0"
        found = compare_runs(single, out / f"ddp{nproc}" / DDP_CONFIG.stem / "seed0")
        (out / f"ddp{nproc}_comparison.json").write_text(json.dumps(found, indent=2) + "\n")
        if not found["within"]:
            raise AssertionError(f"differs from the single-process run beyond {DDP_TOLERANCE}: {found}")
        return f"test acc diff {found['test_acc_diff']:.4f}, train loss rel diff {found['train_loss_rel_diff']:.2e}"

    return summary


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def steps(out: Path, dry_run: bool, gpus: int, data_root: str | None) -> list[Step]:
    py = [sys.executable]
    device = "cpu" if dry_run else "cuda"
    bench = [*py, "-m", "experiments.bench"]
    tiny = ["--batch", "8", "--steps", "1", "--epochs", "1", "--warmup", "0"] if dry_run else []
    cpu_tiny = [*tiny, "--workers", "0", "--threads", "1"] if dry_run else []
    train = ["train", "--device", device, "--variants", *TRAIN_VARIANTS]
    models = ["--models", "resnet20"] if dry_run else ["--models", "resnet56", "vgg16"]
    no_data = None if data_root else "DATA_ROOT is not set (a folder holding cifar-10-batches-py)"
    if dry_run:
        smoke = [*map(str, DRY_SMOKE), "--set", "data.validation=10"]
        ddp_set = ["--set", "data.validation=10"]
    else:
        smoke, ddp_set = [str(CONFIGS)], []
    run = ["-m", "experiments.run", "--profile", "smoke", "--device", device, "--no-progress"]
    result = [
        Step("cuda tests", [*py, "-m", "pytest", "-q", "-rs", str(ROOT / "tests" / "test_cuda.py")]),
        Step(
            "bench train",
            [*bench, *train, *models, *cpu_tiny, "--json", str(out / "bench_train.json")],
            train_summary("bench_train.json"),
        ),
        Step(
            "bench train --compile",
            [
                *bench,
                "train",
                "--device",
                device,
                "--compile",
                "--variants",
                "dense sgd",
                "rda",
                "--no-reference",
                *(["--models", "resnet20"] if dry_run else ["--models", "resnet56"]),
                *cpu_tiny,
                "--json",
                str(out / "bench_train_compile.json"),
            ],
            train_summary("bench_train_compile.json"),
        ),
        Step(
            "bench jobs",
            [
                *bench,
                "jobs",
                "--device",
                device,
                *(["--jobs", "1", "2", "--model", "resnet20", *tiny, "--threads", "1"] if dry_run else []),
                *([] if dry_run else ["--jobs", "1", "2", "4", "8", "--steps", "20", "--epochs", "2"]),
                "--json",
                str(out / "bench_jobs.json"),
            ],
            jobs_summary,
        ),
        Step(
            "bench optimizer",
            [
                *bench,
                "optimizer",
                "--device",
                device,
                *(["--model", "resnet20", "--repeats", "2", "--warmup", "1", "--threads", "1"] if dry_run else []),
                "--json",
                str(out / "bench_optimizer.json"),
            ],
            optimizer_summary,
        ),
        Step(
            "smoke profile",
            [*py, *run[:2], *smoke, *run[2:], "--results", str(out / "smoke")],
            smoke_summary,
            skip=no_data,
        ),
        Step(
            "bench latency",
            [
                *bench,
                "latency",
                str(out / "smoke"),
                *(["--batch-sizes", "2", "--warmup", "0", "--repeats", "1", "--threads", "1"] if dry_run else []),
                "--json",
                str(out / "bench_latency.json"),
            ],
            latency_summary,
            skip=no_data,
        ),
    ]
    # gloo on the CPU (dry run); NCCL on GPUs: 1 process always, 2 where there are two GPUs
    for nproc in [1, 2] if dry_run else [n for n in (1, 2) if n <= gpus]:
        result.append(
            Step(
                f"torchrun x{nproc}",
                [
                    *py,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc_per_node",
                    str(nproc),
                    *run[:2],
                    str(DDP_CONFIG),
                    *run[2:],
                    *ddp_set,
                    "--results",
                    str(out / f"ddp{nproc}"),
                ],
                ddp_summary(nproc),
                env={"OMP_NUM_THREADS": "1"},
                skip=no_data,
            )
        )
    return result


def run_step(step: Step, out: Path, log: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step.name, "command": shlex.join(step.argv)}
    if step.skip:
        return {**row, "status": "skipped", "seconds": 0.0, "result": step.skip}
    log.write(f"\n$ {row['command']}\n")
    log.flush()
    start = time.perf_counter()
    proc = subprocess.run(step.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **step.env})
    row["seconds"] = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        return {**row, "status": "FAILED", "result": f"exit status {proc.returncode} (see gpu_check.log)"}
    try:
        return {**row, "status": "ok", "result": step.summary(out)}
    except Exception as exc:  # a missing or wrong record fails the step, not the whole check
        return {**row, "status": "FAILED", "result": f"{type(exc).__name__}: {exc}"}


def format_summary(rows: list[dict[str, Any]], header: str) -> str:
    width = max(len(r["step"]) for r in rows)
    lines = [header, f"{'step':<{width}}  {'status':<8} {'seconds':>8}  result"]
    for r in rows:
        lines.append(f"{r['step']:<{width}}  {r['status']:<8} {r['seconds']:>8.1f}  {r['result']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (created; its step records are replaced)")
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU with tiny sizes")
    args = p.parse_args(argv)
    gpus = cuda_devices()
    if not args.dry_run and gpus == 0:
        print("error: no CUDA device is visible; --dry-run walks the steps on the CPU", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    with open(out / "gpu_check.log", "w") as log:
        for step in steps(out, args.dry_run, gpus, os.environ.get("DATA_ROOT")):
            print(f"[gpu_check] {step.name} ...", flush=True)
            rows.append(run_step(step, out, log))
            print(f"[gpu_check] {step.name}: {rows[-1]['status']} ({rows[-1]['seconds']:.0f}s)", flush=True)
    import torch

    from training.records import atomic_write_json, environment

    env = environment(torch.device("cuda" if gpus and not args.dry_run else "cpu"))
    total = round(time.perf_counter() - start, 1)
    atomic_write_json(
        out / "summary.json", {"dry_run": args.dry_run, "gpus": gpus, "seconds": total, **env, "steps": rows}
    )
    header = f"gpu_check ({'dry run, ' if args.dry_run else ''}{env['device_name']}, {gpus} GPU(s)): {total:.0f}s"
    print()
    print(format_summary(rows, header))
    return 0 if all(r["status"] != "FAILED" for r in rows) else 1


def _main(argv: list[str] | None = None) -> int:
    """``main``, with a path it cannot read or write (a name too long, a file in the way) reported in one line."""
    try:
        return main(argv)
    except (OSError, FileRefused) as exc:
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_main())
