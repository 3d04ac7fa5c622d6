"""What only a GPU can check (marked ``cuda``; skipped without one). ``scripts/gpu_check.sh`` runs them.

Tolerances, stated: bf16 autocast + channels_last follows fp32 within 0.05 of the loss over 5 SGD
steps; the xRDA step on CUDA equals the CPU step in float64 to 1e-10; device-resident batches equal
the CPU's to float rounding; surgery keeps outputs to 1e-4 (TF32 convolutions); a run killed on
CUDA and resumed ends within float nondeterminism of the uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import build_model
from optim.rda import RDA
from pruning.methods.rda import RDAMethod, RDAMethodConfig
from pruning.surgery import shrink, zero_channels
from tests.helpers import die_in_epoch, run_config, run_dir, tiny_net
from tests.test_run import CONFIG
from tests.test_surgery import model_and_keep
from training.data import DeviceBatches, Split
from training.export import export_model, load
from training.loop import autocast

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


def sgd_losses(fast: bool, steps: int = 5) -> list[float]:
    """Losses of ``steps`` SGD steps of ResNet-20 on fixed batches, fp32 or bf16 + channels_last."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10).to(CUDA)
    memory = torch.channels_last if fast else torch.contiguous_format
    model = model.to(memory_format=memory)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(64, 3, 32, 32, generator=gen).to(CUDA).contiguous(memory_format=memory)
        y = torch.randint(0, 10, (64,), generator=gen).to(CUDA)
        with autocast(CUDA, fast):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_bf16_channels_last_follows_fp32() -> None:
    exact, fast = sgd_losses(False), sgd_losses(True)
    assert max(abs(a - b) for a, b in zip(exact, fast)) < 0.05, (exact, fast)


def test_xrda_foreach_step_on_cuda_equals_the_cpu_step_in_float64() -> None:
    nets = {d: tiny_net().double().to(d) for d in ("cpu", "cuda")}
    cfg = RDAMethodConfig(lam=1e-3, reweight="log")
    opts = {
        d: RDA(RDAMethod(cfg).param_groups(n), lr=0.1, momentum_timescale=5.0, weight_decay=5e-4)
        for d, n in nets.items()
    }
    gen = torch.Generator().manual_seed(0)
    for step in range(10):
        for group in opts["cpu"].param_groups + opts["cuda"].param_groups:
            group["lr"] = 0.1 / (1 + step)  # a falling lr: 0 < a < 1, every line of the update runs
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in nets["cpu"].parameters()]
        for d, net in nets.items():
            for p, g in zip(net.parameters(), grads):
                p.grad = g.to(d)
            opts[d].step()
    for a, b in zip(nets["cpu"].parameters(), nets["cuda"].parameters()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-12)
    assert any((p == 0).any() for p in nets["cuda"].parameters())  # the penalty acted


def test_device_batches_on_cuda_equal_the_cpu_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (70, 3, 32, 32), generator=gen, dtype=torch.uint8), torch.arange(70) % 10)
    common = dict(batch_size=32, train=True, augment=True, mean=(0.5,) * 3, std=(0.25,) * 3, seed=3, erasing=0.5)
    cpu = DeviceBatches(split, device=torch.device("cpu"), **common)
    cuda = DeviceBatches(split, device=CUDA, channels_last=True, **common)
    for (xa, ya), (xb, yb) in zip(cpu.epoch(2), cuda.epoch(2), strict=True):
        assert xb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(xb.cpu(), xa, rtol=1e-6, atol=1e-6)
        assert torch.equal(yb.cpu(), ya)


def test_surgery_and_export_on_cuda() -> None:
    model, keep, shape = model_and_keep("resnet20")
    model = model.to(CUDA)
    keep = {k: v.to(CUDA) for k, v in keep.items()}
    zero_channels(model, keep)
    x = torch.randn(4, *shape, device=CUDA)
    small = shrink(model, keep)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(p.is_cuda for p in small.parameters())
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_export_round_trip_of_a_cuda_model(tmp_path: Path) -> None:
    model = build_model("resnet20", 10).to(CUDA)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand_like(p) < 0.2)
    report = export_model(model, tmp_path / "model.export")
    restored = load(tmp_path / "model.export")
    assert report["file_ratio"] > 1
    for name, t in model.state_dict().items():
        assert torch.equal(restored[name], t.cpu()), name


def test_a_run_killed_on_cuda_resumes_where_the_uninterrupted_run_ends(
    tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    assert run_config(straight, tiny_cifar, CONFIG, "--device", "cuda") == 0
    die_in_epoch(monkeypatch, 3)
    assert run_config(killed, tiny_cifar, CONFIG, "--device", "cuda") == 130
    monkeypatch.undo()
    assert (run_dir(killed) / "checkpoint.pt").exists() and not (run_dir(killed) / "metrics.json").exists()
    assert run_config(killed, tiny_cifar, CONFIG, "--device", "cuda") == 0
    a, b = (json.loads((run_dir(f) / "metrics.json").read_text()) for f in (straight, killed))
    env = json.loads((run_dir(killed) / "env.json").read_text())
    assert env["device"].startswith("cuda") and a["device"] == b["device"] == torch.cuda.get_device_name(CUDA)
    assert a["epochs"] == b["epochs"] == 3
    assert abs(a["train_loss"] - b["train_loss"]) <= 1e-3 * max(abs(a["train_loss"]), 1.0)
    assert abs(a["test_acc"] - b["test_acc"]) <= 2 / 30  # 30 test images: two may flip
