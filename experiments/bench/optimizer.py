"""``optimizer``: one optimizer step on ResNet-56's parameters with random gradients, xRDA
(as method rda groups them: conv / linear weights penalised, the rest not; at half its
initial lr, so 0 < a < 1 and every line of the update runs) against torch's foreach SGD
with momentum and weight decay. Each optimizer has its own copy of the parameters; after
a warm-up they take turns, one step each per round (``--repeats`` rounds, the device
synchronised around each step), so a change of load on a shared machine hits all alike
and each step starts with the caches that the others left, as in training. The table
shows the median and the fastest step and both ratios to SGD ("ratio" in the JSON is the
ratio of medians for the paper's setting, "rda log l1"). Timings depend on the machine
and its load: report them with the device they were measured on. On a shared CPU use
``--threads 1``: with more threads than free cores every op waits at thread barriers.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from experiments.bench.common import device_name, time_steps
from models import build_model
from optim.rda import RDA
from pruning.methods.rda import RDAMethod, RDAMethodConfig

# The paper's ResNet-56 settings (lr 0.25, tau 12.37, lam 1.3e-6, M 500, wd 5e-4).
RDA_OPTIONS = dict(lr=0.25, momentum_timescale=12.37, weight_decay=5e-4)
RDA_VARIANTS: dict[str, RDAMethodConfig] = {
    "rda log l1": RDAMethodConfig(lam=1.3e-6, reweight="log"),
    "rda plain l1": RDAMethodConfig(lam=1.3e-6, reweight="none"),
    "rda log kernel": RDAMethodConfig(lam=1.3e-6, reweight="log", group="kernel"),
    "rda log channel group-prox": RDAMethodConfig(lam=1.3e-6, reweight="log", group="channel", prox="group"),
}
SGD = "sgd momentum (foreach)"
REFERENCE = "rda log l1"  # the paper's default, compared with SGD


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_with_grads(model: str, device: torch.device, seed: int) -> torch.nn.Module:
    """The model (same weights for every seed) with fixed random gradients: a step's cost does not depend on them."""
    torch.manual_seed(seed)
    net = build_model(model, 10).to(device)
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return net


def bench_optimizer(
    device: torch.device, repeats: int = 50, warmup: int = 5, model: str = "resnet56", seed: int = 0
) -> dict[str, Any]:
    """Per-step times (ms) of SGD and the xRDA variants, each on its own copy of ``model``'s parameters."""
    sgd_net = _model_with_grads(model, device, seed)
    optimizers = {SGD: torch.optim.SGD(sgd_net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True)}
    for name, cfg in RDA_VARIANTS.items():
        net = _model_with_grads(model, device, seed)
        optimizers[name] = opt = RDA(RDAMethod(cfg).param_groups(net), **RDA_OPTIONS)
        for group in opt.param_groups:  # mid-schedule: 0 < a < 1, the general update
            group["lr"] = RDA_OPTIONS["lr"] / 2
    times = time_steps({name: opt.step for name, opt in optimizers.items()}, device, repeats, warmup)
    rows = {name: {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t)} for name, t in times.items()}
    for row in rows.values():
        row["ratio_to_sgd"] = row["median_ms"] / rows[SGD]["median_ms"]
        row["ratio_min_to_sgd"] = row["min_ms"] / rows[SGD]["min_ms"]
    params = list(sgd_net.parameters())
    return {
        "benchmark": "optimizer",
        "model": model,
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "warmup": warmup,
        "tensors": len(params),
        "parameters": sum(p.numel() for p in params),
        "results": rows,
        "reference": REFERENCE,
        "ratio": rows[REFERENCE]["ratio_to_sgd"],
        "ratio_min": rows[REFERENCE]["ratio_min_to_sgd"],
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['benchmark']}: {result['model']}, {result['tensors']} tensors, "
        f"{result['parameters']:,} parameters, {result['device']}, median of {result['repeats']} steps",
        f"{'optimizer':<28} {'median ms':>10} {'min ms':>9} {'x sgd (median)':>15} {'x sgd (min)':>12}",
    ]
    for name, row in result["results"].items():
        lines.append(
            f"{name:<28} {row['median_ms']:>10.3f} {row['min_ms']:>9.3f} {row['ratio_to_sgd']:>15.2f} "
            f"{row['ratio_min_to_sgd']:>12.2f}"
        )
    return "\n".join(lines)
