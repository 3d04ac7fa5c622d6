"""Load what the runner wrote under a results folder into tables, for notebooks and summaries."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml


def load_runs(results: str | Path) -> list[dict[str, Any]]:
    """One record per finished run (a folder with metrics.json): metrics plus its resolved config."""
    runs = []
    for metrics_path in sorted(Path(results).glob("*/seed*/metrics.json")):
        run = json.loads(metrics_path.read_text())
        config_path = metrics_path.parent / "config.yaml"
        run["config"] = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
        run["run_dir"] = str(metrics_path.parent)
        runs.append(run)
    return runs


def load_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows of one run, numbers as floats (epoch counts as ints)."""
    rows = []
    with open(Path(run_dir) / "history.csv") as f:
        for row in csv.DictReader(f):
            rows.append({k: (v if k == "stage" else int(v) if k in ("epoch", "stage_epoch") else float(v))
                         for k, v in row.items()})
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per experiment: mean +- std over its seeds of the headline numbers."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["name"], []).append(run)
    rows = []
    for name, group in sorted(groups.items()):
        first = group[0]
        acc, acc_std = mean_std([r["test_acc"] for r in group])
        sparsity, sparsity_std = mean_std([r["sparsity"] for r in group])
        flops = mean_std([r["flops_effective"] / r["flops_dense"] for r in group])[0]
        rows.append({
            "name": name, "method": first["method"], "model": first["model"], "dataset": first["dataset"],
            "data": first.get("data_label", first["dataset"]), "profile": first.get("profile", ""),
            "seeds": len(group), "epochs": first["epochs"],
            "test_acc": acc, "test_acc_std": acc_std, "sparsity": sparsity, "sparsity_std": sparsity_std,
            "flops_kept": flops, "params_nonzero": mean_std([r["params_nonzero"] for r in group])[0],
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of ``summarise`` rows for the terminal."""
    header = f"{'experiment':42s} {'method':10s} {'model':10s} {'data':8s} {'seeds':>5s} {'epochs':>6s} " \
             f"{'test acc (%)':>15s} {'sparsity (%)':>13s} {'FLOPs kept':>10s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = f"{100 * r['test_acc']:.2f} +- {100 * r['test_acc_std']:.2f}"
        lines.append(f"{r['name'][:42]:42s} {r['method'][:10]:10s} {r['model'][:10]:10s} {r['dataset'][:8]:8s} "
                     f"{r['seeds']:5d} {r['epochs']:6d} {acc:>15s} {100 * r['sparsity']:13.2f} "
                     f"{100 * r['flops_kept']:9.1f}%")
    labels = sorted({r["data"] for r in rows})
    if labels:
        lines.append("data: " + "; ".join(labels))
    return "\n".join(lines)
