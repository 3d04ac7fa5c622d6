"""Does a code change move a run's numbers? ``python -m experiments.code_change RUN_DIR [--revision REV]
[--epochs N]``.

Trains the run's recorded config (its config.yaml, at seed 0) twice on this machine, at the same
time and with the same thread count: once with the code of git revision REV (by default the one
the run recorded), checked out into a temporary worktree and run by that revision's own runner, and
once with the code of this checkout. After N epochs (default: all of them) both are stopped and
their checkpoints compared bit for bit: the model, the method's state, the optimizers and
schedulers, and every number of the history but the epoch's seconds.

This answers what ``experiments.verify`` cannot when a record comes from another CPU type: a
replay there differs whatever the code, since bit-reproducibility holds only on one CPU type. Two
codes on one machine differ only through the code. Seed 0, because every revision's runner can run
it alone (``--seeds 1``); the code path does not depend on the seed.
Exit status: 0 equal, 1 different, 2 bad arguments or records, 3 a side failed to train.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from experiments.arguments import one_line_failures, positive_int
from training.record_schema import RecordError, read_config, read_env, read_metrics
from training.records import HISTORY_FIELDS, atomic_write_json, cpu_info, environment, git_revision

ROOT = Path(__file__).resolve().parent.parent
STATES = ("model", "method", "optimizers", "schedulers")
NUMBERS = tuple(f for f in HISTORY_FIELDS if f != "seconds")  # an epoch's wall time is no number of the run
# How torch computes an optimizer step, not what it computes: a difference here is reported apart,
# and the states say whether it changed a number.
KERNEL_CHOICES = ("fused", "foreach", "capturable", "differentiable")


class SideFailed(RuntimeError):
    """One side's runner ended before it reached the epochs asked for."""


def differences(a: Any, b: Any, where: str = "") -> Iterator[str]:
    """Where two checkpoint entries differ, bit for bit (tensors by their bytes, dtype and shape;
    containers entry by entry; anything else by ==, with NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            yield f"{where}: {a.dtype}{tuple(a.shape)} against {b.dtype}{tuple(b.shape)}"
        elif not torch.equal(_bytes(a), _bytes(b)):
            gap = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else None
            yield f"{where}: differs" + (f" (largest gap {gap:.3g})" if gap is not None else "")
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            inner = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                yield f"{inner}: only in the {'second' if key not in a else 'first'}"
            else:
                yield from differences(a[key], b[key], inner)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            yield f"{where}: {len(a)} entries against {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]")
    elif not (a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)):
        yield f"{where}: {a!r} against {b!r}"


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """A tensor's bytes: equal bytes is equality bit for bit (NaN with NaN, -0.0 apart from 0.0)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def compare_checkpoints(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What differs between two checkpoints of the same epoch: (numbers: the states, then the
    history; the optimizers' kernel choices, which are not numbers)."""
    found = [d for key in STATES for d in differences(a.get(key), b.get(key), key)]
    for i, (x, y) in enumerate(zip(a["history"], b["history"])):
        found += [
            f"history epoch {i + 1} {k}: {x.get(k)!r} against {y.get(k)!r}"
            for k in NUMBERS
            if not _eq(x.get(k), y.get(k))
        ]
    kernel = [d for d in found if d.split(":")[0].rsplit(".", 1)[-1] in KERNEL_CHOICES]
    return [d for d in found if d not in kernel], kernel


def _eq(x: Any, y: Any) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y)


