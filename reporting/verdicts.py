"""The family of comparisons the README reads, each with its paired interval, its own verdict and the
verdict that survives a family-wise (Holm) correction over the whole family.

``family(frame)`` declares the comparisons, in groups: every sparse config against the dense control
of its recipe; every unstructured config against xRDA at its target (``reporting.head_to_head``,
xRDA's ablations included); the lottery ticket against its controls; gradual magnitude pruning
against one-shot magnitude and the lottery ticket; the structured methods against one another; and
the three dense recipes. A comparison is A minus B, final test accuracy, paired by seed.

Where A and B were trained with different recipes (their dense controls differ: optimizer,
schedule, weight decay), a direct difference mixes the method with its recipe; such a pair gets a
second row, the difference-in-differences (A minus its control) minus (B minus its control),
paired by seed over the seeds all four runs have, with its own interval and verdict. Both rows
belong to the family.

``verdicts(frame)`` computes every row: pairs, mean difference, 95% t-interval, the paired t-test's
p, its Holm-adjusted p over the family, the nominal verdict (``reporting.stats.verdict``) and the
corrected one (``reporting.stats.corrected``), and what each side is: its achieved sparsity (mean,
min and max over seeds), FLOPs kept, and the optimizer steps of its final stage and in total (from
each run's history.csv and metrics.json). ``mismatched`` flags a pair of sparse sides whose mean
sparsities differ by more than ``MISMATCH`` (a dense control differs by design). ``prose`` and
``markdown`` write the README's "What this shows" from these rows alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reporting.head_to_head import references, target_of
from reporting.results import matched_controls, values_by_run
from reporting.stats import corrected, holm, interval, t_test_p, verdict
from training.record_schema import RecordError, read_history
from training.subset import OFFICIAL_ROWS

ALPHA = 0.05
LOTTERY = "lottery ticket"  # the plain ticket's variant label (its controls and variants are compared with it)
MISMATCH = 0.02  # sparsity gap (a fraction: 2 pp) above which two sparse sides are flagged
BUDGET = re.compile(r"_[wc](\d+)$")  # structured budgets: r20_l0hc_w30, r20_slimming_c30 -> 30

GROUPS = {
    "control": "Each sparse config against the dense control of its own recipe",
    "xrda": "Each unstructured config against xRDA (log-reweighted l1) at its target, xRDA's ablations included",
    "lottery": "The lottery ticket's controls (and its full-length last round) against the lottery ticket",
    "sgd": "Gradual magnitude pruning (GMP) against one-shot magnitude pruning and the lottery ticket",
    "structured": "Structured methods against one another at each channel budget",
    "dense": "The dense recipes against one another",
}


@dataclass(frozen=True)
class Comparison:
    """``a`` minus ``b``; ``controls`` = (A's dense control, B's) for a difference-in-differences."""

    group: str
    a: str
    b: str
    controls: tuple[str, str] | None = None


def _methods(frame: pd.DataFrame) -> dict[str, str]:
    return {n: (c.get("method") or {}).get("name", "") for n, c in zip(frame["name"], frame["config"])}


def budget_of(name: str) -> int | None:
    """The channel budget (%) in a structured config's name (``_w30``, ``_c30`` -> 30), else None."""
    match = BUDGET.search(name)
    return int(match[1]) if match else None


def _points(
    names: list[str], method: dict[str, str], point_of: Callable[[str], int | None]
) -> list[dict[str, list[str]]]:
    """The configs at each operating point (``point_of(name)``: a target or a budget, None for none),
    in the point's order, each point by method in ``names``' order."""
    out: dict[int, dict[str, list[str]]] = {}
    for n in names:
        if (point := point_of(n)) is not None:
            out.setdefault(point, {}).setdefault(method[n], []).append(n)
    return [out[p] for p in sorted(out)]


