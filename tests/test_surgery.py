"""Channel surgery: exact outputs after removal, sizes, names, and the refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from models import build_model
from models.densenet import DenseNet
from models.resnet import BasicBlock, Bottleneck, ResNet
from models.topology import ChannelSite
from models.vgg import VGG
from pruning.surgery import SelectBatchNorm2d, physical_report, prunable_bns, removable_sites, shrink, zero_channels
from tests.helpers import randomize_bns

TINY_VGG = [8, 8, "M", 16, "M", 16, "M", 16]  # 16x16 input -> 2x2 after three pools -> 1x1 after AvgPool2d(2)

CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "vgg": (lambda: VGG(layout=TINY_VGG, num_classes=10), (3, 16, 16)),
    "resnet20": (lambda: build_model("resnet20", 10), (3, 16, 16)),
    "resnet18_like": (lambda: ResNet(BasicBlock, (1, 1, 1, 1), 10, cifar_stem=True), (3, 16, 16)),
    "resnet50_like": (lambda: ResNet(Bottleneck, (1, 1, 1, 1), 10, cifar_stem=False), (3, 32, 32)),
    "densenet": (lambda: DenseNet(depth=10, growth=4, num_classes=10), (3, 16, 16)),
}
SLICED_ONE_TO_ONE = [c for c in CASES if c != "densenet"]  # VGG and ResNets: names and state_dict keys kept


def random_keep(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """About half of every prunable BN's channels, at least one, never all (so each layer shrinks)."""
    keep = {}
    for name in prunable_bns(model):
        n = model.get_submodule(name).num_features
        mask = torch.rand(n, generator=generator) < 0.5
        kept, removed = torch.randperm(n, generator=generator)[:2].tolist()
        mask[kept], mask[removed] = True, False
        keep[name] = mask
    return keep


def model_and_keep(case: str, seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor], tuple[int, int, int]]:
    build, shape = CASES[case]
    torch.manual_seed(seed)
    model = build()
    generator = torch.Generator().manual_seed(seed)
    randomize_bns(model, generator)
    return model.eval(), random_keep(model, generator), shape


def test_prunable_bns_lists_only_internal_block_bns() -> None:
    assert prunable_bns(CASES["vgg"][0]()) == ["features.1", "features.4", "features.8", "features.12", "features.16"]
    assert prunable_bns(build_model("resnet20", 10)) == [f"layers.{i}.bn1" for i in range(9)]
    assert prunable_bns(CASES["resnet18_like"][0]()) == [f"layers.{i}.bn1" for i in range(4)]
    assert prunable_bns(CASES["resnet50_like"][0]()) == [f"layers.{i}.bn{j}" for i in range(4) for j in (1, 2)]
    # DenseNet-10: two layers per block, transitions after the first two blocks, then the final BN.
    assert prunable_bns(CASES["densenet"][0]()) == [f"features.{i}.bn" for i in range(8)] + ["bn"]
    sites = removable_sites(CASES["densenet"][0]())
    assert sites["features.2.bn"] == ChannelSite("features.2.bn", None, ("features.2.conv",), gated=False)
    assert sites["bn"] == ChannelSite("bn", None, ("fc",), gated=False)
    assert removable_sites(build_model("resnet20", 10))["layers.3.bn1"] == ChannelSite(
        "layers.3.bn1", "layers.3.conv1", ("layers.3.conv2",)
    )


