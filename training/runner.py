"""One (experiment, seed) run, from its resolved config to its records on disk.

``run_one`` writes ``RESULTS/<name>/seed<k>/``: config.yaml (resolved), env.json, history.csv,
checkpoint.pt (every epoch) and, when it finishes, metrics.json. A finished run is skipped; an
unfinished one resumes from its checkpoint. Under several processes (``training.distributed``)
only rank 0 writes, and what rank 0 finds decides for all. ``load_exported`` rebuilds a finished
run's final model from those records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import build_model
from pruning.accounting import sparsity_report
from pruning.base import Method
from training import distributed
from training.build import build_data, build_model_and_method, optimizer_factory, run_context
from training.code_identity import changed_files, code_identity
from training.config import ExperimentConfig, dump_config, load_run_config, plan
from training.data import DataError
from training.files import FileRefused, read_text_bounded
from training.loop import LoopSettings, Trainer, TrainingDiverged, check_finite, evaluate
from training.record_schema import RECORD_LIMIT, RecordError, read_metrics
from training.records import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    device_name,
    environment,
    history_csv,
    remove_temporary_files,
    state_sha256,
)
from training.schema import ConfigError

# What a run folder holds (besides the lock): removed by --force, and before a fresh start.
RECORDS = ("metrics.json", "checkpoint.pt", "history.csv", "env.json", "config.yaml", "error.log")


class RunConflict(RuntimeError):
    """The run folder holds results or a checkpoint of another config, other data or another machine."""


class RunBusy(RuntimeError):
    """Another runner holds the run folder's lock."""


class RunCorrupt(RuntimeError):
    """A record in the run folder cannot be read."""


class RunOutside(RunConflict):
    """The run folder is a symbolic link out of the results folder."""


