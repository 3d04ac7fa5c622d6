"""Benchmark records (``results/bench/*.json``) -> the README's tables and the values its prose quotes,
so that a speed figure is read off its record, never typed beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.files import read_text_bounded

DENSE = "dense sgd"  # the variant every ratio is taken to (experiments.bench.train)
WITHIN = 0.95  # a method "costs what dense costs" when its images/s are at least this share of dense's


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(read_text_bounded(path, 16 << 20))


def record_value(path: Path, field: str) -> Any:
    """``field`` (dotted: ``results.resnet20.l0hc.ratio_to_dense``; a list index is a number) of the
    record at ``path``; a KeyError names what is missing."""
    value: Any = read_record(path)
    for part in field.split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError):
            raise KeyError(f"{path.name}: no {field!r}") from None
    return value


def train_markdown(record: dict[str, Any]) -> str:
    """``bench train``'s record as the README shows it: one table a model (images/s, ratio to dense,
    kernels a step and what each method adds), the variants within ``WITHIN`` of dense and those not,
    and how it was measured (from the record's own settings and load)."""
    load = record.get("load_average_1min") or []
    lines = [
        f"{record['device']}, torch {record['torch']}; batch {record['batch']}, {record['steps']} steps an "
        f"epoch, the median of {record['epochs']} epochs after {record['warmup']} warm-up, the variants "
        "in turns" + (f"; 1-minute load {min(load):.1f} to {max(load):.1f} while it ran" if load else "") + ".",
        "",
    ]
    for model, rows in record["results"].items():
        ops = record.get("operators_per_step", {}).get(model, {})
        lines += [
            f"| {model} | images/s | x dense SGD | kernels per step | added to dense |",
            "|---|---|---|---|---|",
        ]
        for name, row in rows.items():
            op = ops.get(name, {})
            ratio = "" if row["ratio_to_dense"] is None else f"{row['ratio_to_dense']:.2f}"
            lines.append(
                f"| {name} | {row['images_per_s']:.0f} | {ratio} | {op.get('kernel_operators', '')} "
                f"| {op.get('added_kernel_operators', '')} |"
            )
        methods = {n: r["ratio_to_dense"] for n, r in rows.items() if n in ops and n != DENSE}
        within = [n for n, r in methods.items() if r >= WITHIN]
        short = [f"{n} ({r:.3f})" for n, r in methods.items() if r < WITHIN]
        lines += [
            "",
            f"Within {1 - WITHIN:.0%} of dense ({model}): {', '.join(within) or 'none'}; "
            f"not: {', '.join(short) or 'none'}.",
            "",
        ]
    return "\n".join(lines)
