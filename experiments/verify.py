"""Replay a recorded run's first epoch at today's code: ``python -m experiments.verify RUN_DIR [--steps N]``.

Rebuilds the run from its config.yaml and seed, on the data it recorded (its ``data_fingerprint``
must match what ``--data-root`` holds), with the thread count it recorded, and trains its first
epoch (or only its first N steps) through the same loop. What the run recorded of that epoch
(metrics.json ``first_epoch``: the training loss of every step, the epoch's losses and accuracies
at full precision, a hash of the model after it) is then compared bit for bit. A run recorded
before ``first_epoch`` existed is compared with its history.csv, which keeps 6 significant digits.

Bit-reproducibility holds only on the same CPU type (or GPU model) and thread count, with the same
torch version: the command says when any of them differs, so that a difference can be read.
Exit status: 0 equal, 1 different, 2 bad arguments or records, 3 no usable data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from experiments.arguments import one_line_failures, positive_int
from training.build import build_data, optimizer_factory
from training.code_identity import code_identity
from training.config import ExperimentConfig, run_config_from_mapping
from training.data import DataError
from training.loop import Trainer, TrainingDiverged
from training.record_schema import RecordError, read_config, read_env, read_history, read_metrics
from training.records import cpu_info, device_name
from training.runner import TRACE_STEPS, build_training, first_epoch_record, loop_settings
from training.schema import ConfigError

NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def replay(
    cfg: ExperimentConfig,
    seed: int,
    data_root: Path,
    device: torch.device,
    steps: int | None,
    test: bool,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` from seed ``seed`` as ``training.runner`` does (its ``build_training`` and
    ``loop_settings``), for ``steps`` steps or, when None, the first epoch; returns the step losses and
    (a whole epoch) ``first_epoch``. DataError, before any training, when the data's fingerprint is
    not ``fingerprint``."""
    train_b, val_b, test_b, data_info = build_data(cfg, data_root, device, seed, device.type == "cuda")
    if fingerprint is not None and fingerprint != data_info["data_fingerprint"]:
        raise DataError(
            f"{data_root} holds other data than the run was trained on (fingerprint "
            f"{data_info['data_fingerprint']}, recorded {fingerprint})"
        )
    model, method, stages = build_training(cfg, seed, device, train_b, data_info)
    steps_per_epoch = len(train_b)
    settings = loop_settings(
        cfg,
        seed,
        device,
        test,
        progress=False,
        trace_steps=max(TRACE_STEPS, steps or 0),
        stop_after_steps=steps if steps is not None else steps_per_epoch,
    )
    captured: dict[str, Any] = {}

    def on_epoch(state: dict[str, Any]) -> None:
        if len(state["history"]) == 1:
            captured.update(first_epoch_record(state, trainer.step_losses))

    trainer = Trainer(
        model,
        method,
        stages,
        train_b,
        test_b,
        optimizer_factory(cfg, method),
        settings,
        on_epoch,
        log=lambda line: None,
        val_batches=val_b,
    )
    trainer.run()
    return {
        "step_losses": trainer.step_losses,
        "first_epoch": captured or None,
    }


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def compare_exact(recorded: dict[str, Any], now: dict[str, Any], steps: int | None) -> list[str]:
    """What differs, bit for bit, between a recorded ``first_epoch`` and a replay (empty: nothing)."""
    wanted = recorded["step_losses"][:steps] if steps is not None else recorded["step_losses"]
    got = now["step_losses"][: len(wanted)]
    out = []
    for i, (a, b) in enumerate(zip(wanted, got)):
        if a != b:
            out.append(f"step {i + 1} loss: {a!r} recorded, {b!r} now")
            break  # every later step follows from this one
    if len(got) < len(wanted):
        out.append(f"{len(got)} steps replayed, {len(wanted)} recorded")
    if steps is None:
        first = now["first_epoch"] or {}
        if first.get("params_sha256") != recorded["params_sha256"]:
            out.append("the model after the first epoch differs (params_sha256)")
        out += [
            f"{k}: {recorded[k]!r} recorded, {first.get(k)!r} now"
            for k in NUMBERS
            if not _same(recorded[k], first.get(k))
        ]
    return out


