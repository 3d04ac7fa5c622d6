"""Argument types shared by the command lines: a bad value is a usage error (exit 2) naming the flag,
never a traceback later."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable

from training.files import FileRefused, describe_failure


def positive_int(text: str) -> int:
    """An integer >= 1 (a number of seeds, runs, processes, steps)."""
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int(text, 0)


def _int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
    if not low <= value < 2**31:
        raise argparse.ArgumentTypeError(f"expected an integer in {low}..{2**31 - 1}, got {text[:40]}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:40]}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text[:40]}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text[:40]}")
    return value


def one_line_failures(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """``main`` with a path it cannot read or write (a name too long, a file in the way, a link to a
    device) reported in one line, exit status 1, instead of a traceback."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except (OSError, FileRefused) as exc:
            print(f"error: {describe_failure(exc)}", file=sys.stderr)
            return 1

    return wrapped
