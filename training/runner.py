"""One (experiment, seed) run, from its resolved config to its records on disk.

``run_one`` writes ``RESULTS/<name>/seed<k>/``: config.yaml (resolved), env.json, history.csv,
checkpoint.pt (every epoch) and, when it finishes, metrics.json. A finished run is skipped; an
unfinished one resumes from its checkpoint. Under several processes (``training.distributed``)
only rank 0 writes, and what rank 0 finds decides for all. ``load_exported`` rebuilds a finished
run's final model from those records.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import build_model
from pruning.accounting import sparsity_report
from pruning.base import Method
from training import distributed
from training.build import build_data, build_model_and_method, optimizer_factory, run_context
from training.config import ExperimentConfig, dump_config, load_run_config
from training.data import DataError
from training.loop import LoopSettings, Trainer, evaluate
from training.records import atomic_torch_save, atomic_write_json, atomic_write_text, environment, history_csv


class RunConflict(RuntimeError):
    """Results exist for a different config."""


def run_one(cfg: ExperimentConfig, seed: int, out: Path, data_root: Path, device: torch.device,
            force: bool = False, progress: bool = True) -> dict[str, Any] | None:
    """Train one (experiment, seed); returns its metrics, or None when it was already done."""
    run_dir = out / cfg.name / f"seed{seed}"
    resolved = dump_config(dataclasses.replace(cfg, seeds=1)) + f"seed: {seed}\n"
    metrics_path, ckpt_path, config_path = run_dir / "metrics.json", run_dir / "checkpoint.pt", run_dir / "config.yaml"
    main_rank = distributed.is_main()  # with several processes only rank 0 writes; what it finds decides for all
    if force and run_dir.exists() and main_rank:
        for f in ("metrics.json", "checkpoint.pt", "history.csv", "env.json", "config.yaml"):
            (run_dir / f).unlink(missing_ok=True)
    conflict, finished, resuming = distributed.broadcast_object(
        (config_path.exists() and config_path.read_text() != resolved, metrics_path.exists(), ckpt_path.exists()))
    if conflict:
        raise RunConflict(f"{run_dir}: holds results of a different config; rerun with --force to replace them")
    if finished:
        print(f"[skip] {cfg.name} seed {seed}: finished ({metrics_path})")
        return None

    cuda_fast = device.type == "cuda"
    train_b, test_b, data_info = build_data(cfg, data_root, device, seed, cuda_fast)
    torch.manual_seed(seed)
    ctx = run_context(device, data_info, train_b, seed)
    model, method = build_model_and_method(cfg, ctx, channels_last=cuda_fast and cfg.train.channels_last)
    stages = method.stages(cfg.train.epochs)

    resume = None
    if resuming:
        resume = distributed.load_from_main(ckpt_path, device)
        print(f"[resume] {cfg.name} seed {seed}: from epoch {len(resume['history'])}")
    elif main_rank:
        atomic_write_text(config_path, resolved)
    env = environment(device) | {"bf16": cuda_fast and cfg.train.bf16,
                                 "channels_last": cuda_fast and cfg.train.channels_last,
                                 "compile": cuda_fast and cfg.train.compile, "processes": distributed.world_size()}
    if main_rank:
        atomic_write_json(run_dir / "env.json", env)
    print(f"[run] {cfg.name} seed {seed}: {cfg.model} / {cfg.method.name} on {data_info['data_label']}, "
          f"{sum(s.epochs for s in stages)} epochs, {device}")

    def on_epoch(state: dict[str, Any]) -> None:
        if not main_rank:
            return
        atomic_write_text(run_dir / "history.csv", history_csv(state["history"]))
        atomic_torch_save(ckpt_path, state)

    parallel = distributed.active()  # DDP for forward and backward; methods keep the model itself
    settings = LoopSettings(seed=seed, device=device, label_smoothing=cfg.train.label_smoothing,
                            bf16=env["bf16"], compile=env["compile"], progress=progress and main_rank,
                            wrap=(lambda m: distributed.wrap_ddp(m, device)) if parallel else None,
                            reduce=distributed.all_reduce_sum if parallel else None)
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
    cfg = load_run_config(files["config.yaml"])
    metrics = json.loads(files["metrics.json"].read_text())
    state = torch.load(files["checkpoint.pt"], map_location=device, weights_only=True)
    model, method = build_model_and_method(cfg, run_context(device, metrics))
    model.load_state_dict(state["model"])  # as the loop resumes: the model, then the method
    method.load_state_dict(state["method"])
    return method.export(model), method, metrics