def family(frame: pd.DataFrame) -> list[Comparison]:
    """Every comparison the README reads, in groups (``GROUPS``), each pair once; a pair of
    different recipes is followed by its difference-in-differences."""
    if frame.empty:
        return []
    names = list(dict.fromkeys(frame.sort_values(["order", "name"])["name"]))
    method = _methods(frame)
    families = dict(zip(frame["name"], frame["family"]))
    dense = [n for n in names if families[n] == "dense"]
    controls = matched_controls(frame)
    pairs: list[tuple[str, str, str]] = [("control", n, controls[n]) for n in names if n in controls]
    pairs += [("xrda", name, reference) for name, reference in references(frame)]
    # At each unstructured target, by method: the lottery ticket's own variants (reinit, full-length
    # last round) and its random controls against the ticket; GMP against magnitude and the ticket.
    variant = dict(zip(frame["name"], frame["variant"]))
    for point in _points(names, method, target_of):
        tickets = [n for n in point.get("lottery", []) if variant[n] == LOTTERY]
        for ticket in tickets:
            kin = [n for m in ("lottery", "random_ticket", "random_finetune") for n in point.get(m, [])]
            pairs += [("lottery", n, ticket) for n in kin if n != ticket]
        for gmp in point.get("gmp", []):
            pairs += [("sgd", gmp, other) for other in point.get("magnitude", []) + tickets]
    for point in _points(names, method, budget_of):  # structured: at each channel budget
        for dep in point.get("dep_l0", []):
            pairs += [("structured", dep, b) for b in point.get("l0hc", [])]
        for rda in point.get("rda", []):
            pairs += [("structured", rda, b) for other in ("slimming", "l0hc") for b in point.get(other, [])]
    pairs += [("dense", a, b) for i, a in enumerate(dense) for b in dense[i + 1 :]]
    out: list[Comparison] = []
    for group, a, b in dict.fromkeys(pairs):
        out.append(Comparison(group, a, b))
        ca, cb = controls.get(a), controls.get(b)
        if ca and cb and ca != cb:
            out.append(Comparison(group, a, b, (ca, cb)))
    return out


def differences(values: dict[tuple[str, int], float], c: Comparison) -> list[float]:
    """The per-seed differences of comparison ``c``, over the seeds every run it needs has."""
    runs = (c.a, c.b, *c.controls) if c.controls else (c.a, c.b)
    seeds = sorted({s for (_, s) in values})
    out = []
    for s in seeds:
        if all((n, s) in values for n in runs):
            d = values[(c.a, s)] - values[(c.b, s)]
            if c.controls:
                d -= values[(c.controls[0], s)] - values[(c.controls[1], s)]
            if not math.isnan(d):
                out.append(d)
    return out


