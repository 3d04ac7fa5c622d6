"""Every unstructured method against xRDA at the same target sparsity, paired by seed.

The subset protocol names each unstructured config after its target weight sparsity
(``r20_gmp_s80``, and the xRDA ablation ``r20_rda_s80_avg0``: 80%). At each target the reproduced
paper's method (``REFERENCE``, xRDA with log-reweighted l1) is the reference, and each other config
at that target is compared with it seed by seed: final test accuracy minus the reference's, with
its 95% t-interval and a verdict that says "higher" or "lower" only where the interval excludes 0
(``reporting.stats.verdict``). ``experiments.readme`` writes this into the README, so that its
claims are read off the runs.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from reporting.results import paired
from reporting.stats import interval, verdict

REFERENCE = "xRDA log-l1"
TARGET = re.compile(r"_s(\d+)(?:_|$)")

COLUMNS = (
    "target",
    "experiment",
    "variant",
    "reference",
    "seeds",
    "pairs",
    "test_acc",
    "test_acc_std",
    "diff",
    "diff_ci",
)


def target_of(name: str) -> int | None:
    """The target weight sparsity (%) in a config's name (``..._s80`` or ``..._s80_avg0`` -> 80);
    None for the structured and dense configs, whose names carry no ``_sNN``."""
    match = TARGET.search(name)
    return int(match[1]) if match else None


def head_to_head(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per config at a target that has one ``REFERENCE`` config, in target then legend order
    (the reference first): its mean test accuracy over its seeds, and the paired difference to the
    reference over the seeds both have (``pairs``, ``diff``, ``diff_ci``; fractions; the reference's
    own row has no difference, and one pair no interval)."""
    rows = []
    if frame.empty:
        return pd.DataFrame(rows, columns=list(COLUMNS))
    points = frame.assign(target=[target_of(n) for n in frame["name"]]).dropna(subset=["target"])
    for target, group in points.groupby("target", sort=True):
        references = sorted(set(group.loc[group["variant"] == REFERENCE, "name"]))
        if len(references) != 1:  # none, or two xRDA configs at one target: nothing to compare with
            continue
        reference = references[0]
        ordered = group.assign(first=group["name"] != reference).sort_values(["first", "order", "variant", "name"])
        for name in dict.fromkeys(ordered["name"]):
            runs = ordered[ordered["name"] == name]
            mean, std, _ = interval(pd.to_numeric(runs["test_acc"], errors="coerce").dropna().tolist())
            pairs, diff, _, ci = (
                (0, math.nan, math.nan, math.nan) if name == reference else paired(frame, name, reference)
            )
            rows.append(
                {
                    "target": int(target),
                    "experiment": name,
                    "variant": runs["variant"].iloc[0],
                    "reference": reference,
                    "seeds": len(runs),
                    "pairs": pairs,
                    "test_acc": mean,
                    "test_acc_std": std,
                    "diff": diff,
                    "diff_ci": ci,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _percent(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def _difference(diff: float, ci: float) -> str:
    if math.isnan(diff):
        return ""
    if math.isnan(ci):
        return f"{100 * diff:+.2f}"
    return f"{100 * diff:+.2f} [{100 * (diff - ci):+.2f}, {100 * (diff + ci):+.2f}]"


def head_to_head_markdown(table: pd.DataFrame) -> str:
    """``head_to_head`` as the README's Markdown table with its caption."""
    header = ["target", "experiment", "method", "seeds", "test acc (%)", f"minus {REFERENCE} (pp)", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    separated = compared = 0
    for _, r in table.iterrows():
        own = r["experiment"] == r["reference"]
        said = "reference" if own else verdict(int(r["pairs"]), r["diff"], r["diff_ci"])
        compared += not own
        separated += said in ("higher", "lower")
        cells = [
            f"{r['target']}%",
            f"`{r['experiment']}`",
            str(r["variant"]),
            str(int(r["seeds"])),
            _percent(r["test_acc"], r["test_acc_std"]),
            _difference(r["diff"], r["diff_ci"]),
            said,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Final-epoch test accuracy, mean ± std over the seeds; minus {REFERENCE}: the difference to the "
        f"{REFERENCE} config of the same target, paired by seed over the seeds both have, mean [95% t-interval]. "
        f'"higher" or "lower" only where the interval excludes 0: {separated} of {compared} comparisons do, and at '
        "95% about one in 20 would by chance alone.",
    ]
    return "\n".join(lines) + "\n"
