"""Latency measurement: structure and sanity of the report on CPU (no timing thresholds)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.latency import compare_latency, pruned_vs_dense


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def test_compare_latency_reports_positive_figures_on_cpu() -> None:
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = compare_latency({"m": model}, (3, 8, 8), batch_size=4, device="cpu", warmup=1, repeats=5)["m"]
    assert set(result) == {
        "latency_median_ms",
        "latency_iqr_ms",
        "images_per_s",
        "peak_memory",
        "batch_size",
        "warmup",
        "repeats",
        "device",
    }
    assert result["latency_median_ms"] > 0
    assert result["latency_iqr_ms"] >= 0
    assert result["images_per_s"] == pytest.approx(4 / (result["latency_median_ms"] / 1e3))
    assert result["peak_memory"] is None
    assert (result["batch_size"], result["warmup"], result["repeats"], result["device"]) == (4, 1, 5, "cpu")
    # the caller's model is left as it was: training flag and BN running statistics (eval mode was used)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_compare_latency_single_repeat_and_bad_arguments() -> None:
    result = compare_latency(
        {"m": tiny_model()}, (3, 8, 8), batch_size=1, device=torch.device("cpu"), warmup=0, repeats=1
    )["m"]
    assert result["latency_iqr_ms"] == 0 and result["latency_median_ms"] > 0
    with pytest.raises(ValueError):
        compare_latency({"m": tiny_model()}, (3, 8, 8), batch_size=1, device="cpu", repeats=0)


def test_compare_latency_times_every_model_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    class Tagged(nn.Module):
        def __init__(self, tag: str, width: int) -> None:
            super().__init__()
            self.tag, self.net = tag, nn.Conv2d(3, width, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            order.append(self.tag)
            return self.net(x)

    result = compare_latency(
        {"a": Tagged("a", 2), "b": Tagged("b", 64)}, (3, 8, 8), batch_size=2, device="cpu", warmup=2, repeats=3
    )
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up per model, then one timed pass of each per round
    assert set(result) == {"a", "b"}
    assert all(r["repeats"] == 3 and r["latency_median_ms"] > 0 for r in result.values())


def test_pruned_vs_dense_reports_each_batch_size_and_the_speedup() -> None:
    small = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())
    big = nn.Sequential(nn.Conv2d(3, 32, 3), nn.Flatten())
    result = pruned_vs_dense(small, big, (3, 8, 8), [1, 4], warmup=0, repeats=2)
    expected = {f"{d}_batch{b}" for d in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) for b in (1, 4)}
    assert set(result) == expected | {"load_average"}
    assert result["load_average"] is None or result["load_average"] >= 0
    timing = result["cpu_batch4"]
    assert timing["pruned"]["batch_size"] == timing["dense"]["batch_size"] == 4
    assert timing["speedup"] == pytest.approx(
        timing["dense"]["latency_median_ms"] / timing["pruned"]["latency_median_ms"]
    )
