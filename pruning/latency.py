"""Inference latency of a model on one device: median and spread over repeated batches.

Convention: the model runs in eval mode under ``torch.no_grad()`` on a fixed random batch
(seeded generator; no data set needed). Each repeat times one forward pass with
``time.perf_counter``; on CUDA the device is synchronised before starting and before
stopping the clock, so the time covers the kernels and not only their launch. Warm-up
passes (allocator, cuDNN algorithm selection) are run first and not timed. Reported:
median and interquartile range (q75 - q25) of the per-batch time in milliseconds,
throughput ``batch_size / median`` in images per second, and on CUDA the peak memory
allocated during the timed passes (weights included), in bytes.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                    device: str | torch.device, warmup: int = 10, repeats: int = 50,
                    seed: int = 0) -> dict[str, Any]:
    """Time forward passes of a batch of ``batch_size`` inputs of ``input_shape`` (C, H, W).

    The model is copied onto ``device``, so the caller's model (its device and training
    flag) is left as it was. Returns ``latency_median_ms``, ``latency_iqr_ms`` (per batch),
    ``images_per_s``, ``peak_memory`` (bytes on CUDA, None elsewhere), and the settings
    ``batch_size``, ``warmup``, ``repeats``, ``device``.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("need batch_size >= 1, repeats >= 1 and warmup >= 0")
    device = torch.device(device)
    net = copy.deepcopy(model).to(device).eval()
    dtype = next(net.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *input_shape), generator=generator, dtype=dtype).to(device)
    times_ms = []
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        _synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            net(x)
            _synchronize(device)
            times_ms.append((time.perf_counter() - start) * 1e3)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    q25, median, q75 = torch.tensor(times_ms, dtype=torch.float64).quantile(
        torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    return {
        "latency_median_ms": median,
        "latency_iqr_ms": q75 - q25,
        "images_per_s": batch_size / (median / 1e3),
        "peak_memory": peak,
        "batch_size": batch_size,
        "warmup": warmup,
        "repeats": repeats,
        "device": str(device),
    }
