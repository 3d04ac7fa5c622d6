"""Is one experiment above another? ``python -m experiments.compare RESULTS A B [C ...]``.

For each experiment after the first: its final ``--metric`` (default test accuracy) minus the first
one's, paired by seed over the seeds both have, with the 95% Student-t interval and a verdict that
makes a claim only where the interval excludes 0 ("higher" / "lower"), else "unresolved". With
``--control``, each experiment is compared with its matched dense control instead (the control of
its training recipe, ``reporting.results.matched_controls``).
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("experiments", nargs="+", help="experiment names: the first is the reference (not with --control)")
    p.add_argument("--metric", default="test_acc", help="a metrics.json number (default test_acc)")
    p.add_argument("--control", action="store_true", help="compare each experiment with its matched dense control")
    args = p.parse_args(argv)
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
