"""The L0-HC and Dep-L0 experiment configs: they load, resolve, follow the Dep-L0 release, and run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from experiments.run import main
from pruning.base import Schedule
from pruning.registry import METHODS
from training.config import load_config, resolve

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = [ROOT / "experiments" / "configs" / "l0hc", ROOT / "experiments" / "configs" / "dep_l0"]
PATHS = sorted(p for folder in FOLDERS for p in folder.rglob("*.yaml"))
SUBSET = [p for p in PATHS if p.parent.name == "subset"]

# (method, direction) x model -> lam, from the release's README
RELEASE_LAM = {
    ("l0hc", None, "vgg16"): 5e-7,
    ("dep_l0", "forward", "vgg16"): 1e-6,
    ("dep_l0", "backward", "vgg16"): 1e-6,
    ("l0hc", None, "resnet56"): 5e-7,
    ("dep_l0", "forward", "resnet56"): 5e-7,
    ("dep_l0", "backward", "resnet56"): 1e-6,
}


def key(cfg) -> tuple[str, str | None, str]:  # noqa: ANN001
    return cfg.method.name, getattr(cfg.method, "direction", None), cfg.model


def test_every_config_loads_and_resolves_for_its_profiles() -> None:
    assert len(PATHS) == 30
    names = set()
    for path in PATHS:
        cfg = load_config(path)
        assert cfg.method.name in ("l0hc", "dep_l0")
        for profile in ["full", *cfg.profiles]:
            resolved = resolve(cfg, profile)
            stages = METHODS[cfg.method.name](resolved.method).stages(resolved.train.epochs)
            assert stages[0].epochs == resolved.train.epochs
        names.add(cfg.name)
    assert len(names) == len(PATHS)  # experiment names are unique


RELEASE = [p for p in PATHS if p not in SUBSET and not p.stem.endswith("_params")]


def test_cifar_configs_follow_the_release() -> None:
    seen = set()
    for path in RELEASE:
        cfg = load_config(path)
        if cfg.data.dataset == "imagenet":
            continue
        seen.add((*key(cfg), cfg.data.dataset))
        assert cfg.method.lam == RELEASE_LAM[key(cfg)], path.name
        assert cfg.train.epochs == 299 and cfg.data.batch_size == 128  # the release's range(1, 300)
        vgg = cfg.model == "vgg16"
        # VGG steps its scheduler after each epoch, ResNet-56 before it (decayed from epoch 60 on)
        assert cfg.train.schedule.milestones == ([60, 120, 180, 240] if vgg else [59, 119, 179, 239])
        assert (cfg.optimizer.lr, cfg.train.schedule.gamma) == ((0.05, 0.2) if vgg else (0.1, 0.1))
        assert (cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.9, 5e-4)
        assert (cfg.method.gate_lr, cfg.method.penalty, cfg.method.finetune_epochs) == (1e-3, "release", 0)
        # the VGG gates are never decayed; the ResNet-56 gates follow the weights
        assert cfg.method.gate_schedule == (Schedule("constant") if vgg else None)
        assert getattr(cfg.method, "input_width", None) == (64 if vgg and key(cfg)[1] == "backward" else None)
        assert cfg.profiles == {}  # full runs only
    assert len(seen) == 12  # 3 methods x 2 models x 2 data sets


def test_the_corrected_penalty_has_configs_of_its_own() -> None:
    params = [p for p in PATHS if p.stem.endswith("_params")]
    assert len(params) == 9  # ResNet-56 on both CIFARs and ResNet-50: L0-HC and both Dep-L0 directions
    for path in params:
        cfg, release = load_config(path), load_config(path.with_name(path.stem.removesuffix("_params") + ".yaml"))
        assert cfg.method.penalty == "params" and release.method.penalty == "release"
        assert cfg.method == dataclasses.replace(release.method, penalty="params") and cfg.train == release.train


def test_imagenet_configs_follow_the_release() -> None:
    paths = [p for p in RELEASE if load_config(p).data.dataset == "imagenet"]
    assert len(paths) == 3
    for path in paths:
        cfg = load_config(path)
        assert cfg.model == "resnet50" and cfg.data.batch_size == 256 and cfg.method.lam == 5e-9
        assert cfg.train.epochs == 90 and cfg.train.schedule.milestones == [30, 60]
        assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (0.1, 1e-4)
        assert cfg.method.gate_schedule == Schedule("multistep", [30, 60], 0.2)  # the gates: x0.2
        stages = METHODS[cfg.method.name](cfg.method).stages(cfg.train.epochs)
        assert [(s.name, s.epochs, s.penalty, s.lr) for s in stages] == [
            ("train", 90, True, None),
            ("finetune", 10, False, 1e-3),
        ]
        assert stages[1].schedule == Schedule("multistep", [1], 0.1)  # 1e-3, then 1e-4, as the release
    assert {key(load_config(p))[:2] for p in paths} == {("l0hc", None), ("dep_l0", "forward"), ("dep_l0", "backward")}


def test_subset_gate_learning_rates() -> None:
    """L0-HC's free log alphas need 2e-2 to close within the subset's 555 steps; Dep-L0's generator
    moves every log alpha at once and keeps the release's 1e-3 (at 2e-2 it saturated in the first
    epoch and its gates never moved again)."""
    rates = {load_config(p).name: load_config(p).method.gate_lr for p in SUBSET}
    assert {name: lr for name, lr in rates.items() if name.startswith("r20_l0hc")} == {
        "r20_l0hc_w30": 2e-2,
        "r20_l0hc_w50": 2e-2,
    }
    dep = {name: lr for name, lr in rates.items() if name.startswith("r20_dep_l0")}
    assert len(dep) == 4 and set(dep.values()) == {1e-3}


@pytest.mark.parametrize("path", [p for p in SUBSET if "smoke" in load_config(p).profiles], ids=lambda p: p.stem)
def test_subset_configs_run_on_the_smoke_profile(path: Path, tmp_path: Path, tiny_cifar: Path) -> None:
    out = tmp_path / "results"
    assert (
        main(
            [
                str(path),
                "--profile",
                "smoke",
                "--data-root",
                str(tiny_cifar),
                "--results",
                str(out),
                "--no-progress",
                "--set",
                "data.validation=10",
            ]
        )
        == 0
    )  # the tiny data holds 100 images
    metrics = json.loads((out / path.stem / "seed0" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["profile"] == "smoke" and metrics["validation_size"] == 10
    assert metrics["params_physical"] == metrics["params_total"]
    assert list(metrics["channels_open"]) == metrics["gated_layers"] and len(metrics["gated_layers"]) == 10
