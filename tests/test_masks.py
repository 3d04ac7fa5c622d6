"""Mask machinery: global magnitude threshold, exact counts under ties, random masks, masks held by SGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruning.accounting import prunable_weights
from pruning.masks import ParamMasks, densities, global_magnitude_masks, random_masks


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def test_global_threshold_hand_computed() -> None:
    weights = {"a": torch.tensor([[0.5, -0.1], [2.0, 0.3]]), "b": torch.tensor([-0.2, 1.0, 0.05, -3.0])}
    masks = global_magnitude_masks(weights, 0.5)  # 4 of 8 go: 0.05, 0.1, 0.2, 0.3
    assert masks["a"].tolist() == [[True, False], [True, False]]
    assert masks["b"].tolist() == [False, True, False, True]


def test_threshold_is_global_not_per_layer() -> None:
    weights = {"small": torch.full((10,), 0.01) + torch.arange(10) * 1e-4, "large": torch.arange(1.0, 11.0)}
    masks = global_magnitude_masks(weights, 0.5)
    assert not masks["small"].any()  # a per-layer threshold would keep half of each
    assert masks["large"].all()


def test_exact_count_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    # Integer-valued weights: many ties across and within layers.
    weights = {f"w{i}": torch.randint(-3, 4, (n,), generator=gen).float() for i, n in enumerate([7, 50, 13, 101])}
    total = sum(w.numel() for w in weights.values())
    for sparsity in (0.1, 0.37, 0.5, 0.9, 0.99):
        masks = global_magnitude_masks(weights, sparsity)
        pruned = sum(int((~m).sum()) for m in masks.values())
        assert pruned == round(sparsity * total)
        kept_min = min(w[m].abs().min() for w, m in zip(weights.values(), masks.values()) if m.any())
        pruned_max = max(w[~m].abs().max() for w, m in zip(weights.values(), masks.values()) if (~m).any())
        assert pruned_max <= kept_min


def test_previously_pruned_go_first_and_masks_nest() -> None:
    weights = {"a": torch.tensor([5.0, 4.0, 3.0, 2.0]), "b": torch.tensor([1.0, 0.5])}
    keep = {"a": torch.tensor([False, True, True, True]), "b": torch.tensor([True, True])}
    masks = global_magnitude_masks(weights, 0.5, keep)  # 3 go: the already pruned 5.0, then 0.5 and 1.0
    assert masks["a"].tolist() == [False, True, True, True]
    assert masks["b"].tolist() == [False, False]
    lower = global_magnitude_masks(weights, 0.0, keep)  # never revives a pruned weight
    assert lower["a"].tolist() == keep["a"].tolist()


def test_prunable_weights_scope_and_exclude() -> None:
    net = tiny_net()
    assert list(prunable_weights(net)) == ["0.weight", "3.weight", "6.weight"]
    assert list(prunable_weights(net, "conv")) == ["0.weight", "3.weight"]
    assert list(prunable_weights(net, "conv_linear", exclude=["0"])) == ["3.weight", "6.weight"]
    with pytest.raises(ValueError, match="no module"):
        prunable_weights(net, exclude=["nope"])


def test_random_masks_exact_counts_seeded_and_nested() -> None:
    shapes = {"a": torch.Size([10, 10]), "b": torch.Size([7])}
    dens = {"a": 0.23, "b": 3 / 7}
    m1 = random_masks(shapes, dens, generator=torch.Generator().manual_seed(1))
    m2 = random_masks(shapes, dens, generator=torch.Generator().manual_seed(1))
    m3 = random_masks(shapes, dens, generator=torch.Generator().manual_seed(2))
    assert int(m1["a"].sum()) == 23 and int(m1["b"].sum()) == 3
    assert all(torch.equal(m1[k], m2[k]) for k in shapes)
    assert not torch.equal(m1["a"], m3["a"])
    keep = {"a": torch.arange(100).view(10, 10) < 40, "b": torch.ones(7, dtype=torch.bool)}
    nested = random_masks(shapes, dens, keep, torch.Generator().manual_seed(3))
    assert int(nested["a"].sum()) == 23 and not (nested["a"] & ~keep["a"]).any()
    with pytest.raises(ValueError, match="exceeds"):
        random_masks(shapes, {"a": 0.5, "b": 1.0}, keep)


def test_densities_are_exact_fractions() -> None:
    assert densities({"a": torch.tensor([True, False, False, True]), "b": torch.zeros(3, dtype=torch.bool)}) == {
        "a": 0.5,
        "b": 0.0,
    }


def sgd_steps(net: nn.Module, masker: ParamMasks | None, hold: bool, steps: int = 5) -> torch.optim.SGD:
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(8, 3, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if hold:
            masker.apply()
    return opt


def test_masks_hold_weights_and_momentum_through_sgd_with_weight_decay() -> None:
    net = tiny_net()
    masker = ParamMasks(net)
    weights = prunable_weights(net)
    masks = global_magnitude_masks(weights, 0.6)
    before = {n: w.detach().clone() for n, w in weights.items()}
    masker.set(masks)
    opt = sgd_steps(net, masker, hold=True)
    for n, w in weights.items():
        m = masks[n]
        buf = opt.state[w]["momentum_buffer"]
        assert torch.count_nonzero(w[~m]) == 0
        assert torch.count_nonzero(buf[~m]) == 0
        assert not torch.equal(w[m], before[n][m])  # the kept weights did train


def test_masking_weights_only_would_leave_momentum_alive() -> None:
    """The reference for the test above: without the gradient hook, the buffers fill up."""
    net = tiny_net()
    weights = prunable_weights(net)
    masks = global_magnitude_masks(weights, 0.6)
    with torch.no_grad():
        for n, w in weights.items():
            w.mul_(masks[n])
    opt = sgd_steps(net, None, hold=False)
    assert any(torch.count_nonzero(opt.state[w]["momentum_buffer"][~masks[n]]) > 0 for n, w in weights.items())
    assert any(torch.count_nonzero(w[~masks[n]]) > 0 for n, w in weights.items())


def test_set_rejects_bad_masks_and_state_round_trips() -> None:
    net = tiny_net()
    masker = ParamMasks(net)
    with pytest.raises(ValueError, match="unknown"):
        masker.set({"x.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="bool tensor"):
        masker.set({"0.weight": torch.ones(4, 3, 3, 3)})
    masks = global_magnitude_masks(prunable_weights(net), 0.5)
    masker.set(masks)
    other = ParamMasks(tiny_net())
    other.load_state_dict(masker.state_dict())
    assert all(torch.equal(other.masks[n], masks[n]) for n in masks)
    assert torch.count_nonzero(other.params["3.weight"][~masks["3.weight"]]) == 0


def _per_layer_apply(self: ParamMasks) -> None:
    """The straightforward formulation ``apply`` replaces: one ``mul_`` of the bool mask per layer."""
    with torch.no_grad():
        for n, m in self.masks.items():
            self.params[n].mul_(m)


@pytest.mark.parametrize("variant", ["magnitude (masked)", "rigl"])
def test_the_fused_mask_multiply_trains_bit_for_bit_as_the_per_layer_one(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments.bench.train import method_trainer, synthetic_cifar

    def train() -> tuple[dict[str, torch.Tensor], list[float]]:
        trainer = method_trainer(
            "resnet20", variant, synthetic_cifar(24), 8, torch.device("cpu"), 1, False, False, False
        )
        if variant == "rigl":  # a mask update inside these 3 steps: masks replaced mid-stage
            trainer.method.is_update = lambda step: step == 2
        trainer.run()
        return trainer.model.state_dict(), [row["train_loss"] for row in trainer.history]

    fused, fused_loss = train()
    with monkeypatch.context() as m:
        m.setattr(ParamMasks, "apply", _per_layer_apply)
        reference, reference_loss = train()
    assert fused_loss == reference_loss
    assert fused.keys() == reference.keys() and all(torch.equal(fused[k], reference[k]) for k in fused)
    assert any((v == 0).float().mean() > 0.5 for k, v in fused.items() if k.endswith("conv1.weight"))  # masked
