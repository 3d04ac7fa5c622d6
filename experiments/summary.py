"""Print the summary table of a results folder: ``python -m experiments.summary results/smoke``."""

from __future__ import annotations

import sys
from pathlib import Path

from reporting.results import ResultsError, runs_frame
from reporting.tables import summary_frame, summary_text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path("results/full")
    try:
        table = summary_frame(runs_frame(folder))
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if table.empty:
        print(f"no finished runs under {folder}")
        return 0
    print(summary_text(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
