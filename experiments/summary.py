"""Print the summary table of a results folder: ``python -m experiments.summary results/smoke``.

Below the table, what the runs cost: the sum of their training wall times (each run's
``wall_time_s``, kept across resumes), and, where ``run_all.sh`` recorded them, the invocations'
wall time (``invocations.json``, interrupted ones included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from reporting.results import ResultsError, runs_frame
from reporting.tables import summary_frame, summary_text
from training.files import describe_failure
from training.record_schema import RecordError, read_invocations, skip, warnings_to_stderr


def cost_lines(folder: Path, runs: pd.DataFrame) -> list[str]:
    """One line on the runs' summed training time, one on the recorded invocations (if any)."""
    hours = float(runs["wall_time_s"].sum()) / 3600
    lines = [f"training: {len(runs)} run(s), {hours:.2f} h of wall time summed over the runs"]
    path = folder / "invocations.json"
    if path.exists():
        try:
            entries = read_invocations(path)  # a bad entry is named and left out
        except RecordError as exc:
            skip(exc)
            return lines
        total = sum(entry["seconds"] for entry in entries) / 3600
        stopped = sum(entry["exit_status"] == 130 for entry in entries)
        lines.append(
            f"invocations: {len(entries)} recorded ({stopped} interrupted), {total:.2f} h of wall time in all ({path})"
        )
    return lines


SMOKE_CAVEAT = (
    "smoke checks that every method trains, prunes, resumes, records and draws end to end (1 epoch a "
    "stage on 1000 images): its accuracies, sparsities and differences say nothing about the methods"
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, nargs="?", default=Path("results/full"), help="default: results/full")
    folder = p.parse_args(argv).results
    with warnings_to_stderr():  # a skipped record: one line on stderr
        return _summarize(folder)


def _summarize(folder: Path) -> int:
    try:
        runs = runs_frame(folder)
        table = summary_frame(runs)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the folder named cannot be read (a name too long, no permission)
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 1
    if table.empty:
        print(f"no finished runs under {folder}")
        return 0
    print(summary_text(table))
    print("\n".join(["", *cost_lines(folder, runs)]))
    if set(runs["profile"].astype(str)) == {"smoke"}:
        print(f"\n{SMOKE_CAVEAT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
