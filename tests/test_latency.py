"""Latency measurement: structure and sanity of the report on CPU (no timing thresholds)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.latency import measure_latency


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


def test_measure_latency_reports_positive_figures_on_cpu() -> None:
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = measure_latency(model, (3, 8, 8), batch_size=4, device="cpu", warmup=1, repeats=5)
    assert set(result) == {"latency_median_ms", "latency_iqr_ms", "images_per_s", "peak_memory",
                           "batch_size", "warmup", "repeats", "device"}
    assert result["latency_median_ms"] > 0
    assert result["latency_iqr_ms"] >= 0
    assert result["images_per_s"] == pytest.approx(4 / (result["latency_median_ms"] / 1e3))
    assert result["peak_memory"] is None
    assert (result["batch_size"], result["warmup"], result["repeats"], result["device"]) == (4, 1, 5, "cpu")
    # the caller's model is left as it was: training flag and BN running statistics (eval mode was used)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_measure_latency_single_repeat_and_bad_arguments() -> None:
    result = measure_latency(tiny_model(), (3, 8, 8), batch_size=1, device=torch.device("cpu"), warmup=0, repeats=1)
    assert result["latency_iqr_ms"] == 0 and result["latency_median_ms"] > 0
    with pytest.raises(ValueError):
        measure_latency(tiny_model(), (3, 8, 8), batch_size=1, device="cpu", repeats=0)
