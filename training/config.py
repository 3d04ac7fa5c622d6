"""The experiment schema: typed dataclasses, YAML loading, overrides and profiles.

``load_config(path, overrides)`` reads one YAML file with ``yaml.safe_load``, applies
``--set key.path=value`` overrides and validates everything; any problem raises
``ConfigError`` with one line naming the file and the key. ``resolve(cfg, profile)``
applies a profile (smoke / subset / full), scaling every epoch count of the config by
the same ratio so that schedules keep their shape.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pruning.base import Duration, Schedule
from pruning.registry import METHODS
from training.schema import ConfigError, to_dict, validate


@dataclass
class DataConfig:
    dataset: Literal["cifar10", "cifar100", "imagenet"]
    batch_size: int = 128
    augment: bool = True
    max_train: int | None = None  # keep the first N training images
    max_test: int | None = None
    workers: int = 8  # ImageNet loader processes; CIFAR lives on the device


@dataclass
class TrainConfig:
    epochs: int = field(metadata={"epochs": True})
    schedule: Schedule = field(default_factory=Schedule)
    label_smoothing: float = 0.0
    bf16: bool = False  # autocast on CUDA; ignored on CPU
    channels_last: bool = False  # on CUDA; ignored on CPU
    compile: bool = False  # torch.compile the model (CUDA)


@dataclass
class OptimizerConfig:
    name: str
    lr: float

    @classmethod
    def registry(cls) -> dict[str, type]:
        return OPTIMIZERS


@dataclass
class SGDConfig(OptimizerConfig):
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4


@dataclass
class RDAConfig(OptimizerConfig):
    """xRDA (optim/rda.py); the penalty itself (lam, reweighting, groups) is method rda's."""

    lr: float = 1.0
    avg: Literal["coupled"] | float = "coupled"  # a = 1 - lr / lr_0, or a constant in [0, 1]
    momentum_timescale: float | None = 9.5
    magnitude_timescale: float | None = None  # None: momentum_timescale
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.avg != "coupled" and not 0.0 <= self.avg <= 1.0:
            raise ValueError(f"avg: expected 'coupled' or a number in [0, 1], got {self.avg}")


OPTIMIZERS: dict[str, type] = {"sgd": SGDConfig, "rda": RDAConfig}


class MethodSpec:
    """Tag for the `method:` section: resolved through the method registry by name."""

    @classmethod
    def registry(cls) -> dict[str, type]:
        return {name: m.Config for name, m in METHODS.items()}


@dataclass
class ProfileConfig:
    """What a profile changes; unset fields keep the experiment's own values."""

    epochs: int | None = None  # main-stage epochs; every epoch count is scaled alike
    max_train: int | None = None
    max_test: int | None = None
    seeds: int | None = None


# Built-in profiles. An experiment takes part in `full` always, in another profile only if
# its YAML lists it under `profiles:` (optionally with its own values, which win).
PROFILES: dict[str, ProfileConfig] = {
    "smoke": ProfileConfig(epochs=2, max_train=2000, max_test=1000, seeds=1),
    "subset": ProfileConfig(seeds=1),
    "full": ProfileConfig(),
}


@dataclass
class ExperimentConfig:
    name: str
    model: str
    data: DataConfig
    train: TrainConfig
    optimizer: OptimizerConfig
    method: MethodSpec = field(default_factory=lambda: METHODS["dense"].Config())
    seeds: int = 1
    description: str = ""
    profiles: dict[str, ProfileConfig] = field(default_factory=dict)
    profile: str = "full"  # set by resolve(); recorded in the resolved config

    def __post_init__(self) -> None:
        from models import MODELS

        if self.model not in MODELS:
            raise ValueError(f"model: unknown {self.model!r}; choose one of {', '.join(sorted(MODELS))}")
        unknown = set(self.profiles) - set(PROFILES)
        if unknown:
            raise ValueError(f"profiles: unknown profile {sorted(unknown)[0]!r}; choose from {', '.join(PROFILES)}")
        required = METHODS[self.method.name].requires_optimizer
        if required is not None and self.optimizer.name != required:
            raise ValueError(f"method {self.method.name} needs optimizer {required}, got {self.optimizer.name}")
        owners = sorted(n for n, m in METHODS.items() if m.requires_optimizer == self.optimizer.name)
        if owners and self.method.name not in owners:
            raise ValueError(f"optimizer {self.optimizer.name} is only for method {' / '.join(owners)}")


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a mapping")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value parsed as YAML, so 3 is an int and 1e-6 a float)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.path=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def run_config_from_mapping(data: dict[str, Any]) -> ExperimentConfig:
    """A run's resolved config (its config.yaml as a mapping: the experiment's keys and its seed)."""
    return validate(ExperimentConfig, {k: v for k, v in data.items() if k != "seed"})