def compare_history(row: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """A run without ``first_epoch``: its history.csv row of epoch 1, at the 6 digits it keeps."""
    first = now["first_epoch"] or {}
    out = []
    for k in NUMBERS:
        a, b = row[k], first.get(k)
        b_text = None if b is None else float(f"{b:.6g}")
        if a != b_text:
            out.append(f"{k}: {a!r} recorded, {b_text!r} now (6 significant digits)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run folder: RESULTS/<name>/seed<k>")
    p.add_argument(
        "--steps", type=positive_int, default=None, help="replay only the first N steps (default: the first epoch)"
    )
    p.add_argument("--data-root", type=Path, default=None, help="the run's data (default: $DATA_ROOT, else ./data)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    data_root = args.data_root or Path(os.environ.get("DATA_ROOT") or "data")
    run_dir: Path = args.run_dir
    try:
        resolved = read_config(run_dir / "config.yaml")
        seed, cfg = resolved["seed"], run_config_from_mapping(resolved)
        metrics = read_metrics(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
        env = read_env(run_dir / "env.json") if (run_dir / "env.json").exists() else {}
        history = read_history(run_dir / "history.csv") if "first_epoch" not in metrics else []
    except (RecordError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    recorded = metrics.get("first_epoch")
    if recorded is None and args.steps is not None:
        print(f"error: {run_dir}: no per-step record (a run from before first_epoch); omit --steps", file=sys.stderr)
        return 2
    if recorded is not None and args.steps is not None and args.steps > len(recorded["step_losses"]):
        print(f"error: --steps: {run_dir} records {len(recorded['step_losses'])} steps", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is available", file=sys.stderr)
        return 3
    threads = metrics.get("threads") or env.get("torch_threads")
    if threads and device.type == "cpu":
        torch.set_num_threads(int(threads))
    then = (metrics.get("device") or env.get("device_name") or "unknown", threads, env.get("torch"))
    now_where = (device_name(device), torch.get_num_threads() if device.type == "cpu" else None, torch.__version__)
    what = f"its first {args.steps} step(s)" if args.steps is not None else "its first epoch"
    code_then = metrics.get("code_sha256") or env.get("code_sha256") or "unrecorded"
    print(
        f"verify {run_dir}: replaying {what} (seed {seed}) at code {code_identity()['code_sha256'][:12]} "
        f"(recorded: {code_then[:12]})"
    )
    flags_then = (env.get("cpu") or {}).get("flags")  # runs recorded before the CPU's flags: unknown
    other_flags = bool(flags_then) and flags_then != cpu_info()["flags"]
    if (
        then[0] != now_where[0]
        or (then[1] and then[1] != now_where[1])
        or (then[2] and then[2] != now_where[2])
        or other_flags
    ):
        print(
            f"note: recorded on {then[0]} with {then[1]} thread(s), torch {then[2] or '?'}; replayed on "
            f"{now_where[0]} with {now_where[1]} thread(s), torch {now_where[2]}"
            + (" (another instruction set)" if other_flags else "")
            + ": bit-reproducibility holds only on the same CPU type (or GPU) and thread count with the same "
            "torch, so a difference may come from that"
        )
    test = (
        bool(recorded["test_loss"] is not None) if recorded else bool(history and history[0]["test_loss"] is not None)
    )
    try:
        now = replay(cfg, seed, data_root, device, args.steps, test, metrics.get("data_fingerprint"))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:  # today's code diverges where the recorded run did not
        print(f"DIFFERENT from the record: {exc}")
        return 1
    if recorded is not None:
        differences = compare_exact(recorded, now, args.steps)
        scope = f"bit for bit: {len(recorded['step_losses'][: args.steps])} step losses" + (
            "" if args.steps is not None else ", the epoch's losses and accuracies and the model's hash"
        )
    else:
        differences = compare_history(history[0], now)
        scope = "epoch 1 of history.csv at 6 significant digits (a run recorded before first_epoch: not bit for bit)"
    if differences:
        print(f"DIFFERENT from the record ({scope}): " + "; ".join(differences))
        return 1
    print(f"EQUAL to the record ({scope})")
    return 0


_main = one_line_failures(main)

if __name__ == "__main__":
    sys.exit(_main())
