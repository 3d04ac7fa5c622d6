"""The baselines' YAMLs: they load and resolve, spell out every value, follow the recipes, cover the points."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from experiments.run import CONFIG_DIR
from pruning.registry import METHODS
from training import config
from training.config import collect_configs

FAMILIES = ("magnitude", "lottery", "random_finetune", "slimming")
FILES = sorted(
    p for family in FAMILIES for p in (CONFIG_DIR / family).glob("*.yaml")
)  # the subset's: test_subset_protocol


def family_of(path: Path) -> str:
    return path.relative_to(CONFIG_DIR).parts[0]


def total_epochs(cfg: config.ExperimentConfig) -> int:
    method = METHODS[cfg.method.name](cfg.method)
    return sum(s.epochs for s in method.stages(cfg.train.epochs))


def point(cfg: config.ExperimentConfig) -> float:
    return cfg.method.channel_ratio if cfg.method.name == "slimming" else cfg.method.sparsity


def test_there_are_configs() -> None:
    assert {family_of(p) for p in FILES} == set(FAMILIES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_loads_resolves_and_spells_out_every_value(path: Path) -> None:
    cfg = config.load_config(path)
    assert cfg.name == path.stem
    assert cfg.method.name == family_of(path)
    for profile in ["full", *cfg.profiles]:
        resolved = config.resolve(cfg, profile)
        assert total_epochs(resolved) >= 1
        METHODS[cfg.method.name](resolved.method).stages(resolved.train.epochs)
    raw = yaml.safe_load(path.read_text())
    fields = dataclasses.fields(type(cfg.method))  # every option, except those added after runs were recorded
    assert {f.name for f in fields if not f.metadata.get("optional")} <= set(raw["method"]) <= {f.name for f in fields}
    assert set(raw["optimizer"]) == {f.name for f in dataclasses.fields(type(cfg.optimizer))}
    assert {"epochs", "schedule"} <= set(raw["train"]) and {"dataset", "batch_size"} <= set(raw["data"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_recipe_of_liu_et_al_and_open_lth(path: Path) -> None:
    cfg = config.load_config(path)
    assert cfg.train.epochs == 160
    assert (cfg.train.schedule.name, cfg.train.schedule.milestones, cfg.train.schedule.gamma) == (
        "multistep",
        [80, 120],
        0.1,
    )
    opt = cfg.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert cfg.data.batch_size in (64, 128)
    m = cfg.method
    if m.name in ("magnitude", "random_finetune"):
        assert (m.retrain_epochs, m.retrain_lr, m.retrain_schedule.name) == (40, 0.001, "constant")
    if m.name == "magnitude":  # Liu et al.'s weight-level pruning: the convolutions only
        assert m.layers == ("conv" if "_conv_s" in path.stem else "conv_linear")
    if m.name == "lottery":  # open_lth: 20% a round, BN scales U(0, 1), VGG's classifier dense
        assert m.prune_fraction == 0.2 and cfg.bn_weight_init == "uniform"
        assert m.exclude == (["classifier"] if cfg.model == "vgg16" else [])
    if m.name == "slimming":  # the network-slimming release: BN scales 0.5, L1 on every BN
        assert m.l1 == (1e-4 if cfg.model.startswith("vgg") else 1e-5)
        assert cfg.bn_weight_init == 0.5 and m.l1_on == "all"
        ft40 = path.stem.endswith("_ft40")  # the rethinking paper's fine-tuning instead of the release's
        assert (m.finetune_epochs, m.finetune_lr, m.finetune_schedule.milestones) == (
            (40, 0.001, []) if ft40 else (160, 0.1, [80, 120])
        )


def test_five_operating_points_per_method_model_and_dataset() -> None:
    points: dict[tuple[str, str, str], set[float]] = defaultdict(set)
    for path in FILES:
        cfg = config.load_config(path)
        if not getattr(cfg.method, "reinit", False):
            points[(cfg.method.name, cfg.model, cfg.data.dataset)].add(point(cfg))
    for family in FAMILIES:
        for model in ("vgg16", "resnet56"):
            for dataset in ("cifar10", "cifar100"):
                assert len(points[(family, model, dataset)]) >= 5, (family, model, dataset)
    assert points[("slimming", "vgg16", "cifar10")] == {0.3, 0.4, 0.5, 0.6, 0.7}


@pytest.mark.parametrize("profile", list(config.PROFILES))
def test_names_are_unique_over_all_configs(profile: str) -> None:
    collect_configs([CONFIG_DIR], profile, [], None)  # raises on a duplicate name