def _steps(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Experiment -> (optimizer steps of its final stage, steps in total), from its first run's
    history.csv (the epochs of the last stage) and metrics.json (steps, steps_per_epoch)."""
    out: dict[str, tuple[float, float]] = {}
    for name, runs in frame.groupby("name", sort=False):
        run = runs.sort_values("seed").iloc[0]
        per_epoch = float(run.get("steps_per_epoch", math.nan))
        final = math.nan
        try:
            stages = [row["stage"] for row in read_history(Path(str(run.get("run_dir", ""))) / "history.csv")]
        except RecordError:  # missing or bad (named by the readers that list runs): unknown
            stages = []
        if stages:
            final = per_epoch * sum(1 for s in stages if s == stages[-1])
        out[str(name)] = (final, float(run.get("steps", math.nan)))
    return out


def verdicts(frame: pd.DataFrame, comparisons: list[Comparison] | None = None) -> pd.DataFrame:
    """One row per comparison (``family(frame)`` unless given), in family order, with the Holm
    adjustment over all of them (see the module's docstring for the columns)."""
    comparisons = family(frame) if comparisons is None else comparisons
    acc = values_by_run(frame, "test_acc")  # refuses runs that must not be pooled
    steps = _steps(frame) if comparisons else {}
    side = {}
    for name, runs in frame.groupby("name"):
        sparsity = pd.to_numeric(runs["sparsity"])
        side[name] = (sparsity.mean(), sparsity.min(), sparsity.max(), pd.to_numeric(runs["flops_kept"]).mean())
    dense = {n for n, f in zip(frame["name"], frame["family"]) if f == "dense"}
    rows = []
    for c in comparisons:
        diffs = differences(acc, c)
        mean, std, ci = interval(diffs)
        row = {
            "group": c.group,
            "a": c.a,
            "b": c.b,
            "kind": "recipe-fair" if c.controls else "direct",
            "control_a": c.controls[0] if c.controls else "",
            "control_b": c.controls[1] if c.controls else "",
            "pairs": len(diffs),
            "diff": mean,
            "diff_ci": ci,
            "p": t_test_p(len(diffs), mean, std),
            "nominal": verdict(len(diffs), mean, ci).split(" (")[0],
        }
        for key, name in (("a", c.a), ("b", c.b)):
            mean_s, low, high, flops = side[name]
            final, total = steps.get(name, (math.nan, math.nan))
            row |= {
                f"{key}_sparsity": mean_s,
                f"{key}_sparsity_min": low,
                f"{key}_sparsity_max": high,
                f"{key}_flops_kept": flops,
                f"{key}_final_steps": final,
                f"{key}_steps": total,
            }
        sparse_pair = c.a not in dense and c.b not in dense
        row["mismatched"] = bool(sparse_pair and abs(row["a_sparsity"] - row["b_sparsity"]) > MISMATCH)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p"].tolist())
    table["corrected"] = [corrected(d, p, ALPHA) for d, p in zip(table["diff"], table["p_holm"])]
    return table


# --- The README's text, written from the rows alone ---


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def _what(r: pd.Series) -> str:
    """A row's comparison in words: "`A` - `B`", and "(recipe-fair)" for a difference-in-differences."""
    return f"`{r['a']}` - `{r['b']}`" + (" (recipe-fair)" if r["kind"] == "recipe-fair" else "")


def _side(r: pd.Series, key: str) -> str:
    mean, low, high = (100 * r[f"{key}_sparsity{s}"] for s in ("", "_min", "_max"))
    spread = "" if abs(high - low) < 0.05 else f" ({low:.1f}-{high:.1f})"
    return f"{mean:.1f}{spread}"


def _steps_cell(r: pd.Series, key: str) -> str:
    final, total = r[f"{key}_final_steps"], r[f"{key}_steps"]
    if math.isnan(total):
        return "?"
    return f"{total:.0f}" if final == total else f"{final:.0f} of {total:.0f}" if not math.isnan(final) else "?"


def _listing(rows: pd.DataFrame) -> str:
    return "; ".join(f"{_what(r)} ({_pp(r['diff'])} pp, Holm p = {r['p_holm']:.3f})" for _, r in rows.iterrows())


def prose(table: pd.DataFrame) -> str:
    """The README's "What this shows": per group, what survives the correction, what separates only
    nominally, and how many comparisons are unresolved."""
    if table.empty:
        return "No comparison: no finished runs.\n"
    nominal = table["nominal"].isin(("higher", "lower"))
    survive = table["corrected"].isin(("higher", "lower"))
    direct = int((table["kind"] == "direct").sum())
    lines = [
        f"The README reads a family of {len(table)} paired comparisons ({direct} direct, "
        f"{len(table) - direct} recipe-fair differences-in-differences: each side minus the dense control of its "
        f"own recipe, for pairs trained with different recipes). {int(nominal.sum())} exclude 0 at 95% on their "
        f"own (nominal); {int(survive.sum())} survive Holm's correction over the whole family (family-wise error "
        f"{ALPHA:.0%}). Only those are claimed; a nominal result that does not survive is named as such, and an "
        "unresolved comparison is not evidence of equality. A - B is final test accuracy, paired by seed; the "
        "tables below give every interval and what each side is (sparsity, FLOPs kept, steps).",
        "",
    ]
    for group, title in GROUPS.items():
        rows = table[table["group"] == group]
        if rows.empty:
            continue
        kept = rows[rows["corrected"].isin(("higher", "lower"))]
        lost = rows[rows["nominal"].isin(("higher", "lower")) & ~rows["corrected"].isin(("higher", "lower"))]
        parts = [f"- **{title}** ({len(rows)} comparisons)."]
        for word in ("higher", "lower"):
            chosen = kept[kept["corrected"] == word]
            if not chosen.empty:
                parts.append(f"**{word.capitalize()} after the correction:** {_listing(chosen)}.")
        if kept.empty:
            parts.append("None survives the correction.")
        if not lost.empty:
            parts.append(
                "Nominal only, unresolved after the correction: "
                + "; ".join(
                    f"{_what(r)} ({r['nominal']}, {_pp(r['diff'])} pp, p = {r['p']:.3f})" for _, r in lost.iterrows()
                )
                + "."
            )
        unresolved = len(rows) - len(kept) - len(lost)
        if unresolved:
            parts.append(f"{unresolved} more unresolved at both levels.")
        known = rows["a_final_steps"].notna() & rows["b_final_steps"].notna()
        budgets = rows[known & (rows["a_final_steps"] != rows["b_final_steps"])]
        if not budgets.empty:
            parts.append(
                f"In {len(budgets)} of these the two sides' final stages differ in length (a multi-stage method's "
                "measured model trains only its last stage): the steps column says by how much."
            )
        flagged = rows[rows["mismatched"]]
        if not flagged.empty:
            parts.append(
                f"Not at equal sparsity (more than {100 * MISMATCH:.0f} pp apart): "
                + "; ".join(f"{_what(r)} ({_side(r, 'a')}% against {_side(r, 'b')}%)" for _, r in flagged.iterrows())
                + "."
            )
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def markdown(table: pd.DataFrame) -> str:
    """Every row of the family as Markdown tables (one per group), nominal and corrected verdicts side
    by side, with what each side is."""
    header = [
        "A",
        "B",
        "pairs",
        "A - B (pp) [95% CI]",
        "p",
        "Holm p",
        "nominal",
        "after Holm",
        "sparsity A / B (%)",
        "FLOPs kept A / B (%)",
        "steps A / B (final stage of total)",
    ]
    out = []
    for group, title in GROUPS.items():
        rows = table[table["group"] == group] if not table.empty else table
        if rows.empty:
            continue
        out += [f"**{title}.**", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for _, r in rows.iterrows():
            a = f"`{r['a']}`" + (f" - `{r['control_a']}`" if r["kind"] == "recipe-fair" else "")
            b = f"`{r['b']}`" + (f" - `{r['control_b']}`" if r["kind"] == "recipe-fair" else "")
            interval_cell = ("" if math.isnan(r["diff"]) else _pp(r["diff"])) + (
                ""
                if math.isnan(r["diff_ci"])
                else f" [{_pp(r['diff'] - r['diff_ci'])}, {_pp(r['diff'] + r['diff_ci'])}]"
            )
            p = "" if math.isnan(r["p"]) else f"{r['p']:.3f}"
            ph = "" if math.isnan(r["p_holm"]) else f"{r['p_holm']:.3f}"
            flag = " ≠" if r["mismatched"] else ""
            cells = [
                a,
                b,
                str(int(r["pairs"])),
                interval_cell,
                p,
                ph,
                r["nominal"],
                r["corrected"],
                f"{_side(r, 'a')} / {_side(r, 'b')}{flag}",
                f"{100 * r['a_flops_kept']:.1f} / {100 * r['b_flops_kept']:.1f}",
                f"{_steps_cell(r, 'a')} / {_steps_cell(r, 'b')}",
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out.append(
        "A - B: final-epoch test accuracy, paired by seed over the seeds both sides have; a recipe-fair row "
        "compares (A minus its dense control) with (B minus its own), paired over the seeds all four have. "
        "p: two-sided paired t-test; Holm p: adjusted over every row of every table above. nominal: "
        '"higher" or "lower" where the 95% interval excludes 0; after Holm: where the Holm p is at most '
        f"{ALPHA}. Sparsity: mean over seeds (range where the seeds differ); ≠: two sparse sides more than "
        f"{100 * MISMATCH:.0f} pp apart. Steps: optimizer steps of the final stage (what the exported model "
        "last trained) of the total, from history.csv and metrics.json."
    )
    return "\n".join(out) + "\n"


def verdicts_markdown(frame: pd.DataFrame) -> str:
    """The README's "What this shows" block: the prose, then the tables it is read from."""
    table = verdicts(frame)
    return prose(table) + "\n" + markdown(table)


def standard_error(accuracy: float, images: int) -> float:
    """The binomial standard error of an accuracy measured on ``images`` test images,
    sqrt(p (1 - p) / n): how far one test set's score may sit from the accuracy on the whole
    distribution, whatever the seed."""
    return math.sqrt(accuracy * (1.0 - accuracy) / images)


def scale_markdown(frame: pd.DataFrame) -> str:
    """What the runs' scores can resolve: the share of CIFAR-10 they train and test on, and the
    test-set sampling error of one accuracy at the accuracies they reach."""
    if frame.empty:
        return "No finished runs.\n"
    sizes = {k: sorted({int(v) for v in frame[k].dropna()}) for k in ("train_size", "validation_size", "test_size")}
    if any(len(v) != 1 for v in sizes.values()):
        return f"The runs differ in their data sizes ({sizes}): no one sampling error applies.\n"
    train, val, test = (sizes[k][0] for k in ("train_size", "validation_size", "test_size"))
    full_train, full_test = 5 * OFFICIAL_ROWS, OFFICIAL_ROWS
    acc = pd.to_numeric(frame["test_acc"])
    dense = pd.to_numeric(frame.loc[frame["family"] == "dense", "test_acc"])
    ends = [standard_error(acc.min(), test), standard_error(acc.max(), test)]
    low = min(ends)  # the error is largest at 50% accuracy, smallest at the range's far end from it
    top = standard_error(0.5, test) if acc.min() <= 0.5 <= acc.max() else max(ends)
    lines = [
        f"- **Scale.** The runs train on {train} images and hold out {val} for validation: {train + val} "
        f"of CIFAR-10's {full_train:,} training images ({100 * (train + val) / full_train:.1f}%); they are "
        f"scored on {test} of its {full_test:,} test images ({100 * test / full_test:.1f}%).",
        f"- **Test-set sampling error.** One accuracy measured on {test} images has a binomial standard error "
        f"sqrt(p (1 - p) / {test}) of {100 * standard_error(dense.mean(), test):.2f} pp at the dense controls' "
        f"mean accuracy ({100 * dense.mean():.1f}%), and {100 * low:.2f}-{100 * top:.2f} pp over "
        f"the accuracies of every run ({100 * acc.min():.1f}-{100 * acc.max():.1f}%).",
    ]
    return "\n".join(lines) + "\n"
