"""Validation of plain mappings (parsed YAML) into typed dataclasses.

Knows nothing of the experiment itself: ``validate(cls, data, where)`` checks every key
against the dataclass's fields and types and raises ``ConfigError`` naming the key.
Supported field types: bool, int, float, str, Literal, Optional, list, dict[str, X],
nested dataclasses, value types with a ``parse`` classmethod (e.g. a duration written "2ep"),
and *tagged* dataclasses: a field typed with a base class that has a
``registry()`` classmethod is resolved through its ``name`` key.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import reprlib
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


# An integer a config may hold (int64): larger ones overflow wherever they meet a tensor or a float.
INT_LIMIT = 2**63 - 1


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 60, 60, 4, 4, 1


def short(value: Any) -> str:
    """A value for an error message, cut short (a huge or deeply nested value is not expanded)."""
    return _SHORT.repr(value)


def key_name(key: Any) -> str:
    """A key as an error message names it: as written if it is plain text, else quoted (a key holding a
    line break or a control character must not break the message's one line)."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 60:
        return key
    return short(key if isinstance(key, str) else str(key))


_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def check_range(value: Any, bounds: dict[str, float], key: str) -> None:
    """``value`` (each element of a list; None passes) within ``bounds`` (``option(ge=..., ...)``)."""
    for item in value if isinstance(value, list) else [value]:
        if item is None or isinstance(item, str):  # a named value (e.g. epochs: minimum) has no range
            continue
        for name, bound in bounds.items():
            test, sign = _BOUNDS[name]
            if not test(item, bound):
                wanted = " and ".join(f"{_BOUNDS[n][1]} {b:g}" for n, b in bounds.items())
                raise ConfigError(f"{key}: must be {wanted}, got {short(value)}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return repr(tp).replace("typing.", "")
    return "null" if tp is type(None) else getattr(tp, "__name__", repr(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(option, value, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {short(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {short(value)}")
    if origin is Literal:
        if isinstance(value, typing.Hashable) and value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {short(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {short(value)}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {short(value)}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(item, v, f"{key}.{key_name(k)}") for k, v in value.items()}
    if hasattr(tp, "parse"):  # a value type with its own syntax (pruning.base.Duration)
        try:
            return tp.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    if dataclasses.is_dataclass(tp) or hasattr(tp, "registry"):
        return validate(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > INT_LIMIT:
                raise ConfigError(f"{key}: {short(value)} is out of range (at most {INT_LIMIT} in size)")
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):  # PyYAML reads "1e-6" (no dot) as a string; accept numeric strings
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            try:
                number = float(number)
            except OverflowError:  # an integer of hundreds of digits
                raise ConfigError(f"{key}: {short(value)} is too large for a number") from None
            if not math.isfinite(number):
                raise ConfigError(f"{key}: must be a finite number, got {short(value)}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported field type {tp!r} at {key}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {short(value)}")


def validate(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from mapping ``data``; ``where`` prefixes key names."""
    prefix = f"{where}." if where else ""
    if hasattr(cls, "registry"):
        if not isinstance(data, dict) or "name" not in data:
            raise ConfigError(f"{prefix}name: required (one of {', '.join(sorted(cls.registry()))})")
        choices = cls.registry()
        if not isinstance(data["name"], str) or data["name"] not in choices:
            raise ConfigError(
                f"{prefix}name: unknown {short(data['name'])}; choose one of {', '.join(sorted(choices))}"
            )
        cls = choices[data["name"]]
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {short(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{prefix}{key_name(key)}: unknown key (allowed: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], prefix + name)
            if "range" in f.metadata:
                check_range(values[name], f.metadata["range"], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: required key is missing")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # __post_init__ checks, whose messages start with the key
        raise ConfigError(f"{prefix or (where or 'config') + ': '}{exc}") from None


def to_dict(obj: Any) -> Any:
    """The plain-data form of a (nested) config, for writing back as YAML."""
    if hasattr(obj, "parse"):  # a value type with its own syntax: its text
        return str(obj)
    if dataclasses.is_dataclass(obj):  # an optional field at its default is left out (pruning.base.option)
        return {
            f.name: to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("optional") and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj
