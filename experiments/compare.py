"""Is one experiment above another? ``python -m experiments.compare RESULTS A B [C ...]``.

For each experiment after the first: its final ``--metric`` (default test accuracy) minus the first
one's, paired by seed over the seeds both have, with the 95% Student-t interval and a verdict that
makes a claim only where the interval excludes 0 ("higher" / "lower"), else "unresolved". With
``--control``, each experiment is compared with its matched dense control instead (the control of
its training recipe, ``reporting.results.matched_controls``). With ``--family``, every comparison the
README reads (``reporting.verdicts``): each with its nominal verdict and the one that survives Holm's
correction over the whole family, a recipe-fair difference-in-differences for pairs trained with
different recipes, and what each side is (sparsity, FLOPs kept, steps of its final stage and in all).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import pandas as pd

from reporting.results import ResultsError, matched_controls, paired, runs_frame
from reporting.stats import verdict
from reporting.verdicts import MISMATCH, verdicts
from training.files import describe_failure


def line(frame: pd.DataFrame, a: str, b: str, metric: str) -> str:
    pairs, mean, _, ci = paired(frame, a, b, metric)
    scale = 100 if metric.endswith(("acc", "sparsity")) else 1  # accuracies and sparsities in points
    unit = " pp" if scale == 100 else ""
    if pairs == 0:
        numbers = "no pair"
    elif math.isnan(ci):
        numbers = f"{scale * mean:+.2f}{unit}"
    else:
        numbers = f"{scale * mean:+.2f}{unit} [{scale * (mean - ci):+.2f}, {scale * (mean + ci):+.2f}]"
    return f"{a} - {b}: {numbers} over {pairs} seed(s): {verdict(pairs, mean, ci)}"


def family_line(r: pd.Series) -> str:
    """One row of ``reporting.verdicts.verdicts`` as a line."""
    what = f"{r['a']} - {r['b']}"
    if r["kind"] == "recipe-fair":
        what = f"({r['a']} - {r['control_a']}) - ({r['b']} - {r['control_b']})"
    numbers = "no pair" if r["pairs"] == 0 else f"{100 * r['diff']:+.2f} pp"
    if not math.isnan(r["diff_ci"]):
        numbers += f" [{100 * (r['diff'] - r['diff_ci']):+.2f}, {100 * (r['diff'] + r['diff_ci']):+.2f}]"
    p = "" if math.isnan(r["p"]) else f", p = {r['p']:.3f}, Holm p = {r['p_holm']:.3f}"
    sides = (
        f"sparsity {100 * r['a_sparsity']:.1f} / {100 * r['b_sparsity']:.1f}%"
        + (f" (more than {100 * MISMATCH:.0f} pp apart)" if r["mismatched"] else "")
        + f", FLOPs kept {100 * r['a_flops_kept']:.1f} / {100 * r['b_flops_kept']:.1f}%, steps (final stage / all) "
        f"{r['a_final_steps']:.0f}/{r['a_steps']:.0f} and {r['b_final_steps']:.0f}/{r['b_steps']:.0f}"
    )
    return (
        f"[{r['group']}] {what}: {numbers} over {r['pairs']} seed(s){p}: {r['nominal']}; "
        f"after Holm: {r['corrected']} | {sides}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("experiments", nargs="*", help="experiment names: the first is the reference (not with --control)")
    p.add_argument("--metric", default="test_acc", help="a metrics.json number (default test_acc)")
    p.add_argument("--control", action="store_true", help="compare each experiment with its matched dense control")
    p.add_argument("--family", action="store_true", help="every comparison the README reads, with Holm's correction")
    args = p.parse_intermixed_args(argv)  # options may stand between the experiment names
    if args.family and (args.experiments or args.control or args.metric != "test_acc"):
        print("error: --family takes the results folder alone (test accuracy)", file=sys.stderr)
        return 2
    if not args.family and not args.experiments:
        print("error: name at least one experiment (or use --family)", file=sys.stderr)
        return 2
    try:
        return _compare(args)
    except ResultsError as exc:  # runs that must not be pooled, or no results folder
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the folder named cannot be read (a name too long, no permission)
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 1


def _compare(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a skipped run is not what this command is about
        frame = runs_frame(args.results)
    if args.family:
        table = verdicts(frame)
        for _, row in table.iterrows():
            print(family_line(row))
        survive = int(table["corrected"].isin(("higher", "lower")).sum()) if not table.empty else 0
        nominal = int(table["nominal"].isin(("higher", "lower")).sum()) if not table.empty else 0
        print(f"{len(table)} comparisons: {nominal} separate nominally, {survive} after Holm's correction")
        return 0
    known = set(frame["name"]) if not frame.empty else set()
    missing = [name for name in args.experiments if name not in known]
    if missing:
        print(f"error: {args.results}: no finished run of {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.metric not in frame:
        print(f"error: {args.results}: no metric {args.metric!r} in the runs' metrics.json", file=sys.stderr)
        return 1
    if args.control:
        controls = matched_controls(frame)
        for name in args.experiments:
            if name in controls:
                print(line(frame, name, controls[name], args.metric))
            else:
                print(f"{name}: no dense control of its recipe under {args.results}")
        return 0
    if len(args.experiments) < 2:
        print("error: name at least two experiments (or use --control)", file=sys.stderr)
        return 2
    first, *rest = args.experiments
    for name in rest:
        print(line(frame, name, first, args.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
