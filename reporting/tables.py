"""The summary table, one row per experiment: for the notebooks (Markdown, CSV) and the terminal.

``summary_frame`` is the one pipeline; ``summary_markdown`` and ``summary_text`` only format it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from reporting.results import aggregate, paired_differences

REPORTED_FILE = Path(__file__).resolve().parent / "reported.yaml"


def reported_numbers(path: Path = REPORTED_FILE) -> dict[str, dict[str, Any]]:
    """What the reproduced papers or their releases report for an experiment, keyed by its name
    (``reporting/reported.yaml``: test_acc, params, source)."""
    return yaml.safe_load(path.read_text()) or {}


SUMMARY_COLUMNS = (
    "experiment",
    "variant",
    "model",
    "dataset",
    "profile",
    "seeds",
    "epochs",
    "test_acc_pct",
    "test_acc_std_pct",
    "test_acc_ci_pct",
    "control",
    "diff_pct",
    "diff_ci_pct",
    "val_acc_pct",
    "sparsity_pct",
    "sparsity_std_pct",
    "compression",
    "flops_kept_pct",
    "params_nonzero",
    "params_kept_pct",
    "paper_test_acc_pct",
    "paper_params",
    "paper_source",
    "data",
    "code_identities",
)


def summary_frame(frame: pd.DataFrame, reported: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """The summary table, one row per experiment (mean, sample std and 95% t-interval half-width over
    seeds), in percent; ``control`` is the experiment's matched dense control
    (``results.matched_controls``) and ``diff_pct`` / ``diff_ci_pct`` the mean and 95% interval of the
    paired (same seed) difference in test accuracy to it, in percentage points.

    Columns: SUMMARY_COLUMNS. ``paper_*`` come from ``reported`` (default ``reported_numbers()``) keyed by
    experiment name and stay empty (NaN / "") for experiments without a cited figure.
    Rows are sorted by dataset, model, variant (the methods' legend order) and sparsity.
    ``code_identities`` counts the code identities of an experiment's runs (``results.aggregate``);
    the formatted tables mark an experiment whose runs come from more than one.
    """
    reported = reported_numbers() if reported is None else reported
    points = aggregate(frame)
    diffs = paired_differences(frame).set_index("name") if not frame.empty else pd.DataFrame()
    rows = []
    for _, p in points.iterrows():
        paper = reported.get(p["name"], {})
        diff = diffs.loc[p["name"]] if p["name"] in diffs.index else {}
        rows.append(
            {
                "experiment": p["name"],
                "variant": p["variant"],
                "model": p["model"],
                "dataset": p["dataset"],
                "profile": p["profile"],
                "seeds": int(p["seeds"]),
                "epochs": p["epochs"],
                "test_acc_pct": 100 * p["test_acc"],
                "test_acc_std_pct": 100 * p["test_acc_std"],
                "test_acc_ci_pct": 100 * p["test_acc_ci"],
                "control": diff["control"] if len(diff) else "",
                "diff_pct": 100 * diff["test_acc_diff"] if len(diff) else math.nan,
                "diff_ci_pct": 100 * diff["test_acc_diff_ci"] if len(diff) else math.nan,
                "val_acc_pct": 100 * p["val_acc"] if "val_acc" in p else math.nan,
                "sparsity_pct": 100 * p["sparsity"],
                "sparsity_std_pct": 100 * p["sparsity_std"],
                "compression": p["compression"],
                "flops_kept_pct": 100 * p["flops_kept"],
                "params_nonzero": p["params_nonzero"],
                "params_kept_pct": 100 * p["params_kept"],
                "paper_test_acc_pct": 100 * paper["test_acc"] if "test_acc" in paper else math.nan,
                "paper_params": str(paper.get("params", "")),
                "paper_source": paper.get("source", ""),
                "data": p["data_label"],
                "code_identities": int(p["code_identities"]) if "code_identities" in p else 1,
            }
        )
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if table.empty:
        return table
    table = table.assign(_order=list(points["order"]), _variant=list(points["variant"]))
    table = table.sort_values(["dataset", "model", "_order", "_variant", "sparsity_pct", "experiment"])
    return table.drop(columns=["_order", "_variant"]).reset_index(drop=True)


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def _mean_pm_std(mean: float, std: float, ci: float = math.nan) -> str:
    """ "mean ± std [± 95% CI]"; the mean alone for one seed (no spread, no interval)."""
    if math.isnan(mean):
        return ""
    if math.isnan(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}" + ("" if math.isnan(ci) else f" [± {ci:.2f}]")


def _difference(r: pd.Series) -> str:
    """The paired difference to the matched dense control: "+1.23 [± 0.45] (control)"."""
    if not r["control"] or math.isnan(r["diff_pct"]):
        return ""
    interval = "" if math.isnan(r["diff_ci_pct"]) else f" [± {r['diff_ci_pct']:.2f}]"
    return f"{r['diff_pct']:+.2f}{interval} ({r['control']})"


# The columns both summary tables open with, and their cells.
LEADING = [
    "experiment",
    "method",
    "model",
    "dataset",
    "seeds",
    "epochs",
    "test acc (%)",
    "vs dense control (pp)",
    "sparsity (%)",
]


MIXED = "†"  # marks an experiment whose seeds were trained by more than one code identity


def _mixed(r: pd.Series) -> str:
    return MIXED if r.get("code_identities", 1) > 1 else ""


def _mixed_note(table: pd.DataFrame) -> list[str]:
    mixed = int((table["code_identities"] > 1).sum()) if "code_identities" in table else 0
    if not mixed:
        return []
    return [
        f"{MIXED} {mixed} experiment(s) pool seeds trained by different code (code_sha256 in metrics.json; "
        "python -m experiments.code_change RUN_DIR trains a run's config at its own revision and at today's "
        "code on one machine and says whether the change moved numbers)."
    ]


def _leading_cells(r: pd.Series, text: Callable[[Any], str]) -> list[str]:
    return [
        text(r["experiment"]) + _mixed(r),
        *(text(r[k]) for k in ("variant", "model", "dataset")),
        str(int(r["seeds"])),
        str(int(r["epochs"])),
        _mean_pm_std(r["test_acc_pct"], r["test_acc_std_pct"], r["test_acc_ci_pct"]),
        _difference(r),
        _mean_pm_std(r["sparsity_pct"], r["sparsity_std_pct"]),
    ]


def summary_markdown(table: pd.DataFrame) -> str:
    """``summary_frame`` as a Markdown table: accuracy and sparsity as "mean ± std [± 95% CI]" (%; the
    mean alone for one seed), the paired difference to the matched dense control, the paper columns
    blank where no figure is cited; the data labels follow as a footnote."""
    header = [
        *LEADING,
        "compression",
        "FLOPs kept (%)",
        "nonzero params",
        "paper test acc (%)",
        "paper params",
        "paper source",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, r in table.iterrows():
        cells = [
            *_leading_cells(r, lambda v: _cell(v, 0)),
            _cell(float(r["compression"]), 1),
            _cell(float(r["flops_kept_pct"]), 1),
            f"{int(round(r['params_nonzero'])):,}",
            _cell(float(r["paper_test_acc_pct"]), 2),
            _cell(r["paper_params"], 0),
            _cell(r["paper_source"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    labels = sorted(set(table["data"].astype(str)))
    profiles = sorted(set(table["profile"].astype(str)))
    if labels:
        lines += [
            "",
            f"Data: {'; '.join(labels)}. Profile: {', '.join(profiles)}. Final-epoch test accuracy, mean ± sample "
            "std over the seeds [± half-width of the 95% Student-t interval]; vs dense control: the paired (same "
            "seed) difference to the dense run of the same recipe, with its 95% interval; sparsity over conv + "
            "linear weights; FLOPs kept = nonzero multiply-adds / dense.",
        ]
    lines += _mixed_note(table)
    return "\n".join(lines) + "\n"


def summary_text(table: pd.DataFrame) -> str:
    """``summary_frame`` as a plain-text table for the terminal: columns as wide as their longest
    entry (no name is cut), accuracy and sparsity as "mean ± std" (%), then the data labels."""
    header = [*LEADING, "FLOPs kept (%)"]
    rows = [[*_leading_cells(r, str), _cell(float(r["flops_kept_pct"]), 1)] for _, r in table.iterrows()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = 4  # text columns are left-aligned, numbers right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]
    labels = sorted(set(table["data"].astype(str)))
    if labels:
        lines.append("data: " + "; ".join(labels))
    lines += _mixed_note(table)
    return "\n".join(lines)


README_HEADER = [
    "experiment",
    "method",
    "seeds",
    "test acc (%)",
    "vs dense control (pp)",
    "sparsity (%)",
    "FLOPs kept (%)",
]


def readme_markdown(table: pd.DataFrame) -> str:
    """``summary_frame`` as the README's compact Markdown table (the columns a reader compares), with a
    one-line caption naming the data and profile; ``experiments.readme`` writes it into README.md."""
    lines = ["| " + " | ".join(README_HEADER) + " |", "|" + "|".join("---" for _ in README_HEADER) + "|"]
    for _, r in table.iterrows():
        cells = [
            f"`{r['experiment']}`{_mixed(r)}",
            _cell(r["variant"], 0),
            str(int(r["seeds"])),
            _mean_pm_std(r["test_acc_pct"], r["test_acc_std_pct"], r["test_acc_ci_pct"]),
            _difference(r),
            _mean_pm_std(r["sparsity_pct"], r["sparsity_std_pct"]),
            _cell(float(r["flops_kept_pct"]), 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    labels = "; ".join(sorted(set(table["data"].astype(str))))
    profiles = ", ".join(sorted(set(table["profile"].astype(str))))
    lines += [
        "",
        f"Data: {labels}. Profile: {profiles}. Final-epoch test accuracy, mean ± std over the seeds [± 95% "
        "t-interval]; vs dense control: paired (same seed) difference to the dense run of the same recipe.",
        *_mixed_note(table),
    ]
    return "\n".join(lines) + "\n"