def train_side(code: Path, config: Path, profile: str, data_root: Path, out: Path, threads: int) -> subprocess.Popen:
    """Start ``code``'s own runner on ``config`` at seed 0, its output in ``out``/runner.log (a process
    group of its own, so that it can be stopped with whatever it started)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(code))
    command = [sys.executable, "-m", "experiments.run", str(config), "--profile", profile, "--seeds", "1"]
    command += ["--results", str(out), "--data-root", str(data_root), "--device", "cpu", "--no-progress"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "runner.log", "w") as log:
        return subprocess.Popen(
            command, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def checkpoint_after(
    proc: subprocess.Popen, ckpt: Path, log: Path, epochs: int, finish: bool, poll_s: float = 0.05
) -> dict[str, Any]:
    """The checkpoint of epoch ``epochs``: the run is stopped when it is written or, ``finish``
    (the last epoch), left to end and write its metrics. The file is read only when it changes, so
    the poll can be quick: the run must be stopped before its next epoch ends."""
    if finish:
        proc.wait()
    seen = None
    while True:
        done = proc.poll() is not None
        stamp = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        if stamp is not None and (stamp != seen or done):
            seen = stamp
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            reached = len(state["history"])
            if reached >= epochs or done:
                if not done:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                if reached != epochs or (finish and proc.returncode):
                    raise SideFailed(
                        f"it ended after {reached} epoch(s), exit {proc.returncode}"
                        if reached <= epochs
                        else f"it was stopped after epoch {reached}, not {epochs} (a busy machine): rerun"
                    )
                return state
        if done and stamp is None:
            err = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            raise SideFailed(f"exit {proc.returncode}: {err[-1] if err else 'no output'}")
        time.sleep(poll_s)


def main(argv: list[str] | None = None, code: Path = ROOT) -> int:
    """The command line; ``code`` is the checkout whose code is compared with the revision's."""
    p = argparse.ArgumentParser(prog="python -m experiments.code_change", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run folder: RESULTS/<name>/seed<k>")
    p.add_argument("--revision", default=None, help="the other code: a git revision (default: the run's own)")
    p.add_argument("--epochs", type=positive_int, default=None, help="compare after N epochs (default: all)")
    p.add_argument("--data-root", type=Path, default=None, help="the run's data (default: $DATA_ROOT, else ./data)")
    p.add_argument(
        "--record",
        type=Path,
        default=None,
        help="add the outcome to this JSON file (one entry per run, revision, epochs)",
    )
    args = p.parse_args(argv)
    data_root = args.data_root or Path(os.environ.get("DATA_ROOT") or "data")
    try:
        resolved = read_config(args.run_dir / "config.yaml")
        env = read_env(args.run_dir / "env.json")
        metrics = read_metrics(args.run_dir / "metrics.json") if (args.run_dir / "metrics.json").exists() else {}
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    revision = args.revision or env.get("git_revision", "unknown")
    if revision.endswith("-dirty") or revision == "unknown":
        print(
            f"error: {args.run_dir}: recorded at {revision}, code that git does not hold; name --revision",
            file=sys.stderr,
        )
        return 2
    epochs = args.epochs or resolved["train"]["epochs"]
    threads = int(metrics.get("threads") or env.get("torch_threads") or 1)
    with tempfile.TemporaryDirectory(prefix="code_change.") as tmp:
        work = Path(tmp)
        made = subprocess.run(
            ["git", "worktree", "add", "--detach", str(work / "code"), revision],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if made.returncode:
            print(f"error: --revision {revision}: {made.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            return 2
        try:
            outcome = _compare(args.run_dir, resolved, work, revision, code, data_root, epochs, threads)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(work / "code")], cwd=ROOT, capture_output=True)
    if args.record is not None and outcome["status"] in (0, 1):
        entry = {
            "run": str(args.run_dir),
            "experiment": resolved["name"],
            "revision": full_sha(revision),
            "checkout": outcome["checkout"],
            "epochs": epochs,
            "threads": threads,
            "data_fingerprint": metrics.get("data_fingerprint"),
            "equal": outcome["status"] == 0,
            "differences": outcome["differences"][:20],
            "kernel_choices": outcome["kernel"],
            "final": outcome["final"],
            "date": time.strftime("%Y-%m-%d"),
            "command": "python -m experiments.code_change " + " ".join(argv if argv is not None else sys.argv[1:]),
            "environment": environment(torch.device("cpu")),
        }
        add_record(args.record, entry)
    return outcome["status"]


def full_sha(revision: str) -> str:
    """The full commit a revision names (it was checked out, so git knows it)."""
    return subprocess.run(["git", "rev-parse", revision], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def add_record(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` to ``path`` (atomically), replacing an earlier one of the same run, revision and epochs."""
    records = json.loads(path.read_text())["comparisons"] if path.exists() else []
    same = ("run", "revision", "epochs")
    records = [r for r in records if any(r.get(k) != entry[k] for k in same)] + [entry]
    atomic_write_json(path, {"comparisons": records})


def _compare(
    run_dir: Path,
    resolved: dict[str, Any],
    work: Path,
    revision: str,
    code: Path,
    data_root: Path,
    epochs: int,
    threads: int,
) -> dict[str, Any]:
    """Train both sides, compare them and print the outcome: {"status": the exit status,
    "differences": [...], "kernel": [...], "checkout": this checkout's revision when it started,
    "final": each side's final test and validation accuracy and sparsity, for a whole run}."""
    config = work / f"{resolved['name']}.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in resolved.items() if k != "seed"}, sort_keys=False))
    here, cpu = git_revision(code), cpu_info()
    print(
        f"code_change {run_dir}: {resolved['name']}'s recorded config, seed 0, {epochs} epoch(s), at {revision[:7]} "
        f"and at this checkout ({here[:7]}{'-dirty' if here.endswith('-dirty') else ''}), side by side on "
        f"{cpu['model_name']} ({cpu['family']}/{cpu['model']}/{cpu['stepping']}) with {threads} thread(s) each"
    )
    sides = {
        "then": (work / "code", work / "then"),
        "now": (code, work / "now"),
    }
    profile = str(resolved.get("profile") or "full")
    procs = {k: train_side(tree, config, profile, data_root, out, threads) for k, (tree, out) in sides.items()}
    states: dict[str, dict[str, Any]] = {}
    try:
        for k, proc in procs.items():
            ckpt = sides[k][1] / resolved["name"] / "seed0" / "checkpoint.pt"
            try:
                finish = epochs == resolved["train"]["epochs"]
                states[k] = checkpoint_after(proc, ckpt, sides[k][1] / "runner.log", epochs, finish)
            except SideFailed as exc:
                print(f"error: the run at {revision[:7] if k == 'then' else 'this checkout'}: {exc}", file=sys.stderr)
                return {"status": 3}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    found, kernel = compare_checkpoints(states["then"], states["now"])
    scope = f"after epoch {epochs}: model, method state, optimizers, schedulers and the history's numbers"
    if kernel:
        print("note: the optimizers compute their step another way (" + "; ".join(kernel) + ")")
    if found:
        print(f"DIFFERENT {scope}: " + "; ".join(found[:5]) + (f"; {len(found) - 5} more" if len(found) > 5 else ""))
    else:
        print(f"EQUAL bit for bit {scope}")
    # a whole run also wrote its final metrics: what the difference (if any) comes to
    final = {k: _final(out / resolved["name"] / "seed0" / "metrics.json") for k, (_, out) in sides.items()}
    return {"status": 1 if found else 0, "differences": found, "kernel": kernel, "checkout": here, "final": final}


def _final(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    return {k: metrics.get(k) for k in ("test_acc", "val_acc", "sparsity")}


_main = one_line_failures(main)

if __name__ == "__main__":
    sys.exit(_main())
