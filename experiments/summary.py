"""Print the summary table of a results folder: ``python -m experiments.summary results/smoke``."""
from __future__ import annotations

import sys
from pathlib import Path

from experiments.results import format_table, load_runs, summarise


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    folder = Path(args[0]) if args else Path("results/full")
    runs = load_runs(folder)
    if not runs:
        print(f"no finished runs under {folder}")
        return 0
    print(format_table(summarise(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
