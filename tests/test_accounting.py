import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models import build_model
from pruning.accounting import layer_flops, sparsity_report, weight_sparsity


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),  # 8x8 out: 4*3*9 = 108 weights, 64 positions
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 2, 3, stride=2, padding=1),  # 4x4 out: 2*4*9 = 72 weights (+2 bias), 16 positions
        nn.Flatten(),
        nn.Linear(32, 5),  # 160 weights (+5 bias)
    )


def test_flops_by_hand() -> None:
    flops = layer_flops(tiny(), (3, 8, 8))
    assert flops["0"] == (2 * 108 * 64, 2 * 108 * 64)
    assert flops["3"] == (2 * 72 * 16, 2 * 72 * 16)
    assert flops["5"] == (2 * 160, 2 * 160)


def test_dense_flops_agree_with_torch_flop_counter() -> None:
    model = build_model("resnet20", 10).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    # torch counts convolutions and matrix products, 2 x multiply-adds, as we do.
    assert sum(d for d, _ in layer_flops(model, (3, 32, 32)).values()) == counter.get_total_flops()


def test_sparsity_and_effective_flops_by_hand() -> None:
    dense, final = tiny(), tiny()
    with torch.no_grad():
        final[0].weight[:2] = 0  # 54 of 108 weights
        final[5].weight[:, :16] = 0  # 80 of 160 weights
    report = sparsity_report(final, dense, (3, 8, 8))
    assert report["prunable_weights_dense"] == 108 + 72 + 160
    assert report["prunable_weights_nonzero"] == 54 + 72 + 80
    assert report["sparsity"] == pytest.approx(1 - 206 / 340)
    params = 340 + 8 + 2 + 5  # weights, BN affine, biases
    assert report["params_dense"] == report["params_total"] == params
    assert report["sparsity_all"] == pytest.approx((134 + 4) / params)  # BN biases start at exactly 0
    assert report["flops_effective"] == 2 * (54 * 64 + 72 * 16 + 80)
    assert report["flops_dense"] == 2 * (108 * 64 + 72 * 16 + 160)
    layer0 = report["layers"][0]
    assert (layer0["layer"], layer0["nonzero"], layer0["density"]) == ("0", 54, 0.5)


def test_removed_channels_count_as_zeros() -> None:
    dense = tiny()
    final = tiny()
    final[0] = nn.Conv2d(3, 2, 3, padding=1, bias=False)  # two filters physically removed
    final[1] = nn.BatchNorm2d(2)
    final[3] = nn.Conv2d(2, 2, 3, stride=2, padding=1)
    report = sparsity_report(final, dense, (3, 8, 8))
    assert report["prunable_weights_nonzero"] == 54 + 36 + 160
    assert report["sparsity"] == pytest.approx(1 - 250 / 340)
    assert report["layers"][0]["shape_final"] == [2, 3, 3, 3]
    assert report["flops_effective"] == 2 * (54 * 64 + 36 * 16 + 160)


def test_weight_sparsity_counts_exact_zeros_only() -> None:
    model = tiny()
    with torch.no_grad():
        model[0].weight.fill_(1e-30)
        model[3].weight.zero_()
    assert float(weight_sparsity(model)) == pytest.approx(72 / 340, abs=1e-7)
