"""Helpers shared by several test files: a tiny net and the real training loop, BN randomising,
and killing a run mid-way."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import training.loop as loop_module
from experiments.run import CONFIG_DIR, main
from pruning.base import RunContext, Schedule
from pruning.registry import METHODS
from training import config
from training.build import optimizer_factory
from training.loop import LoopSettings, Trainer


class Batches:
    """A few fixed random batches of 3x8x8 images, 3 classes."""

    def __init__(self, n: int = 2, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.data = [
            (torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(n)
        ]

    def epoch(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.data

    def __len__(self) -> int:
        return len(self.data)


def context(batches: Any = None, input_shape: tuple[int, ...] = (3, 8, 8), num_classes: int = 3) -> RunContext:
    """A one-process run context (the tiny ``Batches`` unless others are given)."""
    batches = batches if batches is not None else Batches()
    return RunContext(
        device=torch.device("cpu"),
        input_shape=input_shape,
        num_classes=num_classes,
        train_batches=batches,
        steps_per_epoch=len(batches),
    )


def resnet20_experiment(**fields: Any) -> config.ExperimentConfig:
    """A one-epoch ResNet-20 CIFAR-10 experiment with plain SGD; ``fields`` override any of it."""
    base: dict[str, Any] = dict(
        name="t",
        model="resnet20",
        data=config.DataConfig(dataset="cifar10"),
        train=config.TrainConfig(epochs=1),
        optimizer=config.SGDConfig(name="sgd"),
    )
    return config.ExperimentConfig(**{**base, **fields})


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


def keep_checkpoints(checkpoints: list[dict[str, Any]] | None) -> Callable[[dict[str, Any]], None]:
    """An ``on_epoch`` for the loop that appends each epoch's checkpoint to ``checkpoints`` (when given),
    through torch.save/load as a resumed run would read it."""

    def on_epoch(state: dict[str, Any]) -> None:
        if checkpoints is not None:
            buf = io.BytesIO()
            torch.save(state, buf)
            buf.seek(0)
            checkpoints.append(torch.load(buf, weights_only=True))

    return on_epoch


def train(
    method_cfg: Any,
    epochs: int = 1,
    resume: dict[str, Any] | None = None,
    checkpoints: list[dict[str, Any]] | None = None,
    build: Callable[[], nn.Module] = tiny_net,
) -> tuple[nn.Module, Any, Trainer]:
    """Run the real training loop on a tiny net; every checkpoint goes through torch.save/load."""
    exp = config.ExperimentConfig(
        name="t",
        model="resnet20",
        data=config.DataConfig(dataset="cifar10"),
        train=config.TrainConfig(epochs=epochs, schedule=Schedule(milestones=[1])),
        optimizer=config.SGDConfig(name="sgd", lr=0.05),
        method=method_cfg,
    )
    method = METHODS[method_cfg.name](method_cfg)
    model = method.prepare(build(), context())

    trainer = Trainer(
        model,
        method,
        method.stages(epochs),
        Batches(),
        Batches(1, seed=1),
        optimizer_factory(exp, method),
        LoopSettings(seed=0, device=torch.device("cpu"), progress=False),
        keep_checkpoints(checkpoints),
        log=lambda s: None,
    )
    return trainer.run(resume), method, trainer


def randomize_bns(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial affine parameters and running statistics in every BN."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def die_in_epoch(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the n-th epoch of the training loop raise KeyboardInterrupt, as if the process were
    killed after n - 1 checkpoints; ``monkeypatch.undo()`` restores the loop."""
    real_epoch = loop_module.Trainer._epoch
    calls = {"n": 0}

    def dying_epoch(self: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(loop_module.Trainer, "_epoch", dying_epoch)


# A dense ResNet-20 for 3 epochs with a milestone: the runner's tests resume and compare it.
CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train:
  epochs: 3
  schedule: {name: multistep, milestones: [2]}
optimizer: {name: sgd, lr: 0.05, weight_decay: 5e-4}
"""


def run_config(folder: Path, data_root: Path, text: str, *extra: str) -> int:
    """Write ``text`` as folder/tiny.yaml and run it through the runner's command line into
    folder/results; returns the exit code."""
    path = folder / "tiny.yaml"
    path.write_text(text)
    return main(
        [str(path), "--data-root", str(data_root), "--results", str(folder / "results"), "--no-progress", *extra]
    )


def straight_and_interrupted(
    tmp_path: Path, data_root: Path, text: str, monkeypatch: pytest.MonkeyPatch, dies_in: int
) -> tuple[Path, Path]:
    """Run the config ``text`` to the end in tmp_path/straight, and in tmp_path/killed until it is
    killed in epoch ``dies_in`` (no metrics written); returns both folders. ``run_config`` on the
    killed one resumes it."""
    dirs = []
    for name, dies in (("straight", None), ("killed", dies_in)):
        folder = tmp_path / name
        folder.mkdir()
        if dies is None:
            assert run_config(folder, data_root, text) == 0
        else:
            die_in_epoch(monkeypatch, dies)
            assert run_config(folder, data_root, text) == 130  # interrupted: says how to resume, no traceback
            monkeypatch.undo()
        dirs.append(folder)
    assert not (run_dir(dirs[1]) / "metrics.json").exists()
    return dirs[0], dirs[1]


def run_dir(folder: Path) -> Path:
    """Where ``run_config(folder, ...)`` writes seed 0's records."""
    return folder / "results" / "tiny" / "seed0"


def comparable_metrics(folder: Path) -> dict[str, Any]:
    """metrics.json of ``run_config(folder, ...)`` without what legitimately differs between two
    runs (wall time, code revision, measured latencies)."""
    metrics = json.loads((run_dir(folder) / "metrics.json").read_text())
    for key in ("wall_time_s", "git_revision"):
        metrics.pop(key)
    metrics.pop("latency", None)
    return metrics


def method_configs(method: str) -> dict[Path, Any]:
    """Every shipped YAML of ``method`` (experiments/configs/<method>/, subset/ included), loaded,
    after checking that each spells out every option of its method and resolves at its profiles."""
    import dataclasses

    import yaml

    configs = {}
    for path in sorted((CONFIG_DIR / method).rglob("*.yaml")):
        cfg = config.load_config(path)
        assert cfg.method.name == method and cfg.name == path.stem, path
        raw = yaml.safe_load(path.read_text())
        assert set(raw["method"]) == {f.name for f in dataclasses.fields(type(cfg.method))}, path
        for profile in ["full", *cfg.profiles]:
            resolved = config.resolve(cfg, profile)
            assert sum(s.epochs for s in METHODS[method](resolved.method).stages(resolved.train.epochs)) >= 1
        configs[path] = cfg
    return configs


def operating_points(configs: dict[Path, Any]) -> dict[tuple[str, str], set[float]]:
    """(model, dataset) -> the target sparsities of the configs."""
    points: dict[tuple[str, str], set[float]] = {}
    for cfg in configs.values():
        points.setdefault((cfg.model, cfg.data.dataset), set()).add(cfg.method.sparsity)
    return points


def check_points_and_recipe_of_the_other_baselines(method: str) -> None:
    """``method``'s configs sit at the operating points of magnitude pruning and the lottery ticket
    and train with their recipe, so that results differ by the method alone."""
    configs = method_configs(method)
    points = operating_points(configs)
    for model in ("vgg16", "resnet56"):
        for dataset in ("cifar10", "cifar100"):
            assert points[(model, dataset)] == {0.5, 0.8, 0.9, 0.95, 0.98}
    assert points[("resnet20", "cifar10")] == {0.5, 0.8, 0.9}  # the subset's
    for path, cfg in configs.items():
        recipe = (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.data.batch_size)
        assert recipe == ("sgd", 0.1, 1e-4, 128), path
        assert cfg.train.epochs == (15 if cfg.model == "resnet20" else 160), path
        assert ("subset" in cfg.profiles) == (cfg.model == "resnet20"), path
