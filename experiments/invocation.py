"""Record one ``run_all.sh`` invocation: ``python -m experiments.invocation RESULTS --seconds S ...``.

Appends to ``RESULTS/invocations.json`` (a list, written atomically) what the invocation was and
what it cost: the command, profile, runner processes and threads, wall seconds, exit status, the
git revision it started at, the date, the devices and the load average. A profile run over several
invocations (finished runs skipped, killed ones resumed) is thus costed as the sum of its entries.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from experiments.arguments import one_line_failures
from training.files import read_text_bounded
from training.record_schema import RECORD_LIMIT, RecordError, read_invocations, warnings_to_stderr
from training.records import atomic_write_json, device_name


def record(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    gpus = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    return {
        "command": " ".join(args.command),
        "profile": args.profile,
        "jobs": args.jobs,
        "threads_per_job": int(os.environ.get("OMP_NUM_THREADS") or 0) or None,
        "seconds": args.seconds,
        "exit_status": args.status,
        "git_revision": args.revision,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": device_name(torch.device("cpu")),
        "cpu_count": len(os.sched_getaffinity(0)),
        "gpus": gpus,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
    }


def previous(path: Path) -> list[Any]:
    """The entries already recorded in ``path``, kept as they are (a reader skips any bad one). A file
    that is not a list of entries at all is set aside as ``<path>.bad`` (said in one line) and a new
    list begins, so that one damaged file does not fail every later invocation."""
    if not path.exists():
        return []
    try:
        read_invocations(path)
    except RecordError as exc:
        aside = path.with_name(path.name + ".bad")
        os.replace(path, aside)
        print(f"warning: {exc}; moved to {aside}, a new list begins", file=sys.stderr)
        return []
    return json.loads(read_text_bounded(path, RECORD_LIMIT))  # as it is: bad entries kept, for the record


def main(argv: list[str] | None = None) -> int:
    with warnings_to_stderr():  # a skipped record: one line on stderr
        return _record(argv)


def _record(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.invocation", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--status", type=int, required=True)
    p.add_argument("--revision", required=True, help="the git revision the invocation started at")
    p.add_argument("--profile", required=True)
    p.add_argument("--jobs", type=int, required=True)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: the invocation's own command line
    args = p.parse_args(argv[:cut])
    args.command = argv[cut + 1 :]
    path = args.results / "invocations.json"
    entries = previous(path)
    entries.append(record(args))
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, entries)
    return 0


_main = one_line_failures(main)


if __name__ == "__main__":
    sys.exit(_main())
