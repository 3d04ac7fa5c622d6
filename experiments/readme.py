"""Write the README's result tables from the runs they summarise: ``python -m experiments.readme``.

A generated table sits in README.md between ``<!-- KIND: FOLDER -->`` and ``<!-- end KIND -->``
(FOLDER relative to the repository root); this fills it from FOLDER's finished runs, so no number in
it is typed by hand. KIND ``table`` is the summary (``reporting.tables.readme_markdown``), KIND
``verdicts`` the "What this shows" prose and the family of
comparisons it is written from, with nominal and Holm-corrected verdicts (``reporting.verdicts``).
``--check`` writes nothing and fails, naming each stale table, where the README and the results
disagree (the test suite runs it), and where the Results section states a verdict outside a
generated block (``typed_verdicts``): a verdict is read off the tools, never typed beside them.

Counts quoted in the prose sit between ``<!-- count: KEY -->`` and ``<!-- end count -->`` and are
filled from the configs the same way (``config_counts``): ``PROFILE.experiments``, ``PROFILE.runs``
(experiments x seeds), ``PROFILE.epochs`` (over every seed), ``full.epochs.METHOD[+METHOD...]`` and
``orders`` (the legend orders of the shipped configs' variants), ``sample`` (the experiments of
``run --sample``); so a new method or config fails
``--check`` until the README says the new numbers. A key ``PATH#FIELD[@FORMAT]`` quotes a value of a
record instead (``results/bench/rehearsal_cpu.json#wall_time_s``), and KIND ``bench-train`` of a
``bench train`` record writes its table (``reporting.bench``): a measured figure is read off its
record, never typed.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from experiments.arguments import one_line_failures
from reporting.bench import read_record, record_value, train_markdown
from reporting.budgets import budgets_markdown
from reporting.provenance import code_changes_markdown, machines_markdown
from reporting.results import ResultsError, runs_frame
from reporting.tables import readme_markdown, summary_frame
from reporting.verdicts import scale_markdown, verdicts_markdown
from training.files import read_text_bounded
from training.records import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
KINDS: dict[str, Callable[[pd.DataFrame], str]] = {
    "table": lambda frame: readme_markdown(summary_frame(frame)),
    "verdicts": verdicts_markdown,
    "scale": scale_markdown,
    "machines": machines_markdown,
}
# Kinds written from a path rather than from finished runs: a folder of configs, a benchmark record.
CONFIG_KINDS: dict[str, Callable[[Path], str]] = {
    "budgets": budgets_markdown,
    "bench-train": lambda path: train_markdown(read_record(path)),
    "code-changes": code_changes_markdown,
}
# The words a verdict is stated in (reporting.stats.verdict and corrected, and their paraphrases).
VERDICT_WORDS = re.compile(r"\b(higher|lower|unresolved|separates?|separated|outperforms?|beats?)\b", re.I)
BLOCK = re.compile(
    r"(<!-- (?P<kind>"
    + "|".join(map(re.escape, [*KINDS, *CONFIG_KINDS]))
    + r"): (?P<folder>\S+) -->\n)(?P<body>.*?)(<!-- end (?P=kind) -->)",
    re.S,
)


def _frame(folder: Path) -> pd.DataFrame:
    with warnings.catch_warnings():  # a skipped run is named by runs_frame; the table is what matters here
        warnings.simplefilter("ignore")
        return runs_frame(folder)


def table_for(folder: Path, kind: str = "table", frame: pd.DataFrame | None = None) -> str:
    """The body of a ``kind`` block of ``folder`` (``frame``: its runs, when already read)."""
    if kind in CONFIG_KINDS:
        return CONFIG_KINDS[kind](folder)
    return KINDS[kind](_frame(folder) if frame is None else frame)


def render(text: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with every table block filled from its folder under ``root``; and the folders whose
    block changed."""
    stale: list[str] = []
    frames: dict[Path, pd.DataFrame] = {}  # each results folder read once, however many blocks show it

    def fill(match: re.Match[str]) -> str:
        folder = root / match["folder"]
        if match["kind"] in KINDS and folder not in frames:
            frames[folder] = _frame(folder)
        body = table_for(folder, match["kind"], frames.get(folder))
        if body != match["body"]:
            stale.append(f"{match['kind']} of {match['folder']}")
        return match[1] + body + match[5]

    return BLOCK.sub(fill, text), stale


COUNT = re.compile(r"(<!-- count: (?P<key>[\w./#@+-]+) -->)(?P<body>.*?)(<!-- end count -->)", re.S)


