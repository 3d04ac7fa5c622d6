"""What the benchmarks share: device synchronisation, timing steps in turns, the device's name."""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from training.records import environment


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    steps: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` calls of every step, after ``warmup`` untimed ones.

    The steps take turns (one call of each per round), so a change in the machine's load
    during the run affects all of them alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(argv: list[str], device: torch.device) -> dict[str, Any]:
    """What a committed benchmark figure needs beside it: the command that measured it, when, at which
    git revision, on which device and how loaded the machine was (a shared CPU times slower)."""
    return {
        "command": "python -m experiments.bench " + " ".join(argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **environment(device),
    }