@pytest.mark.parametrize("case", list(CASES))
def test_shrink_preserves_outputs_of_a_masked_model(case: str) -> None:
    model, keep, shape = model_and_keep(case)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unmasked = model(x)
    zero_channels(model, keep)
    small = shrink(model, keep)
    with torch.no_grad():
        expected, got = model(x), small.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, unmasked, atol=1e-3)  # the removed channels did matter before masking
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def expected_slicing(case: str, keep: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Layer -> (output mask, input mask), written out by hand for each architecture."""
    layers: dict[str, list] = {}
    names = list(keep)
    for i, name in enumerate(names):
        prefix, _, attr = name.rpartition(".")
        if case == "vgg":  # features.(k-1) conv -> features.k BN; consumer is the next conv or the classifier
            producer = f"{prefix}.{int(attr) - 1}"
            consumer = f"{prefix}.{int(names[i + 1].rpartition('.')[2]) - 1}" if i + 1 < len(names) else "classifier"
        else:  # bnJ sits between convJ and conv(J+1) inside a block
            producer, consumer = f"{prefix}.conv{attr[-1]}", f"{prefix}.conv{int(attr[-1]) + 1}"
        layers.setdefault(producer, [None, None])[0] = keep[name]
        layers.setdefault(consumer, [None, None])[1] = keep[name]
    return {k: tuple(v) for k, v in layers.items()}


@pytest.mark.parametrize("case", SLICED_ONE_TO_ONE)
def test_shrink_slices_every_linked_tensor_and_keeps_names(case: str) -> None:
    model, keep, _ = model_and_keep(case, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = shrink(model, keep)
    assert [n for n, _ in small.named_modules()] == [n for n, _ in model.named_modules()]
    assert list(small.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():  # the input model is untouched
        assert torch.equal(v, before[k])
    for name, mask in keep.items():
        bn, old_bn = small.get_submodule(name), model.get_submodule(name)
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == int(mask.sum())
        for attr in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(bn, attr), getattr(old_bn, attr)[mask])
    sliced = expected_slicing(case, keep)
    for layer, (out_mask, in_mask) in sliced.items():
        new, old = small.get_submodule(layer), model.get_submodule(layer)
        weight = old.weight if out_mask is None else old.weight[out_mask]
        weight = weight if in_mask is None else weight[:, in_mask]
        assert torch.equal(new.weight, weight)
        if isinstance(new, nn.Conv2d):
            assert (new.out_channels, new.in_channels) == weight.shape[:2]
        else:
            assert (new.out_features, new.in_features) == weight.shape
            assert torch.equal(new.bias, old.bias)
    for layer, m in small.named_modules():  # everything else is as it was
        if isinstance(m, (nn.Conv2d, nn.Linear)) and layer not in sliced:
            assert torch.equal(m.weight, model.get_submodule(layer).weight)


def test_vgg_hand_computed_size() -> None:
    model = VGG(layout=TINY_VGG, num_classes=10)
    widths = [8, 8, 16, 16, 16]
    kept = [3, 5, 7, 2, 4]
    keep = {}
    for name, width, k in zip(prunable_bns(model), widths, kept):
        mask = torch.zeros(width, dtype=torch.bool)
        mask[torch.randperm(width, generator=torch.Generator().manual_seed(k))[:k]] = True
        keep[name] = mask
    small = shrink(model, keep)
    report = physical_report(small, (3, 16, 16))
    # convs 3*3*9 + 3*5*9 + 5*7*9 + 7*2*9 + 2*4*9 = 729, BNs 2*(3+5+7+2+4) = 42, linear 4*10 + 10 = 50
    assert report["params_physical"] == 821
    # 2 x (81*16*16 + 135*16*16 + 315*8*8 + 126*4*4 + 72*2*2 + 40*1) multiply-adds
    assert report["flops_physical"] == 155600
    dense = physical_report(model, (3, 16, 16))
    assert dense["params_physical"] == 216 + 576 + 1152 + 2304 + 2304 + 2 * 64 + 170
    assert [small.features[i].out_channels for i in (0, 3, 7, 11, 15)] == kept


def test_resnet20_hand_computed_size() -> None:
    model = build_model("resnet20", 10)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[0, 5, 9, 15]] = True
    small = shrink(model, {"layers.0.bn1": mask})
    dense = physical_report(model, (3, 8, 8))["params_physical"]
    # stem 432 + 32; stage 1: 3 x (2*2304 + 64); stage 2: 4608 + 9216 + 128 + 2 x (2*9216 + 128);
    # stage 3: 18432 + 36864 + 256 + 2 x (2*36864 + 256); fc 64*10 + 10
    assert dense == 464 + 14016 + 51072 + 203520 + 650 == 269722
    # 12 removed channels: conv1 outputs (12*16*9), BN weight+bias (2*12), conv2 inputs (16*12*9)
    assert physical_report(small, (3, 8, 8))["params_physical"] == dense - 1728 - 24 - 1728
    assert small.layers[0].conv1.weight.shape == (4, 16, 3, 3)
    assert small.layers[0].conv2.weight.shape == (16, 4, 3, 3)
    assert small.layers[1].conv1.weight.shape == (16, 16, 3, 3)


def test_densenet_bns_select_their_channels_and_the_concatenation_keeps_its_width() -> None:
    model, keep, shape = model_and_keep("densenet", seed=3)
    small = shrink(model, keep)
    assert [n for n, _ in small.named_modules()] == [n for n, _ in model.named_modules()]
    for name, mask in keep.items():
        bn, old_bn = small.get_submodule(name), model.get_submodule(name)
        assert isinstance(bn, SelectBatchNorm2d) and bn.num_features == int(mask.sum())
        assert torch.equal(bn.index, mask.nonzero().flatten())
        for attr in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(bn, attr), getattr(old_bn, attr)[mask])
        consumer = "fc" if name == "bn" else name.replace(".bn", ".conv")
        assert torch.equal(small.get_submodule(consumer).weight, model.get_submodule(consumer).weight[:, mask])
    assert torch.equal(small.conv1.weight, model.conv1.weight)  # every producer keeps its outputs
    for i in (0, 1, 3, 4, 6, 7):
        assert small.features[i].conv.out_channels == 4
    # Shrinking again selects from the original input channels.
    again = {name: torch.arange(int(m.sum())) % 2 == 0 for name, m in keep.items()}
    twice = shrink(small, again)
    for name, mask in keep.items():
        assert torch.equal(twice.get_submodule(name).index, mask.nonzero().flatten()[again[name]])
    zero_channels(model, keep)
    zero_channels(small, again)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(shrink(model, keep).eval()(x), model(x), atol=1e-5)
        assert torch.allclose(twice.eval()(x), small.eval()(x), atol=1e-5)


def test_densenet_hand_computed_size() -> None:
    model = DenseNet(depth=10, growth=4, num_classes=10)  # widths 8 -> 12 -> 16 (transition) -> 20 -> 24 ...
    keep = {name: torch.ones(model.get_submodule(name).num_features, dtype=torch.bool) for name in prunable_bns(model)}
    keep["features.1.bn"][[0, 5, 11]] = False  # a 3x3 conv reading 12 channels: 3 x 4 x 9 weights go
    keep["bn"][:10] = False  # the final BN of 32 channels, read by fc (10 x 32): 10 x 10 weights go
    small = shrink(model, keep)
    dense = physical_report(model, (3, 16, 16))["params_physical"]
    assert physical_report(small, (3, 16, 16))["params_physical"] == dense - (3 * 4 * 9 + 2 * 3) - (10 * 10 + 2 * 10)
    flops = (
        physical_report(model, (3, 16, 16))["flops_physical"] - physical_report(small, (3, 16, 16))["flops_physical"]
    )
    assert flops == 2 * (3 * 4 * 9 * 16 * 16 + 10 * 10)  # the first block runs at 16x16


def test_zero_channels_zeroes_only_removed_affine_entries() -> None:
    model, keep, _ = model_and_keep("resnet20")
    before = {name: (model.get_submodule(name).weight.clone(), model.get_submodule(name).bias.clone()) for name in keep}
    zero_channels(model, keep)
    for name, mask in keep.items():
        bn = model.get_submodule(name)
        assert torch.all(bn.weight[~mask] == 0) and torch.all(bn.bias[~mask] == 0)
        assert torch.equal(bn.weight[mask], before[name][0][mask])
        assert torch.equal(bn.bias[mask], before[name][1][mask])


def test_shrink_keeps_training_flag_and_handles_a_wrapped_model() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = VGG(layout=TINY_VGG, num_classes=10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    torch.manual_seed(0)
    model = Wrapper()
    generator = torch.Generator().manual_seed(0)
    randomize_bns(model, generator)
    assert prunable_bns(model)[0] == "net.features.1"
    keep = random_keep(model, generator)
    zero_channels(model, keep)
    small = shrink(model.train(), keep)
    assert small.training and small.net.features[0].training
    x = torch.randn(2, 3, 16, 16, generator=generator)
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), model.eval()(x), atol=1e-5)
    assert small.net.classifier.in_features == int(keep["net.features.16"].sum())


def test_shrink_refuses_bad_masks_and_unsupported_models() -> None:
    model = build_model("resnet20", 10)
    ok = torch.ones(16, dtype=torch.bool)
    with pytest.raises(ValueError, match="zero channels"):
        shrink(model, {"layers.0.bn1": torch.zeros(16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        shrink(model, {"layers.0.bn1": torch.ones(15, dtype=torch.bool)})
    with pytest.raises(ValueError, match="boolean"):
        shrink(model, {"layers.0.bn1": torch.ones(16)})
    for name in ("nonexistent", "bn1", "layers.0.bn2"):  # unknown, stem, residual-stream BN
        with pytest.raises(ValueError, match="not a prunable"):
            shrink(model, {name: ok})
    with pytest.raises(ValueError, match="zero channels"):
        zero_channels(model, {"layers.0.bn1": torch.zeros(16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="does not support"):
        prunable_bns(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
