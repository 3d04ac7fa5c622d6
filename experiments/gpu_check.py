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
5. the process-group checks, on one smoke config (``DDP_CONFIG``):

   - it runs as a single process ``SINGLE_RUNS`` times (5 on a GPU, 2 on the CPU), then under
     ``torchrun --nproc_per_node 1``; every quantity the run records (the checkpoint's weights and
     optimizer state, each history column but the epoch's seconds, the final metrics) is compared
     with the first single-process run. The tolerance of each quantity is ``SPREAD_FACTOR`` x its
     spread over the single-process runs (largest difference between two of them), measured here
     and written beside it in ``ddp1_comparison.json``. On the CPU the single-process runs must be
     bit-identical (spread 0), so torchrun x1 must equal them bit for bit. All runs have the same
     ``OMP_NUM_THREADS=1``: the number of CPU threads changes the order of float sums, and with it
     the run (torchrun sets 1 thread by default when it starts several processes, a plain run
     takes every core).
   - with 2 processes (gloo on the CPU; NCCL where there are 2+ GPUs), ``experiments.ddp_gradient``:
     one step's gradient averaged over the processes against the full batch's gradient in one
     process, in float64, tolerance 1e-8 of each tensor's scale (rounding of the sums is below
     1e-10; see that module). End accuracy is not compared: it cannot tell rounding from an error.

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

