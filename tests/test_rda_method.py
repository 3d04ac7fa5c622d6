"""Method rda (pruning/rda.py): its groups, its config, its wiring in the runner, its YAML files."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.run import main
from models import build_model
from optim.rda import RDA
from pruning.base import Stage
from pruning.methods.rda import RDAMethod, RDAMethodConfig, zero_group_fractions
from pruning.registry import METHODS
from tests.conftest import ROOT
from training import config
from training.build import optimizer_factory
from training.schema import ConfigError

RDA_YAML = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train:
  epochs: 3
  schedule: {name: cosine}
optimizer: {name: rda, lr: 0.5, momentum_timescale: 5.0, weight_decay: 5e-4}
method: {name: rda, lam: 1e-4, reweight: log, max_factor: 500}
"""


def write(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_registered_under_its_name() -> None:
    assert METHODS["rda"] is RDAMethod and config.OPTIMIZERS["rda"] is config.RDAConfig


def test_conv_and_linear_weights_are_penalised_everything_else_not() -> None:
    model = build_model("resnet20", 10)
    groups = RDAMethod(RDAMethodConfig(lam=2e-6, group="kernel", prox="group")).param_groups(model)
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(groups) == 2 and len(weights) == 20  # 19 convolutions and the classifier
    penalised, rest = groups
    assert [id(p) for p in penalised["params"]] == [id(w) for w in weights]
    assert penalised["lam"] == 2e-6 and penalised["reweight"] == "log" and penalised["group"] == "kernel"
    assert penalised["prox"] == "group" and penalised["max_factor"] == 500.0
    assert rest["lam"] == 0.0 and rest["reweight"] == "none" and rest["group"] == "none"
    everything = {id(p) for p in model.parameters()}
    assert {id(p) for p in rest["params"]} == everything - {id(w) for w in weights}
    assert all(p.dim() == 1 for p in rest["params"])  # BN scales and shifts, the classifier's bias


def test_rda_config_loads_and_checks_its_values(tmp_path: Path) -> None:
    cfg = config.load_config(write(tmp_path, RDA_YAML))
    assert isinstance(cfg.optimizer, config.RDAConfig) and cfg.optimizer.avg == "coupled"
    assert cfg.optimizer.magnitude_timescale is None and cfg.method.lam == 1e-4 and cfg.method.group == "none"
    cfg = config.load_config(write(tmp_path, RDA_YAML.replace("lr: 0.5,", "lr: 0.5, avg: 0,")))
    assert cfg.optimizer.avg == 0.0
    for edit, message in [
        (("lr: 0.5,", "lr: 0.5, avg: 1.5,"), "avg: expected 'coupled' or a number in [0, 1]"),
        (("lr: 0.5,", "lr: 0.5, avg: sometimes,"), "optimizer.avg: expected 'coupled' | float"),
        (("reweight: log", "reweight: sqrt"), "method.reweight: expected one of"),
        (("max_factor: 500", "max_factor: 1"), "method.max_factor: must be > 1, got 1.0"),
        (("{name: rda, lam", "{name: dense, lam"), "method.lam: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("|", r"\|")):
            config.load_config(write(tmp_path, RDA_YAML.replace(*edit)))


def test_method_and_optimizer_rda_go_together(tmp_path: Path) -> None:
    sgd = RDA_YAML.replace("{name: rda, lr: 0.5, momentum_timescale: 5.0,", "{name: sgd, lr: 0.1,")
    dense = RDA_YAML.replace("method: {name: rda, lam: 1e-4, reweight: log, max_factor: 500}", "method: {name: dense}")
    for text, message in (
        (sgd, "method rda needs optimizer rda, got sgd"),
        (dense, "optimizer rda is only for method rda"),
    ):
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            config.load_config(path)
        assert str(info.value) == f"{path}: config: {message}"


def test_runner_builds_rda_with_the_method_groups(tmp_path: Path) -> None:
    cfg = config.load_config(write(tmp_path, RDA_YAML.replace("lr: 0.5,", "lr: 0.5, avg: 0.25,")))
    method = METHODS[cfg.method.name](cfg.method)
    model = build_model(cfg.model, 10)
    (opt,), (sched,) = optimizer_factory(cfg, method)(Stage("train", 3), model)
    assert isinstance(opt, RDA) and isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)
    penalised, rest = opt.param_groups
    assert penalised["lam"] == 1e-4 and penalised["reweight"] == "log" and rest["lam"] == 0.0
    for group in opt.param_groups:
        assert group["lr"] == 0.5 and group["avg"] == 0.25 and group["momentum_timescale"] == 5.0
        assert group["weight_decay"] == 5e-4 and group["magnitude_timescale"] is None


def test_metrics_count_all_zero_kernels_and_filters() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight[1] = 0  # a whole filter: 2 kernels
        model[0].weight[3, 0] = 0  # one more kernel
        model[0].weight[0, 0, 0, 0] = 0  # a lone zero counts for neither
        model[2].weight[0, 2] = 0  # a 1 x 1 kernel
        model[4].weight.zero_()  # linear layers are not counted
    fractions = RDAMethod(RDAMethodConfig()).metrics(model)
    assert fractions == zero_group_fractions(model)
    assert fractions["kernel_sparsity"] == pytest.approx(4 / (8 + 8))
    assert fractions["channel_sparsity"] == pytest.approx(1 / (4 + 2))


def test_rda_run_makes_exact_zeros(tmp_path: Path, tiny_cifar: Path) -> None:
    path = write(tmp_path, RDA_YAML)
    assert (
        main(
            [
                str(path),
                "--data-root",
                str(tiny_cifar),
                "--results",
                str(tmp_path / "results"),
                "--no-progress",
                "--set",
                "train.epochs=2",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "results" / "tiny" / "seed0" / "metrics.json").read_text())
    assert metrics["method"] == "rda" and 0.0 < metrics["sparsity"] < 1.0
    assert 0.0 <= metrics["channel_sparsity"] <= metrics["kernel_sparsity"] < 1.0
    # the optimizer's state is in the checkpoint, readable with weights_only=True (exact resume)
    checkpoint = torch.load(tmp_path / "results" / "tiny" / "seed0" / "checkpoint.pt", weights_only=True)
    (state,) = checkpoint["optimizers"]
    assert all(sorted(s) == ["beta", "r", "v", "z"] for s in state["state"].values())
    assert state["param_groups"][0]["rda_lr0"] == 0.5


CONFIG_FILES = sorted((ROOT / "experiments" / "configs" / "rda").rglob("*.yaml"))


def test_there_are_rda_configs() -> None:
    names = [p.stem for p in CONFIG_FILES]
    assert len(names) >= 9 + 6 + 10 and len(set(names)) == len(names)
    assert all(name.startswith(("rda_", "r20_rda_")) for name in names)  # unique among every method's experiments


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT / "experiments" / "configs")))
def test_every_rda_config_loads_and_resolves(path: Path) -> None:
    cfg = config.load_config(path)
    assert cfg.method.name == "rda" and cfg.optimizer.name == "rda"
    for profile in ["full", *cfg.profiles]:
        resolved = config.resolve(cfg, profile)
        assert resolved.profile == profile and resolved.train.epochs >= 1
