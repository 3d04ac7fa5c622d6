"""training.record_schema: every record type, read valid, and mutated (property-based).

Each mutation that makes a record invalid (a wrong type, null, a number as a string, NaN, an
infinity, a huge value, a missing or an unknown key, truncated or undecodable bytes) must end in a
named skip (RecordError, one line, starting with the record's path): never a traceback and never a
result. Random byte flips, which may leave a record valid, must end in a named skip or a record
that passes the checks. The number of examples per property is RECORD_FUZZ_EXAMPLES (default 25);
a longer run: ``RECORD_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q -n 0 tests/test_record_schema.py``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reporting import results
from tests.fixtures.synthetic_results import write_results_tree
from training import record_schema as rs
from training.records import HISTORY_FIELDS

ROOT = Path(__file__).resolve().parent.parent
SUBSET = ROOT / "results" / "subset"
RUN = SUBSET / "r20_dense_sgd" / "seed0"
EXAMPLES = int(os.environ.get("RECORD_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 25,  # the suite's short run is the same every time; a long run explores
)


def named_skip(read: Callable[[Path], Any], path: Path) -> str:
    """``read(path)`` must fail with a one-line RecordError naming ``path``; returns the message."""
    with pytest.raises(rs.RecordError) as caught:
        read(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    assert message.count(str(path)) == 1, message  # named once, not once per layer of reading
    return message


def test_warnings_to_stderr_passes_other_warnings_on_and_ends(tmp_path: Path) -> None:
    """A warning of another kind raised inside (a library's UserWarning) is passed on once, after the
    skipped records are printed; the command then ends (a subprocess, so a hang fails the test)."""
    code = (
        "import warnings\n"
        "from training.record_schema import warnings_to_stderr, skip, RecordError\n"
        "with warnings_to_stderr():\n"
        "    warnings.warn('from a library')\n"
        "    skip(RecordError('a/metrics.json: bad'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert "warning: skipped a/metrics.json: bad" in done.stderr and done.stderr.count("from a library") == 1


def skip_or_valid(read: Callable[[Path], Any], path: Path) -> None:
    """``read(path)`` either fails with a named RecordError or returns (no other exception)."""
    try:
        read(path)
    except rs.RecordError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


# ------------------------------------------------------------------ the committed records are valid


def test_every_committed_record_reads_as_valid() -> None:
    runs = sorted(SUBSET.glob("*/seed*/metrics.json"))
    assert runs, f"no committed runs under {SUBSET}"  # which runs must be there: test_subset_protocol
    for metrics in runs:
        folder = metrics.parent
        rs.read_metrics(metrics)
        rs.read_config(folder / "config.yaml")
        rs.read_env(folder / "env.json")
        assert len(rs.read_history(folder / "history.csv")) == rs.read_metrics(metrics)["epochs"]
    invocations = json.loads((SUBSET / "invocations.json").read_text())
    assert len(rs.read_invocations(SUBSET / "invocations.json")) == len(invocations)  # none left out
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one run left out
        assert len(results.runs_frame(SUBSET)) == len(runs)


# ------------------------------------------------------------------ invalid values per field

NOT_A_NUMBER = [None, "0.5", "abc", True, [], {}, "NaN"]
NON_FINITE = [math.nan, math.inf, -math.inf]


def invalid_values(field: rs.Field) -> list[Any]:
    """Values ``field`` refuses: of other types, non-finite, out of range, huge."""
    nulls = [] if field.null else [None]
    if field.kind in ("int", "float"):
        out = [*NOT_A_NUMBER[1:], *nulls, *NON_FINITE, 1e300, -1e300, 10**400]
        if field.lo is not None:
            out.append(field.lo - 1)
        if field.hi is not None:
            out.append(field.hi * 2 + 1)
        if field.kind == "int":
            out.append(1.5)
        return out
    if field.kind == "bool":
        return [*nulls, 0, 1, "true", [], 1.5]
    if field.kind in ("hex", "fingerprint"):
        return [*nulls, 12, "not-a-hash", "", [], "ABCDEF0123456789"]
    if field.kind == "list":
        return [*nulls, 12, "a", {}, True]
    if field.kind == "dict":
        return [*nulls, 12, "a", [], True]
    return [*nulls, 12, 1.5, [], {}, True]  # str


def json_text(data: Any) -> str:
    """JSON as a careless writer would write it (NaN and Infinity allowed; huge ints as they are)."""
    return json.dumps(data, allow_nan=True)


@st.composite
def mutated_mapping(draw: st.DrawFn, record: dict[str, Any], fields: dict[str, rs.Field], closed: bool) -> Any:
    """``record`` with one invalid change: a field's value, a required key removed, an unknown key
    (closed records only), or the whole record replaced by a non-mapping."""
    present = [k for k in fields if k in record]
    required = [k for k in present if fields[k].required]
    kinds = ["value", "missing", "not_a_mapping"] + (["extra"] if closed else [])
    kind = draw(st.sampled_from(kinds))
    out = dict(record)
    if kind == "value":
        key = draw(st.sampled_from(present))
        out[key] = draw(st.sampled_from(invalid_values(fields[key])))
    elif kind == "missing":
        del out[draw(st.sampled_from(required))]
    elif kind == "extra":
        out[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in fields))] = draw(
            st.one_of(st.none(), st.integers(), st.text(max_size=5))
        )
    else:
        return draw(st.sampled_from([None, [], "text", 12, [out]]))
    return out


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ------------------------------------------------------------------ metrics.json


METRICS = json.loads((RUN / "metrics.json").read_text())


@FUZZ
@given(mutated_mapping(METRICS, rs.METRICS_FIELDS, closed=False))
def test_a_mutated_metrics_json_is_a_named_skip(tmp_path: Path, record: Any) -> None:
    named_skip(rs.read_metrics, write(tmp_path / "metrics.json", json_text(record)))


# a run whose method adds its own entries (rounds, rewind, latency, ...)
METHOD_METRICS = json.loads((SUBSET / "r20_lottery_s80" / "seed0" / "metrics.json").read_text())


@FUZZ
@given(
    st.sampled_from(sorted(set(METHOD_METRICS) - set(rs.METRICS_FIELDS))),
    st.sampled_from([math.nan, math.inf, 1e300, 10**400, [math.nan], {"a": math.inf}, {"b": [1e300]}]),
)
def test_a_method_entry_of_metrics_json_must_be_finite(tmp_path: Path, key: str, value: Any) -> None:
    named_skip(rs.read_metrics, write(tmp_path / "metrics.json", json_text(METHOD_METRICS | {key: value})))


@FUZZ
@given(st.integers(min_value=0, max_value=2_000_000), st.sampled_from(["layer", "weights", "nonzero", "density"]))
def test_a_mutated_layer_row_is_a_named_skip(tmp_path: Path, pick: int, key: str) -> None:
    layers = [dict(layer) for layer in METRICS["layers"]]
    index = pick % len(layers)
    layers[index][key] = [None, "x", -1, 2.5, 1e300][pick % 5] if key != "layer" else [None, 3][pick % 2]
    message = named_skip(rs.read_metrics, write(tmp_path / "metrics.json", json_text(METRICS | {"layers": layers})))
    assert f"layers[{index}]" in message


# ------------------------------------------------------------------ bytes: truncated, undecodable, flipped

RECORDS = {
    "metrics.json": rs.read_metrics,
    "env.json": rs.read_env,
    "config.yaml": rs.read_config,
    "history.csv": rs.read_history,
    "invocations.json": rs.read_invocations,
}


@pytest.mark.parametrize("name", list(RECORDS))
@pytest.mark.parametrize("target", ["/dev/zero", "pipe", "huge"])
def test_a_record_that_is_a_device_a_pipe_or_huge_is_a_named_skip(tmp_path: Path, name: str, target: str) -> None:
    """Every record is read with a bound: a link to an endless device, a pipe with no writer or a file
    past the bound ends in one line, never a hang or an exhausted memory."""
    path = tmp_path / name
    if target == "pipe":
        os.mkfifo(path)
    elif target == "huge":
        with open(path, "wb") as f:
            f.truncate(rs.RECORD_LIMIT + 1)  # sparse: no disk used
    else:
        path.symlink_to(target)
    expected = "more than the" if target == "huge" else "not a regular file"
    assert expected in named_skip(RECORDS[name], path)


def original(name: str) -> bytes:
    return ((SUBSET if name == "invocations.json" else RUN) / name).read_bytes()


@FUZZ
@given(st.sampled_from(["metrics.json", "env.json", "invocations.json"]), st.floats(0, 1))
def test_truncated_json_is_a_named_skip(tmp_path: Path, name: str, where: float) -> None:
    data = original(name)
    cut = int(where * (len(data.rstrip()) - 1))  # short of the closing bracket
    named_skip(RECORDS[name], write(tmp_path / name, data[:cut]))


@FUZZ
@given(st.sampled_from(sorted(RECORDS)), st.floats(0, 1), st.sampled_from([b"\xff", b"\xc3", b"\x80\x80"]))
def test_undecodable_bytes_are_a_named_skip(tmp_path: Path, name: str, where: float, bad: bytes) -> None:
    data = original(name)
    at = int(where * len(data))
    named_skip(RECORDS[name], write(tmp_path / name, data[:at] + bad + data[at:]))


@FUZZ
@given(st.sampled_from(sorted(RECORDS)), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4))
def test_flipped_bytes_end_in_a_named_skip_or_a_valid_record(
    tmp_path: Path, name: str, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(original(name))
    for where, byte in flips:
        data[int(where * (len(data) - 1))] = byte
    skip_or_valid(RECORDS[name], write(tmp_path / name, bytes(data)))


# ------------------------------------------------------------------ env.json, invocations.json

ENV = json.loads((RUN / "env.json").read_text())
INVOCATIONS = json.loads((SUBSET / "invocations.json").read_text())


@FUZZ
@given(mutated_mapping(ENV, rs.ENV_FIELDS, closed=True))
def test_a_mutated_env_json_is_a_named_skip(tmp_path: Path, record: Any) -> None:
    named_skip(rs.read_env, write(tmp_path / "env.json", json_text(record)))


@FUZZ
@given(mutated_mapping(INVOCATIONS[0], rs.INVOCATION_FIELDS, closed=True), st.integers(0, 3))
def test_a_mutated_invocation_entry_is_left_out_by_name(tmp_path: Path, entry: Any, at: int) -> None:
    entries = [*INVOCATIONS[:at], entry, *INVOCATIONS[at:]]
    path = write(tmp_path / "invocations.json", json_text(entries))
    try:
        json.dumps(entry, allow_nan=False)
        strict = True
    except ValueError:
        strict = False
    if not strict:  # NaN or an infinity: not strict JSON, the whole file is refused
        named_skip(rs.read_invocations, path)
        return
    with pytest.warns(rs.RecordSkipped) as caught:
        valid = rs.read_invocations(path)
    assert valid == INVOCATIONS  # the bad entry left out, every other one kept
    assert [str(w.message) for w in caught if str(w.message).startswith(f"skipped {path}[{at}]: ")]


@FUZZ
@given(st.sampled_from([None, {}, "text", 12, 1.5, True]))
def test_an_invocations_file_that_is_not_a_list_is_a_named_skip(tmp_path: Path, data: Any) -> None:
    named_skip(rs.read_invocations, write(tmp_path / "invocations.json", json_text(data)))


# ------------------------------------------------------------------ history.csv

HISTORY = (RUN / "history.csv").read_text().splitlines()
CELL_INVALID = ["abc", "nan", "inf", "-inf", "1e400", "-1", "0x10", "1,5"]


def invalid_cells(column: str, row: list[str]) -> list[str]:
    """Cell texts ``column`` refuses in ``row``: text, non-finite, huge, negative, out of range, and a
    blank beside a filled partner (val_loss / val_acc, test_loss / test_acc)."""
    field = rs._HISTORY_CELLS[column]
    out = list(CELL_INVALID)
    if field.kind == "int" or (field.hi is not None and field.hi < 1.5):
        out.append("1.5")
    partner = {"val_loss": "val_acc", "val_acc": "val_loss", "test_loss": "test_acc", "test_acc": "test_loss"}
    if column in partner and row[HISTORY_FIELDS.index(partner[column])] != "":
        out.append("")
    return out


@FUZZ
@given(st.integers(1, len(HISTORY) - 1), st.sampled_from([f for f in HISTORY_FIELDS if f != "stage"]), st.data())
def test_a_mutated_history_cell_is_a_named_skip(tmp_path: Path, line: int, column: str, data: st.DataObject) -> None:
    rows = [row.split(",") for row in HISTORY]
    value = data.draw(st.sampled_from(invalid_cells(column, rows[line])))
    rows[line][HISTORY_FIELDS.index(column)] = f'"{value}"' if "," in value else value
    message = named_skip(rs.read_history, write(tmp_path / "history.csv", "\n".join(",".join(r) for r in rows)))
    assert f"line {line + 1}" in message


@FUZZ
@given(st.sampled_from(["drop_cell", "extra_cell", "header", "no_rows", "epoch_order", "empty"]), st.integers(1, 14))
def test_a_history_of_the_wrong_shape_is_a_named_skip(tmp_path: Path, kind: str, line: int) -> None:
    rows = [row.split(",") for row in HISTORY]
    if kind == "drop_cell":
        rows[line].pop()
    elif kind == "extra_cell":
        rows[line].append("1")
    elif kind == "header":
        rows[0][line % len(rows[0])] += "x"
    elif kind == "no_rows":
        rows = rows[:1]
    elif kind == "epoch_order":
        rows[line][0] = str(int(rows[line][0]) + 1)
    else:
        rows = []
    named_skip(rs.read_history, write(tmp_path / "history.csv", "\n".join(",".join(r) for r in rows)))


# ------------------------------------------------------------------ config.yaml

CONFIG = yaml.safe_load((RUN / "config.yaml").read_text())
CONFIG_INVALID = {
    "seed": [None, "0", -1, 1.5, 10**400, []],
    "model": [None, 12, "resnet9000", []],
    "optimizer.lr": [None, "abc", -1, 0, math.nan, [], {}],
    "optimizer.momentum": [1.5, -1, "x"],
    "train.epochs": [None, 0, -3, "x", 1.5, 10**400],
    "data.batch_size": [0, None, "x"],
    "data.dataset": ["mnist", 3, None],
    "method.name": ["nosuchmethod", None, 3],
    "data": [None, 3, "x", []],
    "bn_weight_init": ["x", None, []],
    "unknown_key": [1, "x", None],
}


@FUZZ
@given(st.sampled_from(sorted(CONFIG_INVALID)), st.data())
def test_a_mutated_config_yaml_is_a_named_skip(tmp_path: Path, key: str, data: st.DataObject) -> None:
    value = data.draw(st.sampled_from(CONFIG_INVALID[key]))
    config = json.loads(json.dumps(CONFIG))
    head, _, rest = key.partition(".")
    if rest:
        config[head][rest] = value
    else:
        config[head] = value
    named_skip(rs.read_config, write(tmp_path / "config.yaml", yaml.safe_dump(config, allow_unicode=True)))


@FUZZ
@given(st.sampled_from(["- a\n- b\n", "just text\n", "12\n", "", "a: [1, 2\n", "{a: 1}}\n", "seed: 0\n"]))
def test_a_config_yaml_that_is_not_a_config_is_a_named_skip(tmp_path: Path, text: str) -> None:
    named_skip(rs.read_config, write(tmp_path / "config.yaml", text))


# ------------------------------------------------------------------ through the reports


@settings(max_examples=max(3, EXAMPLES // 5), deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_mapping(METRICS, rs.METRICS_FIELDS, closed=False))
def test_a_mutated_run_is_left_out_of_the_tables_by_name(tmp_path_factory: pytest.TempPathFactory, record: Any) -> None:
    tree = write_results_tree(tmp_path_factory.mktemp("results"))
    bad = tree / "dense_r20" / "seed1" / "metrics.json"
    write(bad, json_text(record))
    with pytest.warns(rs.RecordSkipped, match=f"skipped {bad}: "):
        runs = results.runs_frame(tree)
    assert len(runs) == 17 and "seed1" not in set(runs.loc[runs.name == "dense_r20", "run_dir"].str[-5:])
    shutil.rmtree(tree)