def load_run_config(path: str | Path) -> ExperimentConfig:
    """The resolved config a run wrote (its config.yaml); errors name the file."""
    path = Path(path)
    try:
        return run_config_from_mapping(_read_mapping(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate one experiment YAML; errors name the file and the key."""
    path = Path(path)
    data = _read_mapping(path)
    data.setdefault("name", path.stem)
    try:
        for text in overrides or []:
            _set_path(data, *parse_override(text))
        return validate(ExperimentConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# Training images of each data set as released: what an iteration count in a config refers to.
FULL_TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}


def reference_steps_per_epoch(cfg: ExperimentConfig) -> int:
    """Optimizer steps in one epoch of the config's own data (its ``max_train`` images, else the
    full data set) at its batch size: the epoch length an iteration count in the config means."""
    images = FULL_TRAIN_SIZES[cfg.data.dataset]
    if cfg.data.max_train is not None:
        images = min(images, cfg.data.max_train)
    return max(1, math.ceil(images / cfg.data.batch_size))


def scale_duration(value: Duration, ratio: float, steps_per_epoch: int) -> Duration:
    """A duration moved with a budget scaled by ``ratio``: epochs scale; iterations become the same
    fraction of the scaled training, in epochs (``steps_per_epoch``: the unscaled epoch's steps)."""
    epochs = value.value if value.unit == "ep" else value.value / steps_per_epoch
    return Duration(float(f"{epochs * ratio:.6g}"), "ep")


def _scale_epochs(obj: Any, ratio: float, steps_per_epoch: int) -> Any:
    """Copy of a config tree with every epoch-valued field multiplied by ``ratio`` and every
    duration moved with it (``scale_duration``)."""
    if not dataclasses.is_dataclass(obj):
        return obj
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Duration):
            changes[f.name] = scale_duration(value, ratio, steps_per_epoch)
        elif f.metadata.get("epochs"):
            if isinstance(value, list):
                changes[f.name] = [max(1, round(v * ratio)) for v in value]
            elif value:
                changes[f.name] = max(1, round(value * ratio))
        elif dataclasses.is_dataclass(value):
            changes[f.name] = _scale_epochs(value, ratio, steps_per_epoch)
    return dataclasses.replace(obj, **changes)


def in_profile(cfg: ExperimentConfig, profile: str) -> bool:
    return profile == "full" or profile in cfg.profiles


def resolve(cfg: ExperimentConfig, profile: str) -> ExperimentConfig:
    """Apply a profile: the resolved config is exactly what the run will do."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile: unknown {profile!r}; choose from {', '.join(PROFILES)}")
    settings = dataclasses.asdict(PROFILES[profile])
    settings.update({k: v for k, v in dataclasses.asdict(cfg.profiles.get(profile, ProfileConfig())).items()
                     if v is not None})
    out = cfg
    if settings["epochs"] is not None and settings["epochs"] != cfg.train.epochs:
        out = _scale_epochs(out, settings["epochs"] / cfg.train.epochs, reference_steps_per_epoch(cfg))
        out = dataclasses.replace(out, train=dataclasses.replace(out.train, epochs=settings["epochs"]))
    data = out.data
    for key in ("max_train", "max_test"):
        if settings[key] is not None:
            current = getattr(data, key)
            data = dataclasses.replace(data, **{key: settings[key] if current is None else min(current, settings[key])})
    return dataclasses.replace(out, data=data, seeds=settings["seeds"] or out.seeds, profile=profile, profiles={})


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def collect_configs(paths: list[Path], profile: str, overrides: list[str], only: str | None) -> list[ExperimentConfig]:
    """Load every config named (files), or every config of the profile in the folders named."""
    configs = []
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*.yaml")):
                cfg = load_config(file, overrides)
                if in_profile(cfg, profile):
                    configs.append(cfg)
        else:
            configs.append(load_config(path, overrides))
    if only:
        pattern = only if any(ch in only for ch in "*?[") else f"*{only}*"
        configs = [c for c in configs if fnmatch.fnmatch(c.name, pattern)]
    seen: dict[str, int] = {}
    for c in configs:
        seen[c.name] = seen.get(c.name, 0) + 1
    dupes = [n for n, k in seen.items() if k > 1]
    if dupes:
        raise ConfigError(f"experiment name {dupes[0]!r} is used by more than one config")
    return configs
