"""Inference latency of models on one device: median and spread over repeated batches.

Convention: a model runs in eval mode under ``torch.no_grad()`` on a fixed random batch
(seeded generator; no data set needed). Each repeat times one forward pass with
``time.perf_counter``; on CUDA the device is synchronised before starting and before
stopping the clock, so the time covers the kernels and not only their launch. Warm-up
passes (allocator, cuDNN algorithm selection) are run first and not timed. Models compared
with each other are timed *in turns* (one pass of each per round), so that load from other
processes on the machine falls on all of them alike. Reported: median and interquartile range
(q75 - q25) of the per-batch time in milliseconds, throughput ``batch_size / median`` in
images per second, and on CUDA the peak memory of a pass (the model's parameters and buffers
plus what the pass allocated), in bytes.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import torch
from torch import nn


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_latency(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    batch_size: int,
    device: str | torch.device,
    warmup: int = 10,
    repeats: int = 50,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Time forward passes of one batch of ``batch_size`` inputs of ``input_shape`` (C, H, W) through
    each model (of one dtype), in turns.

    The models are copied onto ``device``, so the caller's models (device, training flag) are
    left as they were. Per model: ``latency_median_ms``, ``latency_iqr_ms`` (per batch),
    ``images_per_s``, ``peak_memory`` (bytes on CUDA, None elsewhere), and the settings
    ``batch_size``, ``warmup``, ``repeats``, ``device``.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("need batch_size >= 1, repeats >= 1 and warmup >= 0")
    device = torch.device(device)
    nets = {name: copy.deepcopy(model).to(device).eval() for name, model in models.items()}
    dtype = next(next(iter(nets.values())).parameters()).dtype
    x = torch.randn((batch_size, *input_shape), generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)
    times_ms: dict[str, list[float]] = {name: [] for name in nets}
    peak: dict[str, int] = dict.fromkeys(nets, 0)
    with torch.no_grad():
        for net in nets.values():
            for _ in range(warmup):
                net(x)
        for _ in range(repeats):
            for name, net in nets.items():
                _synchronize(device)
                if device.type == "cuda":
                    before = torch.cuda.memory_allocated(device)
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                net(x)
                _synchronize(device)
                times_ms[name].append((time.perf_counter() - start) * 1e3)
                if device.type == "cuda":
                    pass_peak = torch.cuda.max_memory_allocated(device) - before
                    peak[name] = max(peak[name], int(pass_peak))
    result = {}
    for name, net in nets.items():
        q25, median, q75 = (
            torch.tensor(times_ms[name], dtype=torch.float64)
            .quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
            .tolist()
        )
        resident = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
        result[name] = {
            "latency_median_ms": median,
            "latency_iqr_ms": q75 - q25,
            "images_per_s": batch_size / (median / 1e3),
            "peak_memory": resident + peak[name] if device.type == "cuda" else None,
            "batch_size": batch_size,
            "warmup": warmup,
            "repeats": repeats,
            "device": str(device),
        }
    return result


def pruned_vs_dense(
    pruned: nn.Module, dense: nn.Module, input_shape: tuple[int, ...], batch_sizes: list[int], warmup: int, repeats: int
) -> dict[str, Any]:
    """Per device (the CPU, and CUDA when available) and batch size, ``"<device>_batch<b>"``: the
    pruned and the dense architecture timed in turns, and ``speedup`` = dense / pruned median.
    ``load_average`` is the machine's 1-minute load average just before (None where the OS has
    none): CPU timings taken beside other busy processes are only rough."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result: dict[str, Any] = {"load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    for device in devices:
        for batch in batch_sizes:
            timing: dict[str, Any] = compare_latency(
                {"pruned": pruned, "dense": dense}, input_shape, batch, device, warmup=warmup, repeats=repeats
            )
            timing["speedup"] = timing["dense"]["latency_median_ms"] / timing["pruned"]["latency_median_ms"]
            result[f"{device}_batch{batch}"] = timing
    return result
