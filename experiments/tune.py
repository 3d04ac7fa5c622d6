"""Choose a lam on the validation split: ``python -m experiments.tune CONFIG --target S --lam L [L ...]``.

Runs seed 0 of CONFIG at a series of lam values (``method.lam``), each as its own experiment
``<name>_lam<lam>`` under ``--results`` (default ``results/<profile>_tuning``), with the test set
never read (``--no-test``): each run reports its weight sparsity and its validation accuracy.
The first values are the ones given; then, while no run lands within ``--within`` of the target
sparsity, the next lam is interpolated between the nearest runs below and above the target (in
log lam against the logit of the sparsity, which rises with lam up to a run's own variation), or
extrapolated from the two nearest when all runs lie on one side. Of the runs within the band,
the one with the best validation accuracy is chosen; with ``--closest``, when none lands in
``--max-runs``, the run closest to the target is (the record and the comment say so). A finished
run of a config that trains exactly as the one asked for (another target's tuning at the same
lam) is reused, not run again, but only if it was trained on the same data (``data_fingerprint``)
by the same code (``code_sha256``), as the runner's identity rules ask. The record (every run, the
choice and the rule) is written to ``<results>/<name>.json``; ``--update`` writes the chosen lam and
a comment citing the validation numbers into CONFIG itself.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

from experiments.arguments import fraction, one_line_failures, positive_float, positive_int
from training.build import build_data
from training.config import ExperimentConfig, load_config
from training.data import DataError
from training.loop import TrainingDiverged
from training.record_schema import RecordError, read_config, read_metrics, skip, warnings_to_stderr
from training.records import atomic_write_json, atomic_write_text
from training.runner import RunBusy, RunConflict, RunCorrupt, run_one
from training.schema import ConfigError, to_dict

BAND = "of the runs within the band, the best validation accuracy"
CLOSEST = "no run landed within the band: the one closest to the target is chosen"


def lam_name(lam: float) -> str:
    # Three significant figures: where the sparsity is steep in lam (the channel penalty: 1.4e-4 -> 5%,
    # 1.8e-4 -> 35%), two would round the interpolated lam back onto one already run.
    return f"{lam:.3g}"


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def next_lam(trials: list[dict[str, Any]], target: float) -> float:
    """The next lam to try: interpolated across the target, else extrapolated (x/÷ 2 at most 4)."""
    below = sorted((t for t in trials if t["sparsity"] < target), key=lambda t: t["sparsity"])
    above = sorted((t for t in trials if t["sparsity"] >= target), key=lambda t: t["sparsity"])
    if below and above:
        a, b = below[-1], above[0]
    else:
        side = below or above
        pair = side[-2:] if below else side[:2]
        if len(pair) < 2 or pair[0]["lam"] == pair[1]["lam"]:
            return side[-1]["lam"] * 2 if below else side[0]["lam"] / 2
        a, b = pair
    x_a, x_b, y_a, y_b = math.log(a["lam"]), math.log(b["lam"]), logit(a["sparsity"]), logit(b["sparsity"])
    if y_a == y_b:
        return math.exp((x_a + x_b) / 2)
    x = x_a + (logit(target) - y_a) * (x_b - x_a) / (y_b - y_a)
    low, high = min(x_a, x_b) - math.log(4), max(x_a, x_b) + math.log(4)
    return float(lam_name(math.exp(min(max(x, low), high))))


def training_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A resolved config without what does not change one seed's training (name, description, seeds)."""
    return {k: v for k, v in cfg.items() if k not in ("name", "description", "seed", "seeds")}


def same_run(cfg: ExperimentConfig, out: Path, identity: dict[str, str]) -> Path | None:
    """A finished seed-0 run under ``out`` that trained exactly as ``cfg`` would now: the same config
    (the configs of two targets differ only in name and description until lam sets them apart), the
    same data (``identity``: ``data_fingerprint``, as ``current_identity`` gives it), else None. As the
    runner skips a finished run whatever the code now is, so is another target's run reused (its
    metrics.json records the code that trained it). A run whose records fail their checks is named
    and passed over."""
    wanted = training_config(to_dict(cfg))
    for path in sorted(out.glob("*/seed0/metrics.json")):
        try:
            metrics, resolved = read_metrics(path), read_config(path.parent / "config.yaml")
        except RecordError as exc:
            skip(exc)
            continue
        if (
            resolved.get("seed") == 0
            and training_config(resolved) == wanted
            and metrics["seed"] == 0
            and metrics["data_fingerprint"] == identity["data_fingerprint"]
        ):
            return path.parent
    return None


def current_identity(cfg: ExperimentConfig, data_root: Path) -> dict[str, str]:
    """The data fingerprint of what ``cfg`` loads from ``data_root`` now."""
    _, _, _, info = build_data(cfg, data_root, torch.device("cpu"), 0, False)
    return {"data_fingerprint": info["data_fingerprint"]}


def choose(trials: list[dict[str, Any]], target: float, within: float) -> dict[str, Any] | None:
    landed = [t for t in trials if abs(t["sparsity"] - target) <= within]
    return max(landed, key=lambda t: t["val_acc"]) if landed else None


