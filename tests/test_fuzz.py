"""Property-based fuzzing: every shipped YAML mutated (bytes, keys, types, extreme values, structure)
and loaded as the runner loads it, and every command line driven with random flags. Each case must
end in a valid result or a clean error (the documented exit code, one ``error:`` line, no traceback).

The suite runs a few examples of each, derandomised; a longer run is one command:
``FUZZ_EXAMPLES=1000 FUZZ_RECORD=results/bench/fuzz.json .venv/bin/python -m pytest -q -n 0 -s
tests/test_fuzz.py`` (random seeds; each test prints its counts and adds them to the record).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.run import CONFIG_DIR
from training import config, cost
from training.records import atomic_write_json
from training.schema import ConfigError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,  # the suite: the same cases every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
SHIPPED = sorted(CONFIG_DIR.rglob("*.yaml"))

# Values a careless or hostile user may write, as YAML text (some no YAML library converts).
RAW = [
    "1" + "0" * 400,
    "-1" + "0" * 400,
    "1" + "0" * 5000,  # beyond Python's int-from-text digit limit
    "9223372036854775808",
    ".inf",
    "-.inf",
    ".nan",
    "1e999",
    "1e-400",
    "-0.0",
    "0",
    "-1",
    "null",
    "~",
    "''",
    "[]",
    "{}",
    "2001-02-30",
    "2001-02-03",
    "0x7fffffffffffffff",
    "0o777",
    "!!python/object/apply:os.system ['true']",
    "!!binary aGVsbG8=",
    "*nowhere",
    "&a [*a, *a]",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "1e12it",
    "1e400ep",
    "0.5it",
    "-3ep",
    "yes",
    '"\\x00"',
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2, 2**31, 2**63, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1e999", "nan", "-inf", "2000it", "1e400ep", "0ep", "coupled", "sgd", "rda", "cifar10"]),
    st.lists(st.integers(-5, 400), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


def _nodes(tree: Any, at: tuple = ()) -> Iterator[tuple]:
    yield at
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _nodes(value, (*at, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _nodes(value, (*at, i))


def _parent(tree: Any, at: tuple) -> Any:
    for key in at[:-1]:
        tree = tree[key]
    return tree


@st.composite
def mutated_configs(draw: st.DrawFn) -> tuple[Path, bytes, str]:
    """(the shipped YAML, its mutated bytes, what was done)."""
    path = draw(st.sampled_from(SHIPPED))
    text = path.read_text()
    kind = draw(st.sampled_from(["bytes", "value", "raw", "key", "structure"]))
    if kind == "bytes":
        data = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, max(0, len(data) - 1)))
            op = draw(st.sampled_from(["set", "insert", "delete"]))
            if op == "set" and data:
                data[i] = draw(st.integers(0, 255))
            elif op == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=6))
            else:
                del data[i : i + draw(st.integers(1, 24))]
        return path, bytes(data), kind
    tree = yaml.safe_load(text)
    at = draw(st.sampled_from([n for n in _nodes(tree) if n]))
    parent, key = _parent(tree, at), at[-1]
    if kind in ("value", "raw"):
        parent[key] = draw(VALUES) if kind == "value" else "@@RAW@@"
    elif kind == "key":
        op = draw(st.sampled_from(["delete", "rename", "add"]))
        if isinstance(parent, dict):
            value = parent.pop(key)
            if op == "rename":
                parent[draw(st.text(min_size=1, max_size=8))] = value
            elif op == "add":
                parent[key] = value
                parent[draw(st.sampled_from(["extra", "lr", "name", "epochs", "seed", "profiles", "1"]))] = draw(VALUES)
        else:
            parent.pop(key)
    else:
        wrap = draw(st.sampled_from(["list", "mapping", "deep", "empty"]))
        node = parent[key]
        parent[key] = {"list": [node], "mapping": {"x": node}, "deep": [[[[[[node]]]]]], "empty": {}}[wrap]
    try:
        dumped = yaml.safe_dump(tree, sort_keys=False)
    except ValueError:  # an int too long to write as text: write it raw
        dumped = text
    if kind == "raw":
        dumped = dumped.replace("'@@RAW@@'", draw(st.sampled_from(RAW))).replace("@@RAW@@", draw(st.sampled_from(RAW)))
    return path, dumped.encode(), f"{kind} at {'.'.join(map(str, at))}"


def load_as_the_runner_does(folder: Path, file: Path) -> bool:
    """What ``experiments.run`` does with a config before training: select it from its folder and by
    name under every profile, resolve and plan it, cost it (--list) and write its resolved form.
    Returns whether some profile loaded it (else every attempt ended in a clean config error)."""
    loaded = False
    for profile in config.PROFILES:
        for paths in ([file], [folder]):
            try:
                configs = config.collect_configs(paths, profile, [], None)
            except ConfigError as exc:
                message = str(exc)
                assert "\n" not in message, message
                assert str(folder) in message or message.startswith("--"), message
                continue
            for cfg in configs:
                config.plan(cfg)
                cost.gpu_hours(cfg)
                config.run_config_from_mapping(yaml.safe_load(config.dump_config(cfg)))
                loaded = True
    return loaded


def _report(name: str, counts: Counter) -> None:
    """A long run's counts: printed, and with ``FUZZ_RECORD=PATH`` added to the record at PATH (the
    README quotes that record's totals: ``python -m experiments.readme`` reads them)."""
    if "FUZZ_EXAMPLES" not in os.environ:
        return
    print(f"\n[fuzz] {name}: {sum(counts.values())} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if path := os.environ.get("FUZZ_RECORD"):
        record = json.loads(Path(path).read_text()) if Path(path).exists() else {"examples": EXAMPLES, "tests": {}}
        cases, failed = sum(counts.values()), counts["failed"]
        record["tests"][name] = {"cases": cases, "clean": cases - failed, "failed": failed}
        if name == "configs":  # how many mutated configs still loaded
            record["tests"][name]["loaded"] = counts["clean (loaded)"]
        for key in ("cases", "clean", "failed"):
            record[key] = sum(t[key] for t in record["tests"].values())
        atomic_write_json(Path(path), record)


def test_mutated_shipped_configs_load_or_fail_in_one_line() -> None:
    counts: Counter = Counter()

    @FUZZ
    @given(mutated_configs())
    def case(mutation: tuple[Path, bytes, str]) -> None:
        _, data, _ = mutation
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            file = folder / "mutated.yaml"
            file.write_bytes(data)
            try:
                loaded = load_as_the_runner_does(folder, file)
            except Exception:
                counts["failed"] += 1
                raise
            counts["clean (loaded)" if loaded else "clean (config error)"] += 1

    case()
    _report("configs", counts)
    # the mutations reach both sides: configs that still load, and configs refused
    assert counts["clean (loaded)"] >= 1 and counts["clean (config error)"] >= 1, counts


# ---------------------------------------------------------------- command lines

TOKENS = [
    "0",
    "-1",
    "1",
    "2",
    "3/2",
    "0/1",
    "1/0",
    "abc",
    "",
    "1e999",
    "nan",
    "0.5",
    "-0.5",
    "1" + "0" * 400,
    "--",
    "-",
    "smoke",
    "subset",
    "bogus",
    "cpu",
    "cuda",
    "train.epochs=1",
    "train.epochs=1" + "0" * 400,
    "=",
    "a.b.c=",
    "optimizer=3",
    "*",
    "r20_*",
]


@contextlib.contextmanager
def sandbox() -> Iterator[dict[str, str]]:
    """Paths the fuzzed arguments may name: a tiny config folder, a config, an empty folder, a file, a
    missing path, an endless device, a data root without data (so that no run ever trains). The
    working folder is the sandbox too: a relative path a flag names (``--json 0``) is written there."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        root = Path(tmp)
        configs = root / "configs"
        configs.mkdir()
        for name in ("dense/subset/r20_dense_sgd.yaml", "rda/subset/r20_rda_s80.yaml"):
            shutil.copy(CONFIG_DIR / name, configs / Path(name).name)
        (root / "empty").mkdir()
        (root / "file").write_text("not a folder\n")
        (root / "data" / "cifar-10-batches-py").mkdir(parents=True)
        (root / "README.md").write_text("# nothing\n")
        yield {
            "configs": str(configs),
            "config": str(configs / "r20_dense_sgd.yaml"),
            "empty": str(root / "empty"),
            "file": str(root / "file"),
            "missing": str(root / "missing" / "x"),
            "zero": "/dev/zero",
            "data": str(root / "data"),
            "results": str(root / "results"),
            "readme": str(root / "README.md"),
        }


# Each entry point: its main, its flags, the arguments always appended (last wins: no run trains, no
# file outside the sandbox is written), and its documented exit codes.
def _entry(module: str) -> Callable[[list[str]], int]:
    import importlib

    if ":" in module:  # a parser only: a clean parse is a valid result
        name, function = module.split(":")
        parse = getattr(importlib.import_module(name), function)
        return lambda argv: parse(argv) and 0
    module = importlib.import_module(module)
    return getattr(module, "_main", module.main)  # what ``python -m`` calls


ENTRIES: dict[str, tuple[str, list[str], Callable[[dict[str, str]], list[str]], set[int]]] = {
    "run": (
        "experiments.run",
        ["--profile", "--seeds", "--only", "--set", "--force", "--no-test", "--list", "--shard", "--device"],
        lambda p: ["--data-root", p["data"], "--results", p["results"], "--no-progress"],
        {0, 1, 2, 3},
    ),
    "tune": (
        "experiments.tune",
        ["--target", "--within", "--lam", "--max-runs", "--closest", "--profile", "--update"],
        lambda p: ["--data-root", p["data"], "--results", p["results"]],
        {0, 1, 2, 3},
    ),
    "summary": ("experiments.summary", [], lambda p: [], {0, 1, 2}),
    "compare": ("experiments.compare", ["--metric", "--control", "--family"], lambda p: [], {0, 1, 2}),
    "verify": ("experiments.verify", ["--steps", "--device"], lambda p: ["--data-root", p["data"]], {0, 1, 2, 3}),
    "outcome": (
        "experiments.outcome",
        ["--profile", "--configs", "--json", "--only", "--seeds"],
        lambda p: [],
        {0, 1, 2},
    ),
    "readme": ("experiments.readme", ["--check", "--readme"], lambda p: ["--readme", p["readme"]], {0, 1, 2}),
    "notebooks": (
        "experiments.notebooks",
        ["--profile", "--figures", "--jobs", "--notebooks"],
        lambda p: ["--results", p["missing"]],  # every check before any notebook runs
        {2},
    ),
    "export": ("experiments.export", ["-o", "--json"], lambda p: [], {0, 1, 2}),
    "invocation": (
        "experiments.invocation",
        ["--seconds", "--status", "--revision", "--profile", "--jobs"],
        lambda p: [],
        {0, 2},
    ),
    "make_subset": ("experiments.make_subset", [], lambda p: [], {0, 1, 2}),
    "gpu_check": ("experiments.gpu_check", [], lambda p: [], {0, 1, 2}),  # without --dry-run: no work on a CPU
    # The benchmarks would run for minutes with valid arguments: their parsing alone is fuzzed.
    "bench": (
        "experiments.bench.__main__:parse_args",
        ["optimizer", "train", "latency", "jobs", "export", "--repeats", "--warmup", "--threads", "--batch"]
        + ["--steps", "--epochs", "--workers", "--batch-sizes", "--jobs", "--sparsity", "--device", "--models"],
        lambda p: [],
        {0, 2},
    ),
}
# Exit codes that report a result, not an error (no error line expected): runs not all finished, a
# replay that differs from its record.
RESULT_CODES = {"outcome": {1}, "verify": {1}}
PATH_KEYS = ["configs", "config", "empty", "file", "missing", "zero", "results"]


@st.composite
def command_lines(draw: st.DrawFn, flags: list[str]) -> list[tuple[str, str | None]]:
    """A random command line: flags and values, with placeholders for the sandbox's paths."""
    out: list[tuple[str, str | None]] = []
    for _ in range(draw(st.integers(0, 6))):
        what = draw(st.sampled_from(["flag", "token", "path", "text"] if flags else ["token", "path", "text"]))
        if what == "flag":
            out.append(("flag", draw(st.sampled_from(flags))))
        elif what == "token":
            out.append(("text", draw(st.sampled_from(TOKENS))))
        elif what == "path":
            out.append(("path", draw(st.sampled_from(PATH_KEYS))))
        else:
            out.append(("text", draw(st.text(max_size=10))))
    return out


def call(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_random_command_lines_end_in_a_result_or_one_clean_error(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module, flags, appended, codes = ENTRIES[entry]
    main = _entry(module)
    counts: Counter = Counter()
    monkeypatch.setenv("DATA_ROOT", "/nonexistent-data-root")

    @FUZZ
    @given(command_lines(flags))
    def case(line: list[tuple[str, str | None]]) -> None:
        with sandbox() as paths:
            argv = [paths[value] if kind == "path" else value for kind, value in line]
            argv = [a for a in argv if a is not None] + appended(paths)
            try:
                code, err = call(main, argv)
            except Exception:
                counts["failed"] += 1
                raise
            clean = "Traceback" not in err and code in codes | {0}
            if code not in {0} | RESULT_CODES.get(entry, set()):
                # (a usage error echoes the argument, which may itself hold a line break)
                clean = clean and ("error: " in err or err.startswith("interrupted"))
            counts["clean" if clean else "failed"] += 1
            assert clean, f"{entry} {argv}: exit {code}\n{err}"

    case()
    _report(entry, counts)


# What the long runs found, kept as plain cases.
def test_a_key_holding_a_line_break_is_named_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text((CONFIG_DIR / "dense/subset/r20_dense_sgd.yaml").read_text() + '"a\\nb": 1\n')
    with pytest.raises(ConfigError) as error:
        config.load_config(path)
    assert "\n" not in str(error.value) and "'a\\nb': unknown key" in str(error.value)


def test_a_nul_byte_in_a_config_path_is_a_config_error() -> None:
    from experiments.run import main

    code, err = call(main, ["\x00", "--list"])
    assert code == 2 and err.startswith("error: '\\x00': not a valid path") and "Traceback" not in err