# What a folder that cannot be written answers (read-only media, a read-only folder).
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def check_contained(out: Path, run_dir: Path) -> None:
    """Refuse a run folder, or its experiment folder, that is a symbolic link: its records would be
    written (and its temporary files deleted) wherever the link points, outside ``out``."""
    for folder in (run_dir.parent, run_dir):
        if folder.is_symlink():
            raise RunOutside(
                f"{folder}: a symbolic link (to {os.readlink(folder)}), not a folder of {out}; "
                "the runner writes only inside the results folder: remove the link"
            )


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (an OS lock, released when the process ends however it ends, so a
    dead runner's lock never blocks); clears what atomic writes killed half-way left behind.

    On a folder that cannot be written (read-only media) the folder itself is locked instead and
    nothing is cleared: a finished run is still found finished; any other fails at its first write.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    writable = True
    try:
        fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno not in _READ_ONLY or (exc.errno != errno.EROFS and os.access(run_dir, os.W_OK)):
            raise  # a folder others can write but this runner cannot lock is not a read-only one
        writable = False
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() if writable else ""
            raise RunBusy(f"{run_dir}: in progress in another runner (pid {owner or '?'})") from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            remove_temporary_files(run_dir)
        try:
            yield
        finally:
            if writable and [p.name for p in run_dir.iterdir()] == [".lock"]:  # nothing was written: no trace
                (run_dir / ".lock").unlink()
                run_dir.rmdir()
                with contextlib.suppress(OSError):  # the experiment's folder, if it holds no other seed
                    run_dir.parent.rmdir()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_identity(resolved: str, data_info: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """What a run's numbers depend on beyond its seed: the resolved config, the data actually loaded,
    the code that trains it (``training.code_identity``: one hash, and one per file), the device,
    torch, the number of processes and, on the CPU, the number of threads."""
    return {
        "config_sha256": hashlib.sha256(resolved.encode()).hexdigest(),
        "data_fingerprint": data_info["data_fingerprint"],
        **code_identity(),
        "device": device_name(device),
        "torch": str(torch.__version__),
        "processes": distributed.world_size(),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }


_WHAT = {
    "config_sha256": "config",
    "data_fingerprint": "data",
    "device": "device",
    "torch": "torch version",
    "processes": "number of processes",
}


def _identity_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [f"{_WHAT[k]} ({recorded.get(k)} then, {current[k]} now)" for k in _WHAT if recorded.get(k) != current[k]]


def _recorded_text(path: Path) -> str:
    """A record of the run folder as text, read with the bound every record is read with."""
    try:
        return read_text_bounded(path, RECORD_LIMIT)
    except (FileRefused, OSError, UnicodeDecodeError) as exc:
        raise RunCorrupt(f"{path}: unreadable ({exc}); delete it, or rerun with --force") from None


def _code_change(recorded: dict[str, Any], identity: dict[str, Any]) -> str | None:
    """What changed in the code since the checkpoint's run started (None: nothing); a checkpoint from
    before code identities were recorded has an unknown code, which counts as a change."""
    if recorded.get("code_sha256") == identity["code_sha256"]:
        return None
    return changed_files(recorded.get("code_files"), identity["code_files"])


def _inspect(
    run_dir: Path, resolved: str, identity: dict[str, Any], allow_code_change: bool = False
) -> tuple[str, Any]:
    """What to do with a run folder: ("skip", None), ("resume", checkpoint) or ("fresh", None);
    raises RunConflict or RunCorrupt with one line saying what differs and what to do.

    A finished run is skipped whatever the code now is (its metrics.json records the code that
    trained it). A checkpoint is resumed only by the code that wrote it, unless
    ``allow_code_change``: then ``identity`` gains ``code_sha256_earlier``, the code identities the
    run was trained by before ("unrecorded" for a checkpoint from before code identities).
    """
    config_path, metrics_path, ckpt_path = run_dir / "config.yaml", run_dir / "metrics.json", run_dir / "checkpoint.pt"
    force = "rerun with --force to replace them"
    if metrics_path.exists():
        if not config_path.exists() or _recorded_text(config_path) != resolved:
            raise RunConflict(f"{run_dir}: holds results of a different config; {force}")
        try:
            recorded = read_metrics(metrics_path)["data_fingerprint"]
        except RecordError as exc:
            raise RunCorrupt(f"{exc}; delete it (the checkpoint resumes the run) or rerun with --force") from None
        if recorded != identity["data_fingerprint"]:
            raise RunConflict(
                f"{run_dir}: holds results of other data (fingerprint {recorded}, now "
                f"{identity['data_fingerprint']}: is DATA_ROOT another folder?); {force}"
            )
        return "skip", None
    if ckpt_path.exists():
        if not ckpt_path.is_file():  # a link to a device or a pipe would be read without end
            raise RunCorrupt(f"{ckpt_path}: not a regular file; delete it, or rerun with --force")
        try:
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or damaged file fails in many ways
            raise RunCorrupt(
                f"{ckpt_path}: unreadable ({type(exc).__name__}); delete it to start this run again "
                "from the beginning, or rerun with --force"
            ) from None
        recorded = state.get("identity") if isinstance(state, dict) else None
        if recorded is None:
            raise RunConflict(f"{ckpt_path}: a checkpoint without a run identity (not written by this runner); {force}")
        differences = _identity_differences(recorded, identity)
        if differences:
            raise RunConflict(
                f"{ckpt_path}: was written by a run of another {'; '.join(differences)}, and a resumed "
                f"run is exact only under the same; {force}"
            )
        if config_path.exists() and _recorded_text(config_path) != resolved:
            raise RunConflict(f"{run_dir}: config.yaml is of a different config than its checkpoint; {force}")
        earlier = list(recorded.get("code_sha256_earlier", []))
        change = _code_change(recorded, identity)
        if change is not None:
            if not allow_code_change:
                raise RunConflict(
                    f"{ckpt_path}: the code changed since this run started ({change}); rerun with "
                    "--allow-code-change to resume it at today's code (metrics.json then records both code "
                    "identities), or with --force to start it again"
                )
            earlier.append(recorded.get("code_sha256") or "unrecorded")
        if earlier:
            identity["code_sha256_earlier"] = earlier
        return "resume", state
    return "fresh", None


# The first epoch's step losses kept for experiments.verify (a whole CIFAR epoch at batch 128: 391).
TRACE_STEPS = 500


def first_epoch_record(epoch_state: dict[str, Any], step_losses: list[float]) -> dict[str, Any]:
    """What a run records of its first epoch for ``experiments.verify``: the training loss of each of
    its first steps, the epoch's numbers at full precision, and a hash of the model after it."""
    row = epoch_state["history"][0]
    return {
        "steps": epoch_state["step"],
        "step_losses": list(step_losses[:TRACE_STEPS]),
        "params_sha256": state_sha256(epoch_state["model"]),
        **{k: row[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")},
    }


def build_training(
    cfg: ExperimentConfig, seed: int, device: torch.device, train_b: Any, data_info: dict[str, Any]
) -> tuple[nn.Module, Method, list[Any]]:
    """The model, method and stages of (``cfg``, ``seed``) on the data ``build_data`` loaded: the one
    place a run (and ``experiments.verify``'s replay of it) draws its initial weights, in this order."""
    torch.manual_seed(seed)
    ctx = run_context(device, data_info, train_b, seed)
    try:  # what only the built model can check (e.g. an ``exclude`` naming no module)
        model, method = build_model_and_method(cfg, ctx, channels_last=cfg.train.channels_last)
    except ValueError as exc:
        raise ConfigError(f"{cfg.name}: method.{exc}") from None
    return model, method, plan(cfg, ctx.steps_per_epoch)  # with the data's own epoch length


def loop_settings(cfg: ExperimentConfig, seed: int, device: torch.device, test: bool, **more: Any) -> LoopSettings:
    """How the loop trains a run of ``cfg`` (the fast path on CUDA only); ``more``: the other fields."""
    cuda_fast = device.type == "cuda"
    return LoopSettings(
        seed=seed,
        device=device,
        label_smoothing=cfg.train.label_smoothing,
        test_each_epoch=cfg.train.test_each_epoch and test,
        bf16=cuda_fast and cfg.train.bf16,
        compile=cuda_fast and cfg.train.compile,
        **{"trace_steps": TRACE_STEPS, **more},
    )


def record_failure(run_dir: Path, error: BaseException) -> Path | None:
    """Write the traceback of a failed run to ``run_dir/error.log``; returns its path, or None when
    it cannot be written (the folder is what failed: read-only, a file in the way, a full disk)."""
    path = run_dir / "error.log"
    if run_dir.is_symlink() or run_dir.parent.is_symlink():
        return None  # never written through a link out of the results folder
    try:
        atomic_write_text(path, "".join(traceback.format_exception(error)))
    except OSError:
        return None
    return path


def run_one(
    cfg: ExperimentConfig,
    seed: int,
    out: Path,
    data_root: Path,
    device: torch.device,
    force: bool = False,
    progress: bool = True,
    test: bool = True,
    allow_code_change: bool = False,
) -> dict[str, Any] | None:
    """Train one (experiment, seed); returns its metrics, or None when it was already done.

    Only rank 0 of several processes holds the folder's lock and reads and writes the folder; what it
    finds decides for every process. ``test=False`` never reads the test set (runs that choose a
    hyperparameter on the validation split): metrics.json then has no test numbers.
    ``allow_code_change`` resumes a checkpoint written by other code (``_inspect``).
    """
    run_dir = out / cfg.name / f"seed{seed}"
    with contextlib.ExitStack() as stack:
        problem = None  # what rank 0 found, raised in every process (none waits for a rank that gave up)
        if distributed.is_main():
            try:
                check_contained(out, run_dir)
                stack.enter_context(run_lock(run_dir))
            except (RunBusy, RunOutside, OSError) as exc:
                problem = exc
        problem = distributed.broadcast_object(problem)
        if problem is not None:
            raise problem
        return _run_locked(cfg, seed, run_dir, data_root, device, force, progress, test, allow_code_change)


def _run_locked(
    cfg: ExperimentConfig,
    seed: int,
    run_dir: Path,
    data_root: Path,
    device: torch.device,
    force: bool,
    progress: bool,
    test: bool,
    allow_code_change: bool = False,
) -> dict[str, Any] | None:
    resolved = dump_config(dataclasses.replace(cfg, seeds=1)) + f"seed: {seed}\n"
    metrics_path, ckpt_path, config_path = run_dir / "metrics.json", run_dir / "checkpoint.pt", run_dir / "config.yaml"
    main_rank = distributed.is_main()
    if force and main_rank:
        for name in RECORDS:
            (run_dir / name).unlink(missing_ok=True)

    cuda_fast = device.type == "cuda"
    train_b, val_b, test_b, data_info = build_data(cfg, data_root, device, seed, cuda_fast)
    if not test and val_b is None:
        raise ConfigError(
            f"{cfg.name}: a run that does not read the test set needs a validation split (data.validation)"
        )
    identity = run_identity(resolved, data_info, device)
    action, state, problem = None, None, None
    if main_rank:
        try:
            action, state = _inspect(run_dir, resolved, identity, allow_code_change)
        except (RunConflict, RunCorrupt) as exc:
            problem = exc
    action, recorded_threads, problem = distributed.broadcast_object(
        (action, state["identity"]["threads"] if action == "resume" else None, problem)
    )
    if problem is not None:
        raise problem
    if action == "skip":
        print(f"[skip] {cfg.name} seed {seed}: finished ({metrics_path})")
        return None
    if recorded_threads is not None and recorded_threads != torch.get_num_threads():
        print(
            f"[resume] {cfg.name} seed {seed}: with {recorded_threads} thread(s), as it started (now "
            f"{torch.get_num_threads()}): an exact resume needs the same"
        )
        torch.set_num_threads(recorded_threads)
        identity["threads"] = recorded_threads

    model, method, stages = build_training(cfg, seed, device, train_b, data_info)

    env = environment(device) | {
        "bf16": cuda_fast and cfg.train.bf16,
        "channels_last": cfg.train.channels_last,
        "compile": cuda_fast and cfg.train.compile,
        "processes": distributed.world_size(),
        "code_sha256": identity["code_sha256"],  # the code it started with, file by file
        "code_files": identity["code_files"],
        "synthetic_data": data_info.get("synthetic", False),  # generated stand-in data (a rehearsal)
    }
    resume = None
    first_epoch = state.get("first_epoch") if main_rank and action == "resume" else None  # only rank 0 writes
    if action == "resume":
        resume = distributed.share_from_main(state, device)
        print(f"[resume] {cfg.name} seed {seed}: from epoch {len(resume['history'])}")
        if "code_sha256_earlier" in identity:
            print(f"[resume] {cfg.name} seed {seed}: at other code than it started with (--allow-code-change)")
        if main_rank and not config_path.exists():  # the checkpoint vouches for the config
            atomic_write_text(config_path, resolved)
        if main_rank:  # as far as the checkpoint goes (a kill may have come before the history's write)
            atomic_write_text(run_dir / "history.csv", history_csv(resume["history"]))
    elif main_rank:  # nothing to protect: no checkpoint, no metrics
        for name in RECORDS:
            (run_dir / name).unlink(missing_ok=True)
        atomic_write_text(config_path, resolved)
        atomic_write_json(run_dir / "env.json", env)  # the environment the run started in (kept on resume)
    print(
        f"[run] {cfg.name} seed {seed}: {cfg.model} / {cfg.method.name} on {data_info['data_label']}, "
        f"{sum(s.epochs for s in stages)} epochs, {device}"
    )

    def on_epoch(epoch_state: dict[str, Any]) -> None:
        nonlocal first_epoch
        if not main_rank:
            return
        if len(epoch_state["history"]) == 1:  # what experiments.verify replays and compares
            first_epoch = first_epoch_record(epoch_state, trainer.step_losses)
        # The checkpoint first: history.csv is a view of the checkpoint's history (rewritten from it
        # on resume), so a kill between the two writes leaves it one row behind, never ahead.
        atomic_torch_save(ckpt_path, epoch_state | {"identity": identity, "first_epoch": first_epoch})
        atomic_write_text(run_dir / "history.csv", history_csv(epoch_state["history"]))

    parallel = distributed.active()  # DDP for forward and backward; methods keep the model itself
    settings = loop_settings(
        cfg,
        seed,
        device,
        test,
        progress=progress and main_rank,
        wrap=(lambda m: distributed.wrap_ddp(m, device)) if parallel else None,
        reduce=distributed.all_reduce_sum if parallel else None,
    )
    trainer = Trainer(
        model, method, stages, train_b, test_b, optimizer_factory(cfg, method), settings, on_epoch, val_batches=val_b
    )
    model = trainer.run(resume)

    final = method.export(model)
    test_loss, test_acc = evaluate(final, test_b, device, settings.bf16, settings.reduce) if test else (None, None)
    val_loss, val_acc = (
        evaluate(final, val_b, device, settings.bf16, settings.reduce) if val_b is not None else (None, None)
    )
    check_finite(final, len(trainer.history), "exported model", test_loss=test_loss, val_loss=val_loss)
    dense = build_model(cfg.model, data_info["num_classes"]).to(device)
    report = sparsity_report(final, dense, tuple(data_info["input_shape"]))
    last = trainer.history[-1]
    metrics = {
        "name": cfg.name,
        "method": cfg.method.name,
        "model": cfg.model,
        "seed": seed,
        "profile": cfg.profile,
        **data_info,
        "test_acc": test_acc,
        "test_loss": test_loss,
        "val_acc": val_acc,
        "val_loss": val_loss,
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "epochs": len(trainer.history),
        "steps": trainer.step,
        "steps_per_epoch": len(train_b),
        **{k: v for k, v in report.items() if k != "layers"},
        "wall_time_s": trainer.elapsed,
        "device": env["device_name"],
        "threads": identity["threads"],
        "git_revision": env["git_revision"],
        "code_sha256": identity["code_sha256"],
        **({"code_sha256_earlier": identity["code_sha256_earlier"]} if "code_sha256_earlier" in identity else {}),
        **({"first_epoch": first_epoch} if first_epoch is not None else {}),
        **method.metrics(final),
        "layers": report["layers"],
    }
    if main_rank:
        try:
            atomic_write_json(metrics_path, metrics)
        except ValueError as exc:  # a NaN the checks above did not catch: no metrics, as for divergence
            raise TrainingDiverged(f"metrics.json would not be strict JSON ({exc})") from None
    print(
        f"[done] {cfg.name} seed {seed}: "
        + (f"test acc {test_acc:.4f}, " if test else f"validation acc {val_acc:.4f} (test set not read), ")
        + f"sparsity {report['sparsity']:.4f}, "
        f"{trainer.elapsed:.0f}s -> {run_dir}"
    )
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
    try:
        metrics = read_metrics(files["metrics.json"])
    except RecordError as exc:
        raise DataError(str(exc)) from None
    state = torch.load(files["checkpoint.pt"], map_location=device, weights_only=True)
    model, method = build_model_and_method(cfg, run_context(device, metrics))
    model.load_state_dict(state["model"])  # as the loop resumes: the model, then the method
    method.load_state_dict(state["method"])
    return method.export(model), method, metrics
