"""Speed benchmarks: ``python -m experiments.bench SUBCOMMAND [options]``.

Subcommands, one module each: ``optimizer`` (experiments/bench/optimizer.py), ``train`` (train.py),
``jobs`` (jobs.py), ``latency`` (latency.py), ``export`` (export.py); each module's docstring says
what it measures. ``--json PATH`` writes the result with its provenance (command, date, git
revision, device, load average): the record a figure quoted in the README points to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from experiments.arguments import fraction, non_negative_int, positive_int
from experiments.bench.common import provenance
from experiments.bench.export import bench_export, format_export_table
from experiments.bench.jobs import bench_jobs, format_jobs_table
from experiments.bench.latency import bench_latency, format_latency_table, latency_run_dirs
from experiments.bench.optimizer import bench_optimizer, format_table
from experiments.bench.train import TRAIN_VARIANTS, bench_train, format_train_table
from training.records import atomic_write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("optimizer", help="one xRDA step against one foreach SGD-momentum step")
    opt.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    opt.add_argument("--repeats", type=positive_int, default=50, help="timed steps per optimizer")
    opt.add_argument("--warmup", type=non_negative_int, default=5, help="untimed steps first")
    opt.add_argument("--model", default="resnet56")
    opt.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    opt.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    # --device is required: the figures mean nothing without knowing which device produced them.
    tr = sub.add_parser("train", help="training images/s of every method against dense SGD and a reference loop")
    tr.add_argument("--device", required=True, choices=["cpu", "cuda"])
    tr.add_argument("--models", nargs="+", default=["resnet56", "vgg16"])
    tr.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=list(TRAIN_VARIANTS),
        metavar="VARIANT",
        help=f"default: all ({', '.join(TRAIN_VARIANTS)})",
    )
    tr.add_argument("--batch", type=positive_int, default=128)
    tr.add_argument("--steps", type=positive_int, default=50, help="batches per epoch")
    tr.add_argument("--epochs", type=positive_int, default=3, help="timed epochs (the median is reported)")
    tr.add_argument("--warmup", type=non_negative_int, default=1, help="untimed epochs first")
    tr.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="CUDA: contiguous memory")
    tr.add_argument("--no-bf16", dest="bf16", action="store_false", help="CUDA: fp32 instead of bf16 autocast")
    tr.add_argument("--compile", action="store_true", help="CUDA: torch.compile the model (warm-up not timed)")
    tr.add_argument("--workers", type=non_negative_int, default=4, help="DataLoader processes of the reference loop")
    tr.add_argument("--no-reference", dest="reference", action="store_false", help="skip the reference loop")
    tr.add_argument(
        "--no-operators", dest="operators", action="store_false", help="skip counting each step's operators"
    )
    tr.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    tr.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    lt = sub.add_parser(
        "latency", help="latency of channel-pruned runs' exported models against dense (CPU, and CUDA when present)"
    )
    lt.add_argument(
        "runs",
        nargs="+",
        type=Path,
        help="run folders (<results>/<experiment>/seed<k>) or results "
        "folders (every finished run below that has a latency entry)",
    )
    lt.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 128])
    lt.add_argument("--warmup", type=non_negative_int, default=10, help="untimed passes of each model first")
    lt.add_argument("--repeats", type=positive_int, default=50, help="timed passes of each model, in turns")
    lt.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    lt.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    jb = sub.add_parser("jobs", help="total training images/s of N runs side by side on one device")
    jb.add_argument("--device", required=True, choices=["cpu", "cuda"])
    jb.add_argument("--jobs", type=positive_int, nargs="+", default=[1, 2, 4], help="numbers of processes to try")
    jb.add_argument("--model", default="resnet56")
    jb.add_argument("--batch", type=positive_int, default=128)
    jb.add_argument("--steps", type=positive_int, default=50)
    jb.add_argument("--epochs", type=positive_int, default=3)
    jb.add_argument("--warmup", type=non_negative_int, default=2)
    jb.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads per process")
    jb.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    ex = sub.add_parser("export", help="file size of unstructured-sparse models' export against the dense file")
    ex.add_argument("--models", nargs="+", default=["resnet56", "vgg16"])
    ex.add_argument("--sparsity", type=fraction, nargs="+", default=[0.9, 0.98])
    ex.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is available", file=sys.stderr)
        return 1
    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)
    if args.command == "optimizer":
        result = bench_optimizer(torch.device(args.device), args.repeats, args.warmup, args.model)
        print(format_table(result))
    elif args.command == "latency":
        result = bench_latency(latency_run_dirs(args.runs), args.batch_sizes, args.warmup, args.repeats)
        print(format_latency_table(result))
    elif args.command == "train":
        result = bench_train(
            torch.device(args.device),
            tuple(args.models),
            args.batch,
            args.steps,
            args.epochs,
            args.warmup,
            args.channels_last,
            args.bf16,
            args.compile,
            args.workers,
            tuple(args.variants) if args.variants else None,
            args.reference,
            count_operators=args.operators,
        )
        print(format_train_table(result))
    elif args.command == "export":
        result = bench_export(tuple(args.models), tuple(args.sparsity))
        print(format_export_table(result))
    else:
        result = bench_jobs(
            args.device, tuple(args.jobs), args.model, args.batch, args.steps, args.epochs, args.warmup, args.threads
        )
        print(format_jobs_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        device = torch.device(getattr(args, "device", "cpu"))
        atomic_write_json(args.json, {**result, "provenance": provenance(argv, device)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
