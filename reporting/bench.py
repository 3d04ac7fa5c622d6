"""Benchmark records (``results/bench/*.json``) -> the README's tables and the values its prose quotes,
so that a speed figure is read off its record, never typed beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.files import read_text_bounded

DENSE = "dense sgd"  # the variant every ratio is taken to (experiments.bench.train)
CONTROL = "dense sgd (control)"  # dense again: what the benchmark reads where there is no difference
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


def speed_ratio(row: dict[str, Any]) -> float | None:
    """The ratio to dense a verdict reads: the median of the paired rounds where the record has them
    (``experiments.bench.train.paired_ratio``), else the ratio of the median epochs (older records)."""
    paired = row.get("paired_ratio_to_dense")
    return paired["median"] if paired else row["ratio_to_dense"]


def control_note(row: dict[str, Any] | None) -> str:
    """What the A/A control (dense against itself) says about the record's resolution."""
    if row is None:
        return ""
    ratio = speed_ratio(row)
    paired = row.get("paired_ratio_to_dense")
    spread = f" [{paired['interval'][0]:.3f}, {paired['interval'][1]:.3f}]" if paired else ""
    note = f" The A/A control, dense SGD against a second copy of itself, reads {ratio:.3f}{spread}"
    if abs(ratio - 1) > 1 - WITHIN:
        return note + (
            f": off by more than {1 - WITHIN:.0%} where there is no difference, so this record cannot tell "
            f"which methods are within {1 - WITHIN:.0%} of dense."
        )
    if paired and not paired["interval"][0] <= 1 <= paired["interval"][1]:
        side = "methods over dense" if ratio > 1 else "dense over the methods"
        return note + (
            f": its interval excludes 1, so this record favours the {side} by about {abs(ratio - 1):.0%}, "
            "and a method within that of the verdict's line is not settled by it."
        )
    return note + "."


def train_markdown(record: dict[str, Any]) -> str:
    """``bench train``'s record as the README shows it: one table a model (images/s, ratio to dense,
    kernels a step and what each method adds), the variants within ``WITHIN`` of dense and those not,
    and how it was measured (from the record's own settings and load)."""
    load = record.get("load_average_1min") or []
    lines = [
        f"{record['device']}, torch {record['torch']}; batch {record['batch']}, {record['steps']} steps an "
        f"epoch, the median of {record['epochs']} epochs after {record['warmup']} warm-up, the variants "
        "in turns"
        + (", the order rotated every round" if "rotated" in record.get("interleaved", "") else "")
        + (f"; 1-minute load {min(load):.1f} to {max(load):.1f} while it ran" if load else "")
        + ".",
        "",
    ]
    for model, rows in record["results"].items():
        ops = record.get("operators_per_step", {}).get(model, {})
        paired = any("paired_ratio_to_dense" in row for row in rows.values())
        lines += [
            f"| {model} | images/s | x dense SGD |"
            + (" paired rounds: median [interval] |" if paired else "")
            + " kernels per step | added to dense |",
            "|---|---|---|" + ("---|" if paired else "") + "---|---|",
        ]
        for name, row in rows.items():
            op = ops.get(name, {})
            ratio = "" if row["ratio_to_dense"] is None else f"{row['ratio_to_dense']:.2f}"
            cells = [name, f"{row['images_per_s']:.0f}", ratio]
            if paired:
                p = row.get("paired_ratio_to_dense")
                cells.append(f"{p['median']:.3f} [{p['interval'][0]:.3f}, {p['interval'][1]:.3f}]" if p else "")
            cells += [str(op.get("kernel_operators", "")), str(op.get("added_kernel_operators", ""))]
            lines.append("| " + " | ".join(cells) + " |")
        methods = {n: r for n, r in rows.items() if n in ops and n not in (DENSE, CONTROL)}
        within = [n for n, r in methods.items() if speed_ratio(r) >= WITHIN]
        short = [f"{n} ({speed_ratio(r):.3f})" for n, r in methods.items() if speed_ratio(r) < WITHIN]
        unsettled = [
            n
            for n, r in methods.items()
            if speed_ratio(r) >= WITHIN and r.get("paired_ratio_to_dense", {}).get("interval", [WITHIN])[0] < WITHIN
        ]
        coverage = {r["paired_ratio_to_dense"]["coverage"] for r in methods.values() if "paired_ratio_to_dense" in r}
        basis = (
            f"the median of the paired rounds; the interval is the order-statistic interval of that median "
            f"({min(coverage):.1%} coverage)"
            if coverage
            else "the ratio of the median epochs"
        )
        lines += [
            "",
            f"Within {1 - WITHIN:.0%} of dense ({model}, by {basis}): {', '.join(within) or 'none'}; "
            f"not: {', '.join(short) or 'none'}."
            + (
                f" Within by the median, but with an interval reaching below {WITHIN}: {', '.join(unsettled)}."
                if unsettled
                else ""
            )
            + control_note(rows.get(CONTROL)),
            "",
        ]
    return "\n".join(lines)