def closest(trials: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The run nearest the target sparsity (``--closest``, when none lands in the band)."""
    return min(trials, key=lambda t: abs(t["sparsity"] - target))


def update_config(path: Path, chosen: dict[str, Any], record: dict[str, Any]) -> None:
    """Write the chosen lam into the YAML, and a comment with the validation numbers of every run."""
    text = path.read_text()
    lines = [
        f"# lam chosen on the validation split (python -m experiments.tune, seed 0, test set not read), target "
        f"{100 * record['target']:g}% +- {100 * record['within']:g} points of weight sparsity:"
    ]
    for t in sorted(record["trials"], key=lambda t: t["lam"]):
        mark = "  <- chosen" if t is chosen or t["lam"] == chosen["lam"] else ""
        lines.append(
            f"#   lam {lam_name(t['lam'])}: sparsity {100 * t['sparsity']:.1f}%, validation accuracy "
            f"{100 * t['val_acc']:.1f}%{mark}"
        )
    if record.get("rule") == CLOSEST:
        lines.append(f"#   {CLOSEST}")
    block = "\n".join(lines) + "\n"
    marker = re.compile(r"^# lam(?::| chosen) .*\n(?:#   (?:lam|no run) .*\n)*", re.M)
    text = marker.sub(block, text, count=1) if marker.search(text) else block + text
    text = re.sub(r"^(\s*lam: )\S+", lambda m: m[1] + lam_name(chosen["lam"]), text, count=1, flags=re.M)
    text = re.sub(r"(method: \{[^}]*\blam: )[^,}]+", lambda m: m[1] + lam_name(chosen["lam"]), text, count=1)
    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    with warnings_to_stderr():  # a skipped record: one line on stderr
        return _tune(argv)


def _tune(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--target", type=fraction, required=True, help="weight sparsity to reach, a fraction")
    p.add_argument("--within", type=fraction, default=0.02, help="accepted distance from the target (default 0.02)")
    p.add_argument("--lam", type=positive_float, nargs="+", required=True, help="first lam values to try")
    p.add_argument("--max-runs", type=positive_int, default=6)
    p.add_argument(
        "--closest",
        action="store_true",
        help="when no run lands within the band, choose the one closest to the target (and say so)",
    )
    p.add_argument("--profile", default="subset")
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--update", action="store_true", help="write the chosen lam and the numbers into CONFIG")
    args = p.parse_args(argv)
    out = args.results or Path("results") / f"{args.profile}_tuning"
    data_root = args.data_root or Path(os.environ.get("DATA_ROOT") or "data")
    trials: list[dict[str, Any]] = []
    try:
        base_cfg = load_config(args.config, profile=args.profile)
        base = base_cfg.name
        queue = [float(lam_name(lam)) for lam in args.lam]
        identity = current_identity(base_cfg, data_root)
        while len(trials) < args.max_runs:
            lam = queue.pop(0) if queue else next_lam(trials, args.target)
            if any(t["lam"] == lam for t in trials):
                break  # converged on a value already run
            name = f"{base}_lam{lam_name(lam)}"
            cfg = load_config(args.config, [f"method.lam={lam}", f"name={name}"], profile=args.profile)
            run = same_run(cfg, out, identity)  # another target's tuning may have run this very config
            if run is None:
                run_one(cfg, 0, out, data_root, torch.device("cpu"), progress=False, test=False)
                run = out / name / "seed0"
            metrics = read_metrics(run / "metrics.json")  # of this data: same_run and the runner see to it
            trials.append(
                {
                    "lam": lam,
                    "sparsity": metrics["sparsity"],
                    "val_acc": metrics["val_acc"],
                    "val_loss": metrics["val_loss"],
                    "run": str(run),
                }
            )
            print(
                f"[tune] {base}: lam {lam_name(lam)} -> sparsity {metrics['sparsity']:.4f}, "
                f"validation accuracy {metrics['val_acc']:.4f}"
            )
            if not queue and choose(trials, args.target, args.within):
                break
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (RunBusy, RunConflict, RunCorrupt, RecordError, TrainingDiverged) as exc:
        # nothing is chosen, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    chosen = choose(trials, args.target, args.within)
    rule = BAND
    if chosen is None and args.closest and trials:
        chosen = closest(trials, args.target)
        rule = CLOSEST
    record = {
        "config": str(args.config),
        "experiment": base,
        "profile": args.profile,
        "target": args.target,
        "within": args.within,
        "rule": rule,
        "trials": trials,
        "chosen_lam": chosen["lam"] if chosen else None,
    }
    atomic_write_json(out / f"{base}.json", record)
    if chosen is None:
        print(f"error: {base}: no lam within {args.within} of {args.target} in {len(trials)} runs", file=sys.stderr)
        return 1
    print(
        f"[tune] {base}: lam {lam_name(chosen['lam'])} (sparsity {chosen['sparsity']:.4f}, validation accuracy "
        f"{chosen['val_acc']:.4f})"
    )
    if args.update:
        update_config(args.config, chosen, record)
    return 0


_main = one_line_failures(main)  # a path it cannot read or write, however far in: one line

if __name__ == "__main__":
    sys.exit(_main())
