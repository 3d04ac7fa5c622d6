"""The records a run (and ``run_all.sh``) writes, checked when they are read.

Every reader of ``metrics.json``, ``history.csv``, ``config.yaml``, ``env.json`` and
``invocations.json`` goes through this module: types and ranges are checked, and a record that
fails raises ``RecordError`` whose one-line message names its path and key. ``skip`` turns such an
error into a one-line ``RecordSkipped`` warning, for readers that leave a bad record out and go on.
A blank history cell is ``None`` (not measured), never a number.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from training.files import FileRefused, read_text_bounded
from training.records import HISTORY_FIELDS
from training.schema import ConfigError, short


class RecordError(ValueError):
    """A record that cannot be trusted; the message names its path and the key."""


class RecordSkipped(UserWarning):
    """A bad record left out by a reader (one line: its path and what is wrong)."""


def skip(error: BaseException) -> None:
    """Warn (one line) that the record of ``error`` is left out."""
    warnings.warn(RecordSkipped(f"skipped {error}"), stacklevel=3)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """For command-line tools: each record skipped inside is printed to stderr as one line,
    "warning: skipped <path>: <what is wrong>" (no source line, no traceback)."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always", RecordSkipped)
            try:
                yield
            finally:
                caught = list(recorded)
    finally:
        # Passed on once the recording has ended: re-warned inside it, a warning would be recorded
        # again while the loop reads the list, and the loop would never end.
        for w in caught:
            if issubclass(w.category, RecordSkipped):
                print(f"warning: {w.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# ------------------------------------------------------------------ fields

HEX = re.compile(r"^[0-9a-f]{8,64}$")
FINGERPRINT = re.compile(r"^(synthetic-)?[0-9a-f]{8,64}$")  # a rehearsal's generated data says so
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
BIG = 1e15  # above any count this project records (ResNet-50 on ImageNet: ~1e10 FLOPs)


@dataclass(frozen=True)
class Field:
    kind: str  # "int", "float", "str", "bool", "hex", "fingerprint", "list", "dict"
    lo: float | None = None
    hi: float | None = None
    null: bool = False
    required: bool = True


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(value: Any, field: Field, key: str) -> Any:
    """``value`` if it is of ``field``'s kind and range, else RecordError("<key>: ...")."""
    if value is None:
        if field.null:
            return None
        raise RecordError(f"{key}: null where a {field.kind} is required")
    kind = field.kind
    if kind in ("int", "float"):
        ok = _number(value) if kind == "float" else isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise RecordError(f"{key}: expected {'a number' if kind == 'float' else 'an integer'}, got {short(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"{key}: not a finite number ({value})")
        lo, hi = field.lo, field.hi if field.hi is not None else BIG
        if (lo is not None and value < lo) or value > hi:
            raise RecordError(f"{key}: {short(value)} outside [{lo if lo is not None else '-inf'}, {hi:g}]")
        return value
    expected = {"str": str, "hex": str, "fingerprint": str, "bool": bool, "list": list, "dict": dict}[kind]
    if not isinstance(value, expected):
        raise RecordError(f"{key}: expected a {kind}, got {short(value)}")
    if kind == "hex" and not HEX.match(value):
        raise RecordError(f"{key}: expected a hexadecimal hash, got {short(value)}")
    if kind == "fingerprint" and not FINGERPRINT.match(value):
        raise RecordError(f"{key}: expected a data fingerprint (a hexadecimal hash), got {short(value)}")
    return value


def check_mapping(data: Any, fields: dict[str, Field], prefix: str = "", extra: bool = False) -> dict[str, Any]:
    """``data`` checked against ``fields`` (keys named ``prefix + key``); unknown keys refused unless
    ``extra`` (then any plain JSON value)."""
    if not isinstance(data, dict):
        raise RecordError(f"{prefix.rstrip('.') or 'record'}: expected a mapping, got {short(data)}")
    for key, field in fields.items():
        if key in data:
            check_value(data[key], field, prefix + key)
        elif field.required:
            raise RecordError(f"{prefix}{key}: required key is missing")
    for key, value in data.items():
        if key in fields:
            continue
        if not extra:
            raise RecordError(f"{prefix}{short(key)}: unknown key")
        if not isinstance(key, str) or not NAME.match(key):
            raise RecordError(f"{prefix}{short(key)}: not a key name")
        _plain_json(value, prefix + key)
    return data


def _plain_json(value: Any, key: str, depth: int = 0) -> None:
    """A method's own metrics entry: finite numbers, strings, booleans, nulls, lists and mappings."""
    if depth > 6:
        raise RecordError(f"{key}: nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            _plain_json(v, f"{key}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain_json(v, f"{key}[{i}]", depth + 1)
    elif _number(value):
        check_value(value, Field("float", -BIG, BIG), key)
    elif not (value is None or isinstance(value, (str, bool))):
        raise RecordError(f"{key}: not a JSON value ({short(value)})")


# Far above any record the runner writes (a ResNet-50's metrics.json is tens of kB): a record that is
# a link to a device, a pipe or a huge file is refused, never read without end.
RECORD_LIMIT = 64 << 20


def _read_text(path: Path) -> str:
    try:
        return read_text_bounded(path, RECORD_LIMIT)
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except FileRefused as exc:
        raise RecordError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: unreadable ({type(exc).__name__})") from None


def _read_json(path: Path) -> Any:
    text = _read_text(path)  # its RecordError names the path already
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecordError as exc:  # NaN or Infinity: strict JSON has neither
        raise RecordError(f"{path}: {exc}") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise RecordError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise RecordError(f"{path}: nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise RecordError(f"{name}: not strict JSON")


def _named(path: Path, check: Any, *args: Any) -> Any:
    """Run ``check``; its RecordError (or ConfigError) is prefixed with ``path``."""
    try:
        return check(*args)
    except (RecordError, ConfigError) as exc:
        message = str(exc)
        raise RecordError(message if message.startswith(str(path)) else f"{path}: {message}") from None


# ------------------------------------------------------------------ metrics.json

_ACC = Field("float", 0.0, 1.0)
_ACC_OR_NULL = Field("float", 0.0, 1.0, null=True)
_LOSS = Field("float", 0.0)
_LOSS_OR_NULL = Field("float", 0.0, null=True)
_COUNT = Field("int", 0)
_FRACTION = Field("float", 0.0, 1.0, required=False)

METRICS_FIELDS: dict[str, Field] = {
    "name": Field("str"),
    "method": Field("str"),
    "model": Field("str"),
    "seed": Field("int", 0, 2**63 - 1),
    "profile": Field("str"),
    "dataset": Field("str"),
    "num_classes": Field("int", 1, required=False),
    "input_shape": Field("list", required=False),
    "data_label": Field("str"),
    "data_files": Field("dict", required=False),
    "data_md5": Field("dict", required=False),
    "train_size": Field("int", 1, required=False),
    "validation_size": Field("int", 0, required=False),
    "test_size": Field("int", 0, required=False),
    "data_fingerprint": Field("fingerprint"),
    "synthetic": Field("bool", required=False),
    "image_pipeline": Field("str", required=False),
    "test_acc": _ACC_OR_NULL,
    "test_loss": _LOSS_OR_NULL,
    "val_acc": Field("float", 0.0, 1.0, null=True, required=False),  # absent before validation splits
    "val_loss": Field("float", 0.0, null=True, required=False),
    "train_loss": _LOSS,
    "train_acc": _ACC,
    "epochs": Field("int", 1, 1e6),
    "steps": _COUNT,
    "steps_per_epoch": Field("int", 1, required=False),
    "sparsity": _ACC,
    "sparsity_all": _ACC,
    "prunable_weights_dense": Field("int", 0, required=False),
    "prunable_weights_nonzero": Field("int", 0, required=False),
    "params_dense": Field("int", 1),
    "params_total": Field("int", 0),
    "params_nonzero": Field("int", 0),
    "flops_dense": Field("int", 1),
    "flops_effective": Field("int", 0),
    "wall_time_s": Field("float", 0.0, 1e9),
    "device": Field("str"),
    "threads": Field("int", 1, 1e5, null=True, required=False),
    "git_revision": Field("str"),
    "layers": Field("list"),
    # what a method adds, range-checked where it is a fraction or a count
    "kernel_sparsity": _FRACTION,
    "channel_sparsity": _FRACTION,
    "channel_ratio_achieved": _FRACTION,
    "mask_sparsity": _FRACTION,
    "target_sparsity": _FRACTION,
    "params_physical": Field("int", 0, required=False),
    "flops_physical": Field("int", 0, required=False),
    # code identity (runs recorded before it existed have none: "unrecorded")
    "code_sha256": Field("hex", required=False),
    "code_sha256_earlier": Field("list", required=False),
    "first_epoch": Field("dict", required=False),
}

LAYER_FIELDS = {
    "layer": Field("str"),
    "type": Field("str", required=False),
    "weights": Field("int", 0),
    "nonzero": Field("int", 0),
    "density": Field("float", 0.0, 1.0),
}

FIRST_EPOCH_FIELDS = {
    "steps": Field("int", 1),
    "step_losses": Field("list"),
    "params_sha256": Field("hex"),
    "train_loss": _LOSS,
    "train_acc": _ACC,
    "val_loss": _LOSS_OR_NULL,
    "val_acc": _ACC_OR_NULL,
    "test_loss": _LOSS_OR_NULL,
    "test_acc": _ACC_OR_NULL,
}


def check_metrics(data: Any) -> dict[str, Any]:
    """A metrics.json's content, checked (RecordError names the key)."""
    check_mapping(data, METRICS_FIELDS, extra=True)
    if data["params_nonzero"] > data["params_total"]:
        raise RecordError(f"params_nonzero: {data['params_nonzero']} above params_total {data['params_total']}")
    for i, layer in enumerate(data["layers"]):
        check_mapping(layer, LAYER_FIELDS, f"layers[{i}].", extra=True)
    for i, digest in enumerate(data.get("code_sha256_earlier", [])):
        if digest != "unrecorded":
            check_value(digest, Field("hex"), f"code_sha256_earlier[{i}]")
    if "first_epoch" in data:
        first = check_mapping(data["first_epoch"], FIRST_EPOCH_FIELDS, "first_epoch.")
        for i, loss in enumerate(first["step_losses"]):
            check_value(loss, _LOSS, f"first_epoch.step_losses[{i}]")
    return data


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A run's metrics.json, checked; RecordError names the path and key."""
    path = Path(path)
    return _named(path, check_metrics, _read_json(path))


# ------------------------------------------------------------------ history.csv

_HISTORY_CELLS: dict[str, Field] = {
    "epoch": Field("int", 1, 1e6),
    "stage": Field("str"),
    "stage_epoch": Field("int", 1, 1e6),
    "lr": Field("float", 0.0, 1e6),
    "train_loss": _LOSS,
    "train_acc": _ACC,
    "val_loss": _LOSS_OR_NULL,
    "val_acc": _ACC_OR_NULL,
    "test_loss": _LOSS_OR_NULL,
    "test_acc": _ACC_OR_NULL,
    "sparsity": _ACC,
    "seconds": Field("float", 0.0, 1e9),
}


def _cell(text: str, field: Field, key: str) -> Any:
    if text == "":
        return check_value(None, field, key)
    if field.kind == "str":
        return text
    try:
        value: Any = int(text) if field.kind == "int" else float(text)
    except ValueError:
        raise RecordError(f"{key}: not a number ({short(text)})") from None
    return check_value(value, field, key)


# history.csv written before validation splits existed has no val_* columns: read as blank.
_OLD_HISTORY_FIELDS = [f for f in HISTORY_FIELDS if f not in ("val_loss", "val_acc")]


def check_history(text: str) -> list[dict[str, Any]]:
    """history.csv's rows, one dict per epoch (a blank cell is None: not measured)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0] not in (HISTORY_FIELDS, _OLD_HISTORY_FIELDS):
        raise RecordError(f"header is not {','.join(HISTORY_FIELDS)}")
    header = rows[0]
    if len(rows) < 2:
        raise RecordError("no epoch")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise RecordError(f"line {line}: {len(row)} cells, expected {len(header)}")
        cells = dict(zip(header, row))
        parsed = {k: _cell(cells.get(k, ""), _HISTORY_CELLS[k], f"line {line}, {k}") for k in HISTORY_FIELDS}
        if parsed["epoch"] != line - 1:
            raise RecordError(f"line {line}, epoch: {parsed['epoch']}, expected {line - 1}")
        for a, b in (("val_loss", "val_acc"), ("test_loss", "test_acc")):
            if (parsed[a] is None) != (parsed[b] is None):
                raise RecordError(f"line {line}: {a} and {b} must both be present or both blank")
        out.append(parsed)
    return out


def read_history(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    return _named(path, check_history, _read_text(path))


# ------------------------------------------------------------------ config.yaml


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config.yaml written by version 0.2.0, in today's keys (the committed 0.2.0 subset runs
    keep loading): lottery's ``rewind_step: N`` is ``rewind: Nit``; the control ``random`` is
    ``random_finetune``; slimming's ``input_shape`` comes from the run context."""
    method = dict(config.get("method") or {})
    if "rewind_step" in method:
        method["rewind"] = f"{method.pop('rewind_step')}it"
    if method.get("name") == "random":
        method["name"] = "random_finetune"
    method.pop("input_shape", None)
    return {**config, "method": method} if config.get("method") else config


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads the same, faster


def check_config(text: str) -> dict[str, Any]:
    """A run's resolved config (config.yaml), upgraded to today's keys and validated like any config."""
    from training.config import run_config_from_mapping  # config imports what records import

    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise RecordError(f"not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise RecordError("nested too deeply") from None
    if not isinstance(data, dict):
        raise RecordError(f"expected a mapping, got {short(data)}")
    data = upgrade_config(data)
    check_value(data.get("seed"), Field("int", 0, 2**63 - 1), "seed")
    _plain_json({k: v for k, v in data.items() if k != "seed"}, "config")  # no NaN, no huge number
    try:
        run_config_from_mapping(data)
    except (ConfigError, RecursionError) as exc:
        raise RecordError(str(exc) or type(exc).__name__) from None
    return data


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return _named(path, check_config, _read_text(path))


# ------------------------------------------------------------------ env.json

ENV_FIELDS: dict[str, Field] = {
    "git_revision": Field("str"),
    "python": Field("str"),
    "torch": Field("str"),
    "numpy": Field("str"),
    "platform": Field("str"),
    "hostname": Field("str"),
    "cpu_count": Field("int", 1, 1e6, null=True),
    "torch_threads": Field("int", 1, 1e5),
    "device": Field("str"),
    "device_name": Field("str"),
    "cuda": Field("str", null=True, required=False),
    "cudnn": Field("int", 0, null=True, required=False),
    "bf16": Field("bool"),
    "channels_last": Field("bool"),
    "compile": Field("bool"),
    "processes": Field("int", 1, 1e6),
    "code_sha256": Field("hex", required=False),
    "code_files": Field("dict", required=False),
    "synthetic_data": Field("bool", required=False),  # generated stand-in data (a rehearsal)
    "cpu": Field("dict", required=False),  # the CPU type and its instruction-set flags
}


def check_env(data: Any) -> dict[str, Any]:
    check_mapping(data, ENV_FIELDS)
    for name, digest in data.get("code_files", {}).items():
        check_value(digest, Field("hex"), f"code_files.{name}")
    return data


def read_env(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return _named(path, check_env, _read_json(path))


# ------------------------------------------------------------------ invocations.json

INVOCATION_FIELDS: dict[str, Field] = {
    "command": Field("str"),
    "profile": Field("str"),
    "jobs": Field("int", 1, 1e6),
    "threads_per_job": Field("int", 1, 1e6, null=True),
    "seconds": Field("int", 0, 1e9),
    "exit_status": Field("int", 0, 255),
    "git_revision": Field("str"),
    "date": Field("str"),
    "cpu": Field("str"),
    "cpu_count": Field("int", 1, 1e6),
    "gpus": Field("list"),
    "load_average": Field("list"),
    "torch": Field("str"),
}


def check_invocation(entry: Any) -> dict[str, Any]:
    check_mapping(entry, INVOCATION_FIELDS)
    for i, gpu in enumerate(entry["gpus"]):
        check_value(gpu, Field("str"), f"gpus[{i}]")
    for i, load in enumerate(entry["load_average"]):
        check_value(load, Field("float", 0.0, 1e6), f"load_average[{i}]")
    return entry


def read_invocations(path: str | Path) -> list[dict[str, Any]]:
    """The valid entries of an invocations.json (each bad entry named and left out with a warning);
    RecordError when the file itself cannot be read as a list."""
    path = Path(path)
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise RecordError(f"{path}: expected a list of invocations, got {short(entries)}")
    valid = []
    for i, entry in enumerate(entries):
        try:
            valid.append(_named(Path(f"{path}[{i}]"), check_invocation, entry))
        except RecordError as exc:
            skip(exc)
    return valid
