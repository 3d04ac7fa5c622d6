"""Run experiments: ``python -m experiments.run CONFIG.yaml|DIR ... [options]``.

The only place where configuration becomes objects: data, model, method, optimizers
and schedulers are built here and handed to the one training loop. Each (experiment,
seed) writes ``RESULTS/<name>/seed<k>/``: config.yaml (resolved), env.json,
history.csv, checkpoint.pt (every epoch) and, when it finishes, metrics.json. A
finished run is skipped; an unfinished one resumes from its checkpoint.

Under ``torchrun --nproc_per_node N -m experiments.run ...`` every run is data-parallel over
the N processes (``experiments.distributed``); only rank 0 writes and prints. ``--shard K/N``
runs every N-th (experiment, seed) pair, for N runner processes side by side.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments import config as C
from experiments import distributed as D
from experiments.data import CIFAR, DataError, DeviceBatches, describe, load_cifar
from experiments.records import (atomic_torch_save, atomic_write_json, atomic_write_text, environment,
                                 history_csv)
from experiments.schema import ConfigError
from experiments.train import LoopSettings, Optimizers, Trainer, TrainingDiverged, evaluate
from models import build_model
from optim.rda import RDA
from pruning import METHODS
from pruning.accounting import sparsity_report
from pruning.base import Method, Stage

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="*", type=Path, default=[CONFIG_DIR],
                   help="YAML files, or folders searched for the experiments of the profile (default: all)")
    p.add_argument("--profile", default="full", choices=list(C.PROFILES))
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding cifar-10-batches-py / cifar-100-python (default: $DATA_ROOT, else ./data)")
    p.add_argument("--results", type=Path, default=None, help="output folder (default: results/<profile>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1); default: the profile's")
    p.add_argument("--only", default=None, help="run only experiments whose name matches (substring or glob)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--force", action="store_true", help="rerun finished runs, replacing their results")
    p.add_argument("--list", action="store_true", help="list the selected experiments and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only every N-th (experiment, seed) pair, starting at pair K (0 <= K < N)")
    return p.parse_args(argv)


def _shard(text: str) -> tuple[int, int]:
    try:
        return D.parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def collect(paths: list[Path], profile: str, overrides: list[str], only: str | None) -> list[C.ExperimentConfig]:
    """Load every config named (files), or every config of the profile in the folders named."""
    configs = []
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*.yaml")):
                cfg = C.load_config(file, overrides)
                if C.in_profile(cfg, profile):
                    configs.append(cfg)
        else:
            configs.append(C.load_config(path, overrides))
    if only:
        pattern = only if any(ch in only for ch in "*?[") else f"*{only}*"
        configs = [c for c in configs if fnmatch.fnmatch(c.name, pattern)]
    seen: dict[str, int] = {}
    for c in configs:
        seen[c.name] = seen.get(c.name, 0) + 1
    dupes = [n for n, k in seen.items() if k > 1]
    if dupes:
        raise ConfigError(f"experiment name {dupes[0]!r} is used by more than one config")
    return configs


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: no CUDA device is available")
    return torch.device(name)


# ---------------------------------------------------------------- wiring


def build_data(cfg: C.ExperimentConfig, data_root: Path, device: torch.device, seed: int,
               cuda_fast: bool) -> tuple[Any, Any, dict[str, Any]]:
    """Training and test batches, plus what metrics.json records about the data."""
    d = cfg.data
    rank, world = D.rank(), D.world_size()  # several processes: each takes its share of every batch
    if d.dataset == "imagenet":
        from experiments.imagenet import imagenet_batches

        if problem := D.uneven_split(0, d.batch_size, world):
            raise DataError(f"{cfg.name}: {problem}")
        return imagenet_batches(cfg, data_root, device, seed, rank, world)
    spec = CIFAR[d.dataset]
    train, test = load_cifar(data_root, d.dataset)
    full_sizes = (len(train.labels), len(test.labels))
    if d.max_train is not None:
        train = dataclasses.replace(train, images=train.images[:d.max_train], labels=train.labels[:d.max_train])
    if d.max_test is not None:
        test = dataclasses.replace(test, images=test.images[:d.max_test], labels=test.labels[:d.max_test])
    if problem := D.uneven_split(len(train.labels), d.batch_size, world):
        raise DataError(f"{cfg.name}: {problem}")
    common = dict(device=device, mean=spec.mean, std=spec.std, channels_last=cuda_fast and cfg.train.channels_last,
                  rank=rank, world_size=world)
    train_b = DeviceBatches(train, d.batch_size, train=True, augment=d.augment, seed=seed, **common)
    test_b = DeviceBatches(test, 500, train=False, augment=False, **common)
    info = {"dataset": d.dataset, "num_classes": spec.num_classes, "input_shape": [3, 32, 32],
            "data_label": describe(d.dataset, *full_sizes, d.max_train, d.max_test),
            "data_files": {"train": full_sizes[0], "test": full_sizes[1]},
            "train_size": len(train.labels), "test_size": len(test.labels)}
    if (len(train.labels), len(test.labels)) != full_sizes:
        info["data_label"] += f", first {len(train.labels)} train / {len(test.labels)} test images used"
    return train_b, test_b, info


def build_scheduler(schedule: C.Schedule, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    if schedule.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    milestones = schedule.milestones if schedule.name == "multistep" else []
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=schedule.gamma)


def build_optimizer(cfg: C.OptimizerConfig, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    if isinstance(cfg, C.SGDConfig):
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if isinstance(cfg, C.RDAConfig):  # penalty options (lam, reweight, ...) come with the method's groups
        return RDA(groups, lr=lr, avg=cfg.avg, momentum_timescale=cfg.momentum_timescale,
                   magnitude_timescale=cfg.magnitude_timescale, weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer.name: no builder for {cfg.name!r}")


def optimizer_factory(cfg: C.ExperimentConfig, method: Method) -> Any:
    def make(stage: Stage, model: nn.Module) -> Optimizers:
        lr = stage.lr if stage.lr is not None else cfg.optimizer.lr
        groups = method.param_groups(model)
        # Groups that ask for Adam (e.g. gate parameters) get their own optimizer.
        main = [g for g in groups if g.get("optimizer", cfg.optimizer.name) == cfg.optimizer.name]
        adam = [{k: v for k, v in g.items() if k != "optimizer"} for g in groups if g.get("optimizer") == "adam"]
        main = [{k: v for k, v in g.items() if k != "optimizer"} for g in main]
        optimizers = [build_optimizer(cfg.optimizer, main, lr)]
        if adam:
            optimizers.append(torch.optim.Adam(adam))
        schedule = stage.schedule or cfg.train.schedule
        return optimizers, [build_scheduler(schedule, o, stage.epochs) for o in optimizers]
    return make


def build_model_and_method(cfg: C.ExperimentConfig, num_classes: int, device: torch.device,
                           channels_last: bool = False) -> tuple[nn.Module, Method]:
    """The dense architecture on ``device``, prepared by the config's method (gates, masks)."""
    model = build_model(cfg.model, num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = METHODS[cfg.method.name](cfg.method)
    return method.prepare(model), method


# ---------------------------------------------------------------- one run


class RunConflict(RuntimeError):
    """Results exist for a different config."""


def run_one(cfg: C.ExperimentConfig, seed: int, out: Path, data_root: Path, device: torch.device,
            force: bool = False, progress: bool = True) -> dict[str, Any] | None:
    """Train one (experiment, seed); returns its metrics, or None when it was already done."""
    run_dir = out / cfg.name / f"seed{seed}"
    resolved = C.dump_config(dataclasses.replace(cfg, seeds=1)) + f"seed: {seed}\n"
    metrics_path, ckpt_path, config_path = run_dir / "metrics.json", run_dir / "checkpoint.pt", run_dir / "config.yaml"
    main_rank = D.is_main()  # with several processes only rank 0 writes; what it finds decides for all
    if force and run_dir.exists() and main_rank:
        for f in ("metrics.json", "checkpoint.pt", "history.csv", "env.json", "config.yaml"):
            (run_dir / f).unlink(missing_ok=True)
    conflict, finished, resuming = D.broadcast_object(
        (config_path.exists() and config_path.read_text() != resolved, metrics_path.exists(), ckpt_path.exists()))
    if conflict:
        raise RunConflict(f"{run_dir}: holds results of a different config; rerun with --force to replace them")
    if finished:
        print(f"[skip] {cfg.name} seed {seed}: finished ({metrics_path})")
        return None

    cuda_fast = device.type == "cuda"
    train_b, test_b, data_info = build_data(cfg, data_root, device, seed, cuda_fast)
    torch.manual_seed(seed)
    model, method = build_model_and_method(cfg, data_info["num_classes"], device,
                                           channels_last=cuda_fast and cfg.train.channels_last)
    stages = method.stages(cfg.train.epochs)

    resume = None
    if resuming:
        resume = D.load_from_main(ckpt_path, device)
        print(f"[resume] {cfg.name} seed {seed}: from epoch {len(resume['history'])}")
    elif main_rank:
        atomic_write_text(config_path, resolved)
    env = environment(device) | {"bf16": cuda_fast and cfg.train.bf16,
                                 "channels_last": cuda_fast and cfg.train.channels_last,
                                 "compile": cuda_fast and cfg.train.compile, "processes": D.world_size()}
    if main_rank:
        atomic_write_json(run_dir / "env.json", env)
    print(f"[run] {cfg.name} seed {seed}: {cfg.model} / {cfg.method.name} on {data_info['data_label']}, "
          f"{sum(s.epochs for s in stages)} epochs, {device}")

    def on_epoch(state: dict[str, Any]) -> None:
        if not main_rank:
            return
        atomic_write_text(run_dir / "history.csv", history_csv(state["history"]))
        atomic_torch_save(ckpt_path, state)

    distributed = D.active()  # DDP for forward and backward; methods keep the model itself
    settings = LoopSettings(seed=seed, device=device, label_smoothing=cfg.train.label_smoothing,
                            bf16=env["bf16"], compile=env["compile"], progress=progress and main_rank,
                            wrap=(lambda m: D.wrap_ddp(m, device)) if distributed else None,
                            reduce=D.all_reduce_sum if distributed else None)
    trainer = Trainer(model, method, stages, train_b, test_b, optimizer_factory(cfg, method), settings, on_epoch)
    model = trainer.run(resume)

    final = method.export(model)
    test_loss, test_acc = evaluate(final, test_b, device, settings.bf16, settings.reduce)
    dense = build_model(cfg.model, data_info["num_classes"]).to(device)
    report = sparsity_report(final, dense, tuple(data_info["input_shape"]))
    last = trainer.history[-1]
    metrics = {
        "name": cfg.name, "method": cfg.method.name, "model": cfg.model, "seed": seed, "profile": cfg.profile,
        **data_info,
        "test_acc": test_acc, "test_loss": test_loss,
        "train_loss": last["train_loss"], "train_acc": last["train_acc"],
        "epochs": len(trainer.history), "steps": trainer.step,
        **{k: v for k, v in report.items() if k != "layers"},
        "wall_time_s": trainer.elapsed,
        "device": env["device_name"], "git_revision": env["git_revision"],
        **method.metrics(final),
        "layers": report["layers"],
    }
    if main_rank:
        atomic_write_json(metrics_path, metrics)
    print(f"[done] {cfg.name} seed {seed}: test acc {test_acc:.4f}, sparsity {report['sparsity']:.4f}, "
          f"{trainer.elapsed:.0f}s -> {run_dir}")
    return metrics


def load_exported(run_dir: Path, device: torch.device) -> tuple[nn.Module, Method, dict[str, Any]]:
    """A finished run's exported (final) model, rebuilt from its config.yaml, checkpoint.pt and
    metrics.json; with the method that exported it (channel methods keep the dense architecture
    they shrank as ``method.reference``) and the metrics."""
    files = {name: run_dir / name for name in ("config.yaml", "checkpoint.pt", "metrics.json")}
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        raise DataError(f"{run_dir}: not a finished run with its checkpoint (missing {', '.join(missing)})")
    cfg = C.load_run_config(files["config.yaml"])
    metrics = json.loads(files["metrics.json"].read_text())
    state = torch.load(files["checkpoint.pt"], map_location=device, weights_only=True)
    model, method = build_model_and_method(cfg, metrics["num_classes"], device)
    model.load_state_dict(state["model"])  # as the loop resumes: the model, then the method
    method.load_state_dict(state["method"])
    return method.export(model), method, metrics


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        configs = [C.resolve(c, args.profile) for c in collect(args.configs, args.profile, args.overrides, args.only)]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = [(c, seed) for c in configs for seed in range(args.seeds if args.seeds is not None else c.seeds)]
    if args.shard is not None:  # one of several processes side by side (run_all.sh --jobs)
        runs = D.take_shard(runs, *args.shard)
    if args.list:
        total = 0
        for c in configs:
            seeds = args.seeds if args.seeds is not None else c.seeds
            epochs = sum(s.epochs for s in METHODS[c.method.name](c.method).stages(c.train.epochs))
            total += seeds * epochs
            print(f"{c.name:50s} {c.model:10s} {c.method.name:10s} {seeds} seed(s) x {epochs} epochs")
        print(f"{len(configs)} experiment(s), {total} training epochs in all (profile {args.profile})")
        if args.shard is not None:
            print(f"shard {args.shard[0]}/{args.shard[1]} runs {len(runs)} of them:")
            for c, seed in runs:
                print(f"  {c.name} seed {seed}")
        return 0
    data_root = args.data_root or Path(os.environ.get("DATA_ROOT") or "data")
    out = args.results or Path("results") / args.profile
    failures = []
    start = time.perf_counter()
    try:
        device = D.setup(pick_device(args.device))  # joins the process group under torchrun
        # Every process runs the same code; only rank 0 prints (errors still go to stderr).
        quiet = contextlib.nullcontext() if D.is_main() else contextlib.redirect_stdout(open(os.devnull, "w"))
        with quiet:
            for cfg, seed in runs:
                try:
                    run_one(cfg, seed, out, data_root, device, args.force, progress=not args.no_progress)
                except TrainingDiverged as exc:
                    print(f"error: {cfg.name} seed {seed}: {exc}; no metrics written", file=sys.stderr)
                    failures.append(f"{cfg.name}/seed{seed}")
                except RunConflict as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    failures.append(f"{cfg.name}/seed{seed}")
            print(f"{len(configs)} experiment(s)"
                  + (f", shard {args.shard[0]}/{args.shard[1]}: {len(runs)} run(s)" if args.shard else "")
                  + f", {time.perf_counter() - start:.0f}s" + (f"; failed: {', '.join(failures)}" if failures else ""))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        D.teardown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