def config_counts(config_dir: Path) -> Callable[[str], str]:
    """``value(KEY)``: a count of the configs under ``config_dir``, as the README prints it (thousands
    separated by commas); an unknown KEY is a KeyError naming it."""
    from pruning.registry import METHODS
    from training import config

    cache: dict[str, list[config.ExperimentConfig]] = {}

    def configs(profile: str) -> list[config.ExperimentConfig]:
        if profile not in cache:
            cache[profile] = config.collect_configs([config_dir], profile, [], None)
        return cache[profile]

    def epochs(c: config.ExperimentConfig) -> int:
        return c.seeds * sum(s.epochs for s in config.plan(c))

    def value(key: str) -> str:
        parts = key.split(".")
        if key == "sample":  # run --sample: one experiment per method x model x data set of the full profile
            return f"{len(config.stratified_sample(configs('rehearsal'))):,}"
        if key == "orders":
            variants = {METHODS[c.method.name].variant(c.method, c.optimizer) for c in configs("full")}
            variants |= {METHODS[c.method.name].variant(c.method, c.optimizer) for c in configs("subset")}
            return ", ".join(str(o) for o in sorted({v.order for v in variants}))
        if len(parts) >= 2 and parts[0] in config.PROFILES:
            chosen = configs(parts[0])
            if len(parts) == 3 and parts[1] == "epochs":
                methods = parts[2].split("+")
                if unknown := [m for m in methods if m not in METHODS]:
                    raise KeyError(f"count {key!r}: no method {unknown[0]!r}")
                chosen = [c for c in chosen if c.method.name in methods]
            if len(parts) == 2 or parts[1] == "epochs":
                total = {
                    "experiments": len(chosen),
                    "runs": sum(c.seeds for c in chosen),
                    "epochs": sum(map(epochs, chosen)),
                }.get(parts[1])
                if total is not None:
                    return f"{total:,}"
        raise KeyError(f"unknown count {key!r} (PROFILE.experiments/runs/epochs, full.epochs.METHOD, orders, sample)")

    return value


def record_count(root: Path, key: str) -> str:
    """A value of a record: KEY is ``PATH#FIELD`` or ``PATH#FIELD@FORMAT`` (PATH relative to ``root``,
    FIELD dotted, FORMAT a format spec: ``results/bench/rehearsal_cpu.json#wall_time_s``), or, for a
    results folder, ``FOLDER#runs`` / ``FOLDER#epochs`` (its finished runs); an integer is printed
    with thousands separated by commas."""
    path, _, field = key.partition("#")
    field, _, spec = field.partition("@")
    if (root / path).is_dir():  # a results folder: its finished runs, or their epochs
        frame = _frame(root / path)
        if field not in ("runs", "epochs"):
            raise KeyError(f"count {key!r}: a results folder gives runs or epochs")
        value = len(frame) if field == "runs" else int(pd.to_numeric(frame["epochs"]).sum())
    else:
        value = record_value(root / path, field)
    if spec:
        return format(value, spec)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def render_counts(text: str, config_dir: Path, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every count block filled from the configs under ``config_dir`` (or, for a
    ``PATH#FIELD`` key, from the record at ``root``/PATH); and the stale ones, each as "KEY: README
    says X, its source (configs or record) gives Y"."""
    configs = config_counts(config_dir)
    stale: list[str] = []

    def value(key: str) -> str:
        return record_count(root, key) if "#" in key else configs(key)

    def fill(match: re.Match[str]) -> str:
        body = value(match["key"])
        if body != match["body"]:
            stale.append(f"{match['key']}: the README says {match['body']!r}, its source gives {body!r}")
        return match[1] + body + match[4]

    return COUNT.sub(fill, text), stale


def typed_verdicts(text: str) -> list[str]:
    """The lines of the README's "## Results" section, outside its generated blocks, that state a
    verdict (``VERDICT_WORDS``): such a sentence cannot be checked against the tools."""
    start = re.search(r"^## Results$", text, re.M)
    if start is None:
        return []
    end = re.search(r"^## ", text[start.end() :], re.M)
    section = text[start.end() : start.end() + end.start() if end else len(text)]
    section = BLOCK.sub("", section)
    return [line.strip() for line in section.splitlines() if VERDICT_WORDS.search(line)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.readme", description=__doc__.split("\n\n")[0])
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table or a count is stale")
    p.add_argument("--configs", type=Path, default=ROOT / "experiments" / "configs", help="where counts are read")
    args = p.parse_args(argv)
    text = read_text_bounded(args.readme, 1 << 24)
    if not BLOCK.search(text):
        print(f"error: {args.readme}: no '<!-- table: FOLDER -->' ... '<!-- end table -->' block", file=sys.stderr)
        return 2
    try:
        new, stale = render(text, args.readme.resolve().parent)
        new, stale_counts = render_counts(new, args.configs, args.readme.resolve().parent)
    except (ResultsError, KeyError, ValueError, FileNotFoundError) as exc:
        print(f"error: {args.readme}: {str(exc).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 2
    if args.check:
        typed = typed_verdicts(text)
        for line in typed:
            print(
                f"error: {args.readme}: a verdict typed in Results, outside a generated block: {line}", file=sys.stderr
            )
        for block in stale:
            print(
                f"error: {args.readme}: the {block} differs from its results "
                "(python -m experiments.readme rewrites it)",
                file=sys.stderr,
            )
        for count in stale_counts:
            print(f"error: {args.readme}: count {count} (python -m experiments.readme rewrites it)", file=sys.stderr)
        return 1 if stale or stale_counts or typed else 0
    if stale or stale_counts:
        atomic_write_text(args.readme, new)
    print(f"{args.readme}: {len(stale)} table(s) rewritten" + (f" ({', '.join(stale)})" if stale else ""))
    if stale_counts:
        print(f"{args.readme}: {len(stale_counts)} count(s) rewritten ({'; '.join(stale_counts)})")
    return 0


_main = one_line_failures(main)


if __name__ == "__main__":
    sys.exit(_main())
