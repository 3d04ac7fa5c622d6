"""Run experiments: ``python -m experiments.run CONFIG.yaml|DIR ... [options]``.

Exit status: 0 every run finished (or was already finished, or is in progress in another runner);
1 a run failed (the others went on; each failure is one line, its traceback in the run's error.log);
2 a config error; 3 no usable data; 130 interrupted (rerun the same command to go on).

Each (experiment, seed) of the configs named (or of the profile's experiments in the folders
named) is trained by ``training.runner.run_one`` into ``RESULTS/<name>/seed<k>/``. A finished
run is skipped; an unfinished one resumes from its checkpoint.

Under ``torchrun --nproc_per_node N -m experiments.run ...`` every run is data-parallel over
the N processes (``training.distributed``); only rank 0 writes and prints. ``--shard K/N``
runs every N-th (experiment, seed) pair, for N runner processes side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import torch

from experiments.arguments import positive_int
from training import config, cost, distributed
from training.data import DataError
from training.files import describe_failure
from training.loop import TrainingDiverged, clear_stop, request_stop
from training.runner import RunBusy, RunConflict, RunCorrupt, record_failure, run_one
from training.schema import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "configs",
        nargs="*",
        type=Path,
        default=[CONFIG_DIR],
        help="YAML files, or folders searched for the experiments of the profile (default: all)",
    )
    p.add_argument("--profile", default="full", choices=list(config.PROFILES))
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding cifar-10-batches-py / cifar-100-python (default: $DATA_ROOT, else ./data)",
    )
    p.add_argument("--results", type=Path, default=None, help="output folder (default: results/<profile>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seeds", type=positive_int, default=None, help="number of seeds (0..N-1); default: the profile's")
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="PATTERN",
        help="run only experiments whose name matches (substring or glob); repeat it for several",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="rerun finished runs, replacing their results")
    p.add_argument(
        "--allow-code-change",
        action="store_true",
        help="resume runs whose checkpoint was written by other training code (metrics.json records both)",
    )
    p.add_argument(
        "--no-test",
        dest="test",
        action="store_false",
        help="never read the test set (runs that choose a hyperparameter on data.validation)",
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help="only one experiment per method x model x data set (the first by name): a stratified sample",
    )
    p.add_argument("--list", action="store_true", help="list the selected experiments and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="K/N",
        help="run only every N-th (experiment, seed) pair, starting at pair K (0 <= K < N)",
    )
    return p.parse_args(argv)


def _shard(text: str) -> tuple[int, int]:
    try:
        return distributed.parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def where_logged(log: Path | None, run_dir: Path) -> str:
    return f"traceback in {log}" if log is not None else f"no error.log: {run_dir} cannot be written either"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: no CUDA device is available")
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        configs = config.collect_configs(args.configs, args.profile, args.overrides, args.only)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.sample:
        configs = config.stratified_sample(configs)
    runs = [(c, seed) for c in configs for seed in range(args.seeds if args.seeds is not None else c.seeds)]
    if args.shard is not None:  # one of several processes side by side (run_all.sh --jobs)
        runs = distributed.take_shard(runs, *args.shard)
    if args.list:
        total, hours, sources = 0, 0.0, set()
        for c in configs:
            seeds = args.seeds if args.seeds is not None else c.seeds
            epochs = sum(s.epochs for s in config.plan(c))
            total += seeds * epochs
            run_cost = cost.gpu_hours(c)
            hours += seeds * run_cost.gpu_hours
            sources.add(run_cost.source)
            print(
                f"{c.name:50s} {c.model:10s} {c.method.name:14s} {seeds} seed(s) x {epochs} epochs"
                f"  {seeds * run_cost.gpu_hours:9.2f} GPU-h ({run_cost.source})"
            )
        print(f"{len(configs)} experiment(s), {total} training epochs in all (profile {args.profile})")
        print(f"{hours:.1f} GPU-hours on one GPU in all ({', '.join(sorted(sources)) or 'nothing to run'})")
        if "estimate" in sources:
            print(cost.describe_estimate())
        if args.shard is not None:
            print(f"shard {args.shard[0]}/{args.shard[1]} runs {len(runs)} of them:")
            for c, seed in runs:
                print(f"  {c.name} seed {seed}")
        return 0
    data_root = args.data_root or Path(os.environ.get("DATA_ROOT") or "data")
    out = args.results or Path("results") / args.profile
    failures, config_errors, busy = [], [], []
    start = time.perf_counter()
    clear_stop()
    signal.signal(signal.SIGTERM, request_stop)
    current = None
    try:
        device = distributed.setup(pick_device(args.device))  # joins the process group under torchrun
        # Every process runs the same code; only rank 0 prints (errors still go to stderr).
        quiet = contextlib.nullcontext() if distributed.is_main() else contextlib.redirect_stdout(open(os.devnull, "w"))
        with quiet:
            for cfg, seed in runs:
                current = f"{cfg.name} seed {seed}"
                run_dir = out / cfg.name / f"seed{seed}"
                try:
                    run_one(
                        cfg,
                        seed,
                        out,
                        data_root,
                        device,
                        args.force,
                        progress=not args.no_progress,
                        test=args.test,
                        allow_code_change=args.allow_code_change,
                    )
                except RunBusy as exc:
                    print(f"[busy] {current}: {exc}; left to that runner")
                    busy.append(current)
                except ConfigError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    config_errors.append(current)
                except (TrainingDiverged, RunConflict, RunCorrupt) as exc:
                    print(
                        f"error: {current}: {exc}"
                        + ("; no metrics written" if isinstance(exc, TrainingDiverged) else ""),
                        file=sys.stderr,
                    )
                    failures.append(current)
                except DataError:
                    raise  # no data: every other run would fail alike
                except Exception as exc:  # one run's failure does not stop the others
                    log = record_failure(run_dir, exc) if distributed.is_main() else run_dir / "error.log"
                    print(f"error: {current}: {describe_failure(exc)} ({where_logged(log, run_dir)})", file=sys.stderr)
                    failures.append(current)
            current = None
            summary = (
                f"{len(configs)} experiment(s)"
                + (f", shard {args.shard[0]}/{args.shard[1]}: {len(runs)} run(s)" if args.shard else "")
                + f", {time.perf_counter() - start:.0f}s"
            )
            for label, names in (
                ("failed", failures),
                ("config errors", config_errors),
                ("in progress elsewhere", busy),
            ):
                if names:
                    summary += f"; {label}: {', '.join(names)}"
            print(summary)
    except DataError as exc:  # no usable data: every run would fail alike
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(
            f"\ninterrupted{f' during {current}' if current else ''}: rerun the same command to go on "
            "(finished runs are skipped, the interrupted one resumes from its last epoch)",
            file=sys.stderr,
        )
        return 130
    finally:
        distributed.teardown()
    return 2 if config_errors else 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
