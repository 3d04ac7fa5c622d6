"""What each subset config trains, read from its plan: the stages, the optimizer steps of the final stage
(what the measured model last trained) and in total; and which configs' runs are explicitly pending.

``budgets(config_dir)`` plans every ``<family>/subset/*.yaml`` under ``config_dir`` for the subset
profile (``training.config.plan``) on the subset's own epoch length (its training images less the
validation split, ``training.subset.ROWS``); ``budgets_markdown`` groups the configs that train the
same stages into one README row. ``pending(results)`` reads ``results/<profile>/pending.txt``: the
configs whose runs (all, or some seeds) are not committed yet, each with its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training import config
from training.files import read_text_bounded
from training.subset import ROWS

PENDING_FILE = "pending.txt"
SUBSET_TRAIN_IMAGES = sum(n for name, n in ROWS.items() if name.startswith("data_batch"))


@dataclass(frozen=True)
class Pending:
    """Runs of one experiment not committed yet: ``seeds`` (None: every seed) and why."""

    reason: str
    seeds: frozenset[int] | None = None

    def covers(self, seed: int) -> bool:
        return self.seeds is None or seed in self.seeds

    def label(self) -> str:
        if self.seeds is None:
            return "runs pending"
        return f"seed{'s' if len(self.seeds) > 1 else ''} {', '.join(map(str, sorted(self.seeds)))} pending"


def pending(results: str | Path) -> dict[str, Pending]:
    """Experiment -> its pending runs, from ``results/pending.txt``: a line is ``NAME`` (every seed) or
    ``NAME seeds K [K ...]``, the reason after '#'; empty where there is no such file. A malformed
    line is a ValueError naming it."""
    path = Path(results) / PENDING_FILE
    if not path.is_file():
        return {}
    out = {}
    for number, line in enumerate(read_text_bounded(path, 1 << 20).splitlines(), start=1):
        entry, _, reason = line.partition("#")
        words = entry.split()
        if not words:
            continue
        if len(words) > 1 and (words[1] != "seeds" or len(words) < 3 or not all(w.isdigit() for w in words[2:])):
            raise ValueError(f"{path}:{number}: expected 'NAME' or 'NAME seeds K [K ...]', got {entry.strip()!r}")
        seeds = frozenset(int(w) for w in words[2:]) if len(words) > 1 else None
        out[words[0]] = Pending(reason.strip(), seeds)
    return out


def budgets(config_dir: str | Path, profile: str = "subset") -> pd.DataFrame:
    """One row per config of ``profile`` under ``config_dir``: name, stages ("train 3 + round1 3 ..."),
    steps_per_epoch, final_steps and steps (optimizer steps of the final stage, and in all)."""
    rows = []
    for path in sorted(Path(config_dir).rglob(f"{profile}/*.yaml")):
        cfg = config.load_config(path, profile=profile)
        per_epoch = math.ceil((SUBSET_TRAIN_IMAGES - (cfg.data.validation or 0)) / cfg.data.batch_size)
        stages = config.plan(cfg, per_epoch)
        rows.append(
            {
                "name": cfg.name,
                "method": cfg.method.name,
                "stages": " + ".join(f"{s.name} {s.epochs}" for s in stages),
                "steps_per_epoch": per_epoch,
                "final_steps": stages[-1].epochs * per_epoch,
                "steps": sum(s.epochs for s in stages) * per_epoch,
            }
        )
    return pd.DataFrame(rows, columns=["name", "method", "stages", "steps_per_epoch", "final_steps", "steps"])


def budgets_markdown(config_dir: str | Path, profile: str = "subset") -> str:
    """``budgets`` as the README's table: configs that train the same stages share a row."""
    table = budgets(config_dir, profile)
    waiting = pending(Path(config_dir).resolve().parents[1] / "results" / profile)
    header = ["configs", "stages (epochs each)", "final stage (steps)", "in all (steps)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for (stages, final, steps), group in table.groupby(["stages", "final_steps", "steps"], sort=False):
        names = ", ".join(f"`{n}`" + (f" ({waiting[n].label()})" if n in waiting else "") for n in group["name"])
        lines.append(f"| {names} | {stages} | {final} | {steps} |")
    per_epoch = sorted(set(table["steps_per_epoch"]))
    lines += [
        "",
        f"Planned from each YAML for the {profile} profile (`training.config.plan`), at "
        f"{', '.join(map(str, per_epoch))} optimizer steps an epoch ({SUBSET_TRAIN_IMAGES} training images of "
        "the subset less the validation split, batch 128). The final stage is what the measured model last "
        "trained: a multi-stage method's ticket or fine-tuned network trains only that stage's steps from its "
        "mask.",
    ]
    return "\n".join(lines) + "\n"
