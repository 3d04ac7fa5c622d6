"""Network slimming: the channel threshold, minimum width, the L1 subgradient, masks, surgery equivalence."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.densenet import DenseNet
from models.resnet_cifar import CifarResNet
from models.vgg import VGG
from pruning.accounting import prunable_layers, sparsity_report
from pruning.base import Schedule
from pruning.methods.slimming import Slimming, SlimmingConfig, channel_keep
from tests.helpers import context, train

TINY_VGG = [8, "M", 8, 16, "M", 16]  # 8x8 input -> 2x2 -> 1x1 after the AvgPool2d(2)


def tiny_vgg() -> nn.Module:
    torch.manual_seed(0)
    return VGG(layout=TINY_VGG, num_classes=3)


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return CifarResNet(8, num_classes=3, widths=(4, 8, 8))


def quick(**kw: Any) -> SlimmingConfig:
    base = dict(
        l1=1e-4,
        channel_ratio=0.5,
        finetune_epochs=1,
        finetune_lr=0.05,
        finetune_schedule=Schedule(name="constant"),
        latency_batch_sizes=[1, 4],
        latency_warmup=0,
        latency_repeats=1,
    )
    return SlimmingConfig(**(base | kw))


def test_global_channel_threshold_hand_computed() -> None:
    gammas = {"a": torch.tensor([0.1, 0.9, -0.05, 0.5]), "b": torch.tensor([0.2, -0.01, 0.3])}
    keep = channel_keep(gammas, 3 / 7)  # the three smallest |gamma|: 0.01, 0.05, 0.1
    assert keep["a"].tolist() == [False, True, False, True]
    assert keep["b"].tolist() == [True, False, True]


@pytest.mark.parametrize("min_channels, expected", [(1, [False, False, True]), (2, [False, True, True])])
def test_minimum_width_no_layer_left_empty(min_channels: int, expected: list[bool]) -> None:
    gammas = {"a": torch.tensor([0.01, 0.02, 0.03]), "b": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])}
    keep = channel_keep(gammas, 0.5, min_channels)  # the global threshold alone empties "a"
    assert keep["a"].tolist() == expected
    assert keep["b"].tolist() == [False, True, True, True, True]


def test_l1_subgradient_on_prunable_bn_scales_only() -> None:
    model = tiny_resnet()
    method = Slimming(quick(l1=1e-3, l1_on="prunable"))
    method.prepare(model, context())
    with torch.no_grad():
        model.layers[0].bn1.weight.copy_(torch.tensor([0.5, -0.2, 0.0, 1.0]))
    method.penalty(model).backward()
    assert model.layers[0].bn1.weight.grad.tolist() == pytest.approx([1e-3, -1e-3, 0.0, 1e-3])
    assert model.layers[0].bn2.weight.grad is None and model.bn1.weight.grad is None
    assert method.bns == ["layers.0.bn1", "layers.1.bn1", "layers.2.bn1"]


def test_l1_on_every_bn_as_the_release() -> None:
    model = tiny_resnet()
    method = Slimming(quick(l1=1e-3))  # l1_on: all, the default (the release's updateBN)
    method.prepare(model, context())
    with torch.no_grad():
        model.bn1.weight.copy_(torch.tensor([0.5, -0.2, 0.0, 1.0]))
    method.penalty(model).backward()
    assert model.bn1.weight.grad.tolist() == pytest.approx([1e-3, -1e-3, 0.0, 1e-3])  # the stem's BN too
    assert all(m.weight.grad is not None for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert method.bns == ["layers.0.bn1", "layers.1.bn1", "layers.2.bn1"]  # what can be removed is unchanged


def tiny_densenet() -> nn.Module:
    torch.manual_seed(0)
    return DenseNet(10, 4, 3)


def test_densenet_penalises_every_bn() -> None:  # as Liu et al. do: all pre-activation BNs and the last one
    model = tiny_densenet()
    method = Slimming(quick())
    method.prepare(model, context())
    assert method.bns == [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def test_stages() -> None:
    stages = Slimming(SlimmingConfig()).stages(160)
    assert [(s.name, s.epochs, s.lr, s.penalty) for s in stages] == [
        ("train", 160, None, True),
        ("finetune", 160, 0.1, False),
    ]
    assert stages[1].schedule.milestones == [80, 120]


def randomize_bns(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.1)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)


@pytest.mark.parametrize("build", [tiny_vgg, tiny_resnet, tiny_densenet])
def test_masks_hold_and_physical_model_equals_masked(build) -> None:
    model = build()
    randomize_bns(model)
    method = Slimming(quick(channel_ratio=0.6))
    method.prepare(model, context())
    method.begin_stage(method.stages(1)[1], model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for step in range(4):
        x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        method.after_step(model, step)
    for bn, keep in method.keep.items():
        m, site = model.get_submodule(bn), method.sites[bn]
        assert torch.count_nonzero(m.weight[~keep]) == 0 and torch.count_nonzero(m.bias[~keep]) == 0
        if site.producer is not None:
            assert torch.count_nonzero(model.get_submodule(site.producer).weight[~keep]) == 0
        for consumer in site.consumers:
            assert torch.count_nonzero(model.get_submodule(consumer).weight[:, ~keep]) == 0
        assert keep.any() and not keep.all()
    masked_nonzero = sum(int(torch.count_nonzero(m.weight)) for m in prunable_layers(model).values())
    small = method.export(model)
    # The masked model's zeros are exactly the weights the physically pruned one no longer has.
    assert sparsity_report(small, model, (3, 8, 8))["prunable_weights_nonzero"] == masked_nonzero
    for bn, keep in method.keep.items():
        assert small.get_submodule(bn).num_features == int(keep.sum()) >= 1
    x = torch.randn(5, 3, 8, 8, generator=gen)
    model.eval()
    small.eval()
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("build, first_bn", [(tiny_vgg, "features.1"), (tiny_densenet, "features.0.bn")])
def test_through_the_loop_metrics_and_exact_state(build, first_bn: str) -> None:
    checkpoints: list[dict[str, Any]] = []
    cfg = quick(channel_ratio=0.5)
    model, method, trainer = train(cfg, checkpoints=checkpoints, build=build)
    assert [h["stage"] for h in trainer.history] == ["train", "finetune"]
    final = method.export(model)
    metrics = method.metrics(final)
    total = sum(k.numel() for k in method.keep.values())
    assert metrics["channel_ratio_achieved"] == pytest.approx(
        1 - sum(int(k.sum()) for k in method.keep.values()) / total
    )
    assert metrics["channel_ratio_achieved"] == pytest.approx(0.5, abs=1 / total)  # no layer hit the minimum width
    assert metrics["kept_channels"][first_bn][1] == 8
    assert metrics["params_physical"] == sum(p.numel() for p in final.parameters())
    assert metrics["params_physical"] < metrics["params_physical_dense"]
    assert metrics["flops_physical"] < metrics["flops_physical_dense"]
    timing = metrics["latency"]["cpu_batch4"]
    assert timing["pruned"]["batch_size"] == 4 and timing["speedup"] > 0
    # Resume: the masks come back from the method state alone.
    other = Slimming(cfg)
    other.prepare(build(), context())
    other.load_state_dict(checkpoints[-1]["method"])
    assert all(torch.equal(other.keep[n], method.keep[n]) for n in method.keep)
    assert other.masker.masks.keys() == method.masker.masks.keys()
    assert all(torch.equal(other.masker.masks[n], m) for n, m in method.masker.masks.items())
