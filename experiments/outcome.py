"""What became of every run of a profile: ``python -m experiments.outcome RESULTS --profile P``.

``run_all.sh`` prints it at the end: how many (experiment, seed) runs of the profile finished, and
one line per run that did not (failed: the last line of its error.log, the exception and its
message; unfinished: stopped after epoch k of its checkpoint; not run). With ``--json PATH`` it
also writes those counts and the failures, with the invocations' wall time
(``RESULTS/invocations.json``), the revision and the machine, atomically.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.arguments import one_line_failures, positive_int
from training import config
from training.record_schema import RecordError, read_history, read_invocations, read_metrics
from training.records import atomic_write_json
from training.schema import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class Outcome:
    run: str  # "<experiment> seed <k>"
    state: str  # finished | failed | unfinished | not run
    why: str = ""


def last_error_line(log: Path) -> str:
    """The traceback's last line (exception and message), or the file's last line."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty error.log)"


def outcome_of(run_dir: Path, run: str) -> Outcome:
    if (run_dir / "metrics.json").exists():
        return Outcome(run, "finished")
    if (run_dir / "error.log").exists():
        return Outcome(run, "failed", f"{last_error_line(run_dir / 'error.log')} ({run_dir / 'error.log'})")
    history = run_dir / "history.csv"
    if (run_dir / "checkpoint.pt").exists():
        rows = len(_valid(read_history, history) or [])
        return Outcome(run, "unfinished", f"stopped after epoch {rows}; rerun to resume it")
    return Outcome(
        run,
        "not run",
        (
            "no record (a config error, a divergence, a conflict, or its runner killed before it: "
            "see the runner's output)"
        ),
    )


def outcomes(
    results: Path, profile: str, configs: list[Path], only: list[str] | None = None, seeds: int | None = None
) -> list[Outcome]:
    """The outcome of every (experiment, seed) the profile runs, in the runner's order."""
    out = []
    for cfg in config.collect_configs(configs, profile, [], only):
        for seed in range(seeds if seeds is not None else cfg.seeds):
            out.append(outcome_of(results / cfg.name / f"seed{seed}", f"{cfg.name} seed {seed}"))
    return out


def counts(items: list[Outcome]) -> dict[str, int]:
    states = ("finished", "failed", "unfinished", "not run")
    return {state: sum(o.state == state for o in items) for state in states}


def report(items: list[Outcome]) -> str:
    c = counts(items)
    lines = [
        f"{c['finished']} of {len(items)} run(s) finished"
        + "".join(f", {n} {state}" for state, n in c.items() if state != "finished" and n)
    ]
    lines += [f"  {o.state}: {o.run}: {o.why}" for o in items if o.state != "finished"]
    return "\n".join(lines)


def _training_seconds(results: Path, run: str) -> float:
    """A finished run's training wall time (``wall_time_s`` of its metrics.json)."""
    name, seed = run.rsplit(" seed ", 1)
    metrics = _valid(read_metrics, results / name / f"seed{seed}" / "metrics.json")
    return float(metrics["wall_time_s"]) if metrics else 0.0


def _valid(read: Callable[[Path], Any], path: Path) -> Any:
    """``read(path)`` (a record_schema reader), or None for a record that is missing or bad (named on
    stderr): a report of what became of the runs never stops on one record."""
    try:
        return read(path)
    except RecordError as exc:
        if path.exists():
            print(f"warning: skipped {exc}", file=sys.stderr)
        return None


def record(items: list[Outcome], results: Path, profile: str) -> dict[str, Any]:
    """The counts, the failures, and what the invocations of ``results`` cost and ran on."""
    path = results / "invocations.json"
    invocations = _valid(read_invocations, path) or []
    last = invocations[-1] if invocations else {}
    return {
        "profile": profile,
        "runs": len(items),
        **counts(items),
        "not_finished": [{"run": o.run, "state": o.state, "why": o.why} for o in items if o.state != "finished"],
        "wall_time_s": sum(entry["seconds"] for entry in invocations),
        "training_s_summed": round(sum(_training_seconds(results, o.run) for o in items if o.state == "finished"), 1),
        "invocations": [
            {k: entry.get(k) for k in ("command", "seconds", "exit_status", "git_revision", "date", "load_average")}
            for entry in invocations
        ],
        "machine": {k: last.get(k) for k in ("cpu", "cpu_count", "gpus", "jobs", "threads_per_job", "torch")},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.outcome", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--profile", default="full", choices=list(config.PROFILES))
    p.add_argument("--configs", type=Path, action="append", default=None, help="default: experiments/configs")
    p.add_argument("--only", action="append", default=None, metavar="PATTERN")
    p.add_argument("--seeds", type=positive_int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the counts and failures here")
    args = p.parse_args(argv)
    try:
        items = outcomes(args.results, args.profile, args.configs or [CONFIG_DIR], args.only, args.seeds)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(items))
    if args.json is not None:
        atomic_write_json(args.json, record(items, args.results, args.profile))
    return 0 if counts(items)["finished"] == len(items) else 1


_main = one_line_failures(main)

if __name__ == "__main__":
    sys.exit(_main())