from experiments.arguments import one_line_failures
from reporting.bench import CONTROL, DENSE
from training.records import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"
DDP_CONFIG = CONFIGS / "dense" / "subset" / "r20_dense_sgd.yaml"
DRY_SMOKE = [DDP_CONFIG, CONFIGS / "slimming" / "subset" / "r20_slimming_c50.yaml"]
TRAIN_VARIANTS = ["dense sgd", "rda", "magnitude (masked)", "l0hc", "dep_l0"]
# torchrun x1 against the plain run: the same computation, so it may differ only as much as two plain
# runs of the same config differ (nothing on the CPU; nondeterministic kernels on a GPU). The spread
# (range) of SINGLE_RUNS runs is measured; a quantity passes within SPREAD_FACTOR x that spread. For
# Gaussian run-to-run noise a further run lands beyond 4x the range of 5 runs with probability 0.09%
# (simulated; 3 runs and 2x: 9%), so a correct launcher fails by chance about once in a thousand.
SINGLE_RUNS = {"cpu": 2, "cuda": 5}
SPREAD_FACTOR = 4.0
# Accuracies move by whole images: where the runs vary at all, their spread is at least one image.
ACCURACY_SETS = {"train_acc": "train_size", "val_acc": "validation_size", "test_acc": "test_size"}
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "sparsity", "steps")


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
            dense = rows[DENSE]["images_per_s"]
            # the methods only: not dense itself, its A/A control or the unoptimised reference loop
            methods = {n: r["ratio_to_dense"] for n, r in rows.items() if n not in (DENSE, CONTROL, "reference loop")}
            slowest = min(methods, key=methods.__getitem__) if methods else None
            speedup = result.get("speedup_over_reference", {}).get(model)
            control = rows.get(CONTROL, {}).get("ratio_to_dense")
            parts.append(
                f"{model} {dense:.0f} img/s"
                + (f", slowest method {slowest} {methods[slowest]:.2f}x dense" if slowest else "")
                + (f" (A/A control {control:.2f}x)" if control is not None else "")
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


def _tensors(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every floating tensor of a nested checkpoint, by its path."""
    import torch

    if torch.is_tensor(tree):
        return {prefix: tree} if tree.is_floating_point() else {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else []
    return {k: v for key, value in items for k, v in _tensors(value, f"{prefix}/{key}").items()}


def run_quantities(run_dir: Path) -> dict[str, Any]:
    """What a finished run records, as comparable quantities: the checkpoint's tensors (model,
    optimizer and method state), each history column but the epoch's seconds, the final metrics."""
    import torch

    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    metrics = _json(run_dir / "metrics.json")
    found: dict[str, Any] = {
        "checkpoint": _tensors({k: state[k] for k in ("model", "optimizers", "method")}),
        "history": [{k: v for k, v in row.items() if k != "seconds"} for row in state["history"]],
    }
    found.update({f"metrics {k}": metrics.get(k) for k in METRICS})
    return found


def distance(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Per quantity, the largest |a - b| (checkpoint tensors: over every entry; history: over every
    epoch, per column). A quantity missing on one side, or of a different shape, is infinitely far."""
    out: dict[str, float] = {}
    inf = float("inf")
    ta, tb = a["checkpoint"], b["checkpoint"]
    worst = 0.0 if ta.keys() == tb.keys() else inf
    for k in ta.keys() & tb.keys():
        worst = max(worst, float((ta[k] - tb[k]).abs().max()) if ta[k].shape == tb[k].shape else inf)
    out["checkpoint tensors"] = worst
    ha, hb = a["history"], b["history"]
    for key in sorted({k for row in ha + hb for k in row}):
        col_a, col_b = [r.get(key) for r in ha], [r.get(key) for r in hb]
        if len(col_a) != len(col_b):
            out[f"history {key}"] = inf
            continue
        diffs = [
            0.0 if x == y else abs(x - y) if isinstance(x, (int, float)) and isinstance(y, (int, float)) else inf
            for x, y in zip(col_a, col_b)
        ]
        out[f"history {key}"] = max(diffs, default=0.0)
    for key in (k for k in a if k.startswith("metrics ")):
        x, y = a[key], b[key]
        out[key] = 0.0 if x == y else abs(x - y) if x is not None and y is not None else inf
    return out


def compare_runs(singles: list[Path], ddp: Path, exact: bool) -> dict[str, Any]:
    """The torchrun x1 run against the first single-process run, each quantity within
    ``SPREAD_FACTOR`` x its spread over the single-process runs; ``exact`` (the CPU) also requires
    the single-process runs to agree bit for bit, so the criterion is equality."""
    runs = [run_quantities(d) for d in singles]
    found = distance(runs[0], run_quantities(ddp))
    spread = {k: 0.0 for k in found}
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            for k, v in distance(runs[i], runs[j]).items():
                spread[k] = max(spread.get(k, 0.0), v)
    nondeterministic = sorted(k for k, v in spread.items() if v > 0)
    if nondeterministic:
        sizes = _json(singles[0] / "metrics.json")
        for k in spread:
            acc = next((a for a in ACCURACY_SETS if k.endswith(f" {a}")), None)
            if acc and sizes.get(ACCURACY_SETS[acc]):
                spread[k] = max(spread[k], 1.0 / sizes[ACCURACY_SETS[acc]])
    rows = {
        k: {
            "torchrun_vs_single": found[k],
            "single_spread": spread[k],
            "tolerance": SPREAD_FACTOR * spread[k],
            "within": found[k] <= SPREAD_FACTOR * spread[k],
        }
        for k in found
    }
    return {
        "single_runs": len(runs),
        "criterion": (
            "bit for bit (CPU: the single-process runs must agree exactly)"
            if exact
            else f"|torchrun - single| <= {SPREAD_FACTOR} x the spread of {len(runs)} single-process runs"
        ),
        "quantities": rows,
        "nondeterministic": nondeterministic,
        "within": all(r["within"] for r in rows.values()) and not (exact and nondeterministic),
    }


def ddp1_summary(singles: list[Path], ddp: Path, exact: bool) -> Callable[[Path], str]:
    def summary(out: Path) -> str:
        found = compare_runs(singles, ddp, exact)
        atomic_write_json(out / "ddp1_comparison.json", found)
        if exact and found["nondeterministic"]:
            raise AssertionError(f"two single-process CPU runs differ in {found['nondeterministic']}")
        beyond = {k: v for k, v in found["quantities"].items() if not v["within"]}
        if beyond:
            raise AssertionError(f"differs from the single-process run beyond tolerance: {beyond}")
        if not found["nondeterministic"]:
            n = len(found["quantities"])
            return f"equal bit for bit to {found['single_runs']} single-process runs ({n} quantities)"
        test = found["quantities"]["metrics test_acc"]
        return (
            f"within {SPREAD_FACTOR}x the spread of {found['single_runs']} single-process runs; test acc diff "
            f"{test['torchrun_vs_single']:.4f} (tolerance {test['tolerance']:.4f})"
        )

    return summary


def ddp_gradient_summary(out: Path) -> str:
    found = _json(out / "ddp2_gradient.json")
    worst = max(r["max_rel_diff"] for r in found["ranks"])
    if not found["within"]:
        raise AssertionError(
            f"the averaged gradient differs from the full batch's by {worst:.2e} > {found['tolerance']}"
        )
    tolerance = found["tolerance"]
    return f"{found['processes']} processes: gradient max rel diff {worst:.1e} (tolerance {tolerance:.0e}, float64)"


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def steps(out: Path, dry_run: bool, gpus: int, data_root: str | None) -> list[Step]:
    py = [sys.executable]
    device = "cpu" if dry_run else "cuda"
    bench = [*py, "-m", "experiments.bench"]
    tiny = ["--batch", "8", "--steps", "1", "--epochs", "1", "--warmup", "0"] if dry_run else []
    cpu_tiny = [*tiny, "--workers", "0", "--threads", "1"] if dry_run else []
    no_ops = ["--no-operators"] if dry_run else []  # the profiler is slow on a CPU; tests count them
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
            [*bench, *train, *models, *cpu_tiny, *no_ops, "--json", str(out / "bench_train.json")],
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
                "--no-operators",
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
    # The process-group checks: every run with one CPU thread (the thread count changes float sums).
    one_thread = {"OMP_NUM_THREADS": "1"}
    singles = [out / "single" / f"run{i}" for i in range(SINGLE_RUNS[device])]
    single_dirs = [d / DDP_CONFIG.stem / "seed0" for d in singles]
    for i, folder in enumerate(singles):
        result.append(
            Step(
                f"single process {i + 1}",
                [*py, *run[:2], str(DDP_CONFIG), *run[2:], *ddp_set, "--results", str(folder)],
                env=one_thread,
                skip=no_data,
            )
        )
    torchrun = [*py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    result.append(
        Step(
            "torchrun x1",
            [*torchrun, "1", *run[:2], str(DDP_CONFIG), *run[2:], *ddp_set, "--results", str(out / "ddp1")],
            ddp1_summary(single_dirs, out / "ddp1" / DDP_CONFIG.stem / "seed0", exact=device == "cpu"),
            env=one_thread,
            skip=no_data,
        )
    )
    # gloo on the CPU (dry run); NCCL where there are two GPUs
    if dry_run or gpus >= 2:
        gradient = ["-m", "experiments.ddp_gradient", str(DDP_CONFIG), "--device", device, *ddp_set]
        result.append(
            Step(
                "torchrun x2 gradient",
                [*torchrun, "2", *gradient, "--json", str(out / "ddp2_gradient.json")],
                ddp_gradient_summary,
                env=one_thread,
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

    from training.records import environment

    env = environment(torch.device("cuda" if gpus and not args.dry_run else "cpu"))
    total = round(time.perf_counter() - start, 1)
    atomic_write_json(
        out / "summary.json", {"dry_run": args.dry_run, "gpus": gpus, "seconds": total, **env, "steps": rows}
    )
    header = f"gpu_check ({'dry run, ' if args.dry_run else ''}{env['device_name']}, {gpus} GPU(s)): {total:.0f}s"
    print()
    print(format_summary(rows, header))
    return 0 if all(r["status"] != "FAILED" for r in rows) else 1


_main = one_line_failures(main)


if __name__ == "__main__":
    sys.exit(_main())
