import pytest
import torch

from models import MODELS, build_model

# Published parameter counts as printed (millions), checked to the printed precision:
# He et al. 2016 (CIFAR ResNets, ResNet-50), Liu et al. 2019 (VGG and ResNet-18 for CIFAR).
PUBLISHED = {
    "resnet20": ("0.27", 10),
    "resnet32": ("0.46", 10),
    "resnet56": ("0.85", 10),
    "resnet110": ("1.7", 10),
    "resnet18": ("11.2", 10),
    "resnet50": ("25.6", 1000),
    "vgg16": ("14.7", 10),
    "vgg19": ("20.0", 10),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_published(name: str) -> None:
    printed, classes = PUBLISHED[name]
    decimals = len(printed.split(".")[1])
    total = sum(p.numel() for p in build_model(name, classes).parameters())
    assert round(total / 1e6, decimals) == float(printed), f"{name}: {total} parameters, published {printed}M"


def test_densenet40_parameter_count_by_hand() -> None:
    # k = 12, 24 stem channels, 3 blocks of 12 BN-ReLU-conv3x3 layers, 1x1 transitions without
    # compression (Huang et al. print 1.0M for this net).
    blocks = [24, 168, 312]
    dense = sum(9 * 12 * (c + 12 * i) for c in blocks for i in range(12))
    bn_dense = sum(2 * (c + 12 * i) for c in blocks for i in range(12))
    transitions = 168 * 168 + 312 * 312 + 2 * (168 + 312)
    expected = 27 * 24 + dense + bn_dense + transitions + 2 * 456 + 456 * 10 + 10
    assert sum(p.numel() for p in build_model("densenet40", 10).parameters()) == expected


def test_every_model_is_covered() -> None:
    assert set(MODELS) == set(PUBLISHED) | {"densenet40"}


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "densenet40", "resnet18"])
def test_cifar_models_map_images_to_logits(name: str) -> None:
    model = build_model(name, 100).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)


def test_resnet50_takes_imagenet_input() -> None:
    model = build_model("resnet50", 1000).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_cifar_resnet_shortcuts_add_no_parameters() -> None:
    model = build_model("resnet20", 10)
    convs = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    # 3x3 convs only: stem 3->16, then per stage 6 convs; option-A shortcuts have no weights.
    expected = 27 * 16 + 9 * (6 * 16 * 16 + (16 * 32 + 5 * 32 * 32) + (32 * 64 + 5 * 64 * 64))
    assert convs == expected


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet7'"):
        build_model("resnet7", 10)
