"""The experiment schema: typed dataclasses, YAML loading, overrides and profiles.

``load_config(path, overrides, profile)`` reads one YAML file with ``yaml.safe_load``, validates
every key, type and value range, applies the profile (``resolve``: smoke / subset / rehearsal / full,
scaling every epoch count and duration of the config by the same ratio so that schedules keep their
shape; the rehearsal to the fewest epochs the method accepts),
then the ``--set key.path=value`` overrides, which are final, and plans the stages (``plan``); any
problem raises ``ConfigError`` with one line naming the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pruning.base import Duration, Schedule, Stage, option
from pruning.registry import METHODS
from training.files import FileRefused, describe_failure, read_text_bounded
from training.schema import ConfigError, short, to_dict, validate


@dataclass
class DataConfig:
    dataset: Literal["cifar10", "cifar100", "imagenet"]
    batch_size: int = option(128, ge=2)  # the global batch (batch norm needs two images)
    augment: bool = True
    max_train: int | None = option(None, ge=2)  # keep the first N training images
    max_test: int | None = option(None, ge=1)
    validation: int = option(0, ge=0)  # training images held out for validation (class-balanced, fixed)
    random_erasing: float = option(0.0, ge=0.0, le=1.0)  # probability; the xRDA release's ResNet-20 uses 0.5
    workers: int = option(8, ge=0)  # ImageNet loader processes; CIFAR lives on the device


@dataclass
class TrainConfig:
    epochs: int = option(ge=1, epochs=True)
    schedule: Schedule = field(default_factory=Schedule)
    label_smoothing: float = option(0.0, ge=0.0, lt=1.0)
    test_each_epoch: bool = True  # False: the test set is read once, for the final numbers
    bf16: bool = False  # autocast on CUDA; ignored on CPU
    channels_last: bool = False  # NHWC memory format: faster on CUDA, and for small convolutions on CPUs too
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
    lr: float = option(0.1, gt=0.0)
    momentum: float = option(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = option(1e-4, ge=0.0)

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0")


@dataclass
class RDAConfig(OptimizerConfig):
    """xRDA (optim/rda.py); the penalty itself (lam, reweighting, groups) is method rda's."""

    lr: float = option(1.0, gt=0.0)
    avg: Literal["coupled"] | float = "coupled"  # a = 1 - lr / lr_0, or a constant in [0, 1]
    momentum_timescale: float | None = option(9.5, gt=0.0)
    magnitude_timescale: float | None = option(None, gt=0.0)  # None: momentum_timescale
    weight_decay: float = option(5e-4, ge=0.0)

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

    # Main-stage epochs; every epoch count is scaled alike. "minimum": the fewest main-stage epochs
    # (from 1 up) whose scaled config the method accepts (``plan``: its stages, milestones and
    # ``Method.check_budget``, e.g. a lottery ticket's rewind point inside round 0), with the method's
    # own options at the smallest data it accepts (``Method.rehearsal_options``).
    epochs: int | Literal["minimum"] | None = option(None, ge=1)
    max_train: int | None = option(None, ge=2)
    max_test: int | None = option(None, ge=1)
    seeds: int | None = option(None, ge=1)
    batch_size: int | None = option(None, ge=2)  # an upper bound on the batch (few images still make steps)
    workers: int | None = option(None, ge=0)  # an upper bound on the ImageNet loader processes
    latency_batch_sizes: list[int] | None = option(None, ge=1)  # replaces a method's own
    synthetic: bool = False  # a data set absent from the data root is generated (training.synthetic)
    experiments_of: str | None = None  # run every experiment of that profile (not only those listing this one)


# Built-in profiles. An experiment takes part in `full` always, in another profile only if
# its YAML lists it under `profiles:` (optionally with its own values, which win), or if that
# profile runs the experiments of one it takes part in (``experiments_of``).
PROFILES: dict[str, ProfileConfig] = {
    "smoke": ProfileConfig(epochs=1, max_train=1500, max_test=500, seeds=1),
    "subset": ProfileConfig(),
    "full": ProfileConfig(),
    # Every full-profile experiment, every stage, at the fewest epochs its method accepts, on 128
    # training / 64 test images in batches of at most 16 (a ResNet-50 batch of 64 at 224 pixels
    # needs 7 GB on a CPU); data sets absent from the data root are synthetic; latency at batch 1
    # only. It finds what would crash, not what would be learnt.
    "rehearsal": ProfileConfig(
        epochs="minimum",
        max_train=128,
        max_test=64,
        seeds=1,
        batch_size=16,
        workers=1,
        latency_batch_sizes=[1],
        synthetic=True,
        experiments_of="full",
    ),
}


@dataclass
class ExperimentConfig:
    name: str
    model: str
    data: DataConfig
    train: TrainConfig
    optimizer: OptimizerConfig
    method: MethodSpec = field(default_factory=lambda: METHODS["dense"].Config())
    bn_weight_init: float | Literal["uniform"] = 1.0  # initial BN scale: 0.5 (network slimming), U(0, 1) (open_lth)
    seeds: int = option(1, ge=1)
    description: str = ""
    profiles: dict[str, ProfileConfig] = field(default_factory=dict)
    full: bool = True  # part of the full profile (False: only of the profiles listed, e.g. the subset protocol)
    profile: str = "full"  # set by resolve(); recorded in the resolved config

    def __post_init__(self) -> None:
        from models import MODELS

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(
                f"name: must be a plain file name (letters, digits, '.', '_', '-'), got {short(self.name)}"
            )
        if self.model not in MODELS:
            raise ValueError(f"model: unknown {self.model!r}; choose one of {', '.join(sorted(MODELS))}")
        unknown = set(self.profiles) - set(PROFILES)
        if unknown:
            raise ValueError(f"profiles: unknown profile {sorted(unknown)[0]!r}; choose from {', '.join(PROFILES)}")
        for name, own in self.profiles.items():  # what a profile is, not what it changes in one experiment
            for key in ("synthetic", "experiments_of"):
                if getattr(own, key) != getattr(ProfileConfig(), key):
                    raise ValueError(f"profiles.{name}.{key}: a property of the built-in profile, not of a config")
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
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {short(text)}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise ConfigError(f"--set {short(text)}: not valid YAML ({type(exc).__name__})") from None


# A config is a few hundred bytes; anything near this is not one (a link to a device, a data file).
CONFIG_LIMIT = 1 << 20


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = read_text_bounded(path, CONFIG_LIMIT)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except FileRefused as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # a scalar YAML cannot convert (a date, a huge int)
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__}: {short(str(exc))})") from None
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


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> set[str]:
    """Set every ``--set key.path=value`` in ``data``; returns the keys set."""
    keys = set()
    for text in overrides:
        key, value = parse_override(text)
        _set_path(data, key, value)
        keys.add(key)
    return keys


def load_config(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> ExperimentConfig:
    """Read and validate one experiment YAML; errors name the file and the key.

    With ``profile``, the config is resolved (``resolve``) and its stages planned (``plan``), and
    the ``--set`` overrides are final: they are applied after the profile, which scales only the
    epoch fields they leave alone (an overridden ``train.epochs`` sets the scale instead).
    """
    path = Path(path)
    data = _read_mapping(path)
    data.setdefault("name", path.stem)
    try:
        if profile is None:
            _apply_overrides(data, overrides or [])
            return validate(ExperimentConfig, data)
        base = validate(ExperimentConfig, copy.deepcopy(data))
        keys = _apply_overrides(data, overrides or [])
        overridden = validate(ExperimentConfig, data)  # every override checked on its own first
        epochs = overridden.train.epochs if "train.epochs" in keys else None
        resolved = to_dict(resolve(base, profile, epochs=epochs))
        _apply_overrides(resolved, overrides or [])
        cfg = validate(ExperimentConfig, resolved)
        plan(cfg)
        return cfg
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
            if isinstance(value, list):  # milestones that rounding makes equal are merged
                changes[f.name] = list(dict.fromkeys(max(1, round(v * ratio)) for v in value))
            elif value:
                changes[f.name] = max(1, round(value * ratio))
        elif dataclasses.is_dataclass(value):
            changes[f.name] = _scale_epochs(value, ratio, steps_per_epoch)
    return dataclasses.replace(obj, **changes)


def _fit_milestones(cfg: ExperimentConfig) -> None:
    """After scaling, in place: a milestone that rounding put at or past the end of its (shortened)
    stage could never take effect and is dropped."""
    staged = []
    for stage in METHODS[cfg.method.name](cfg.method).stages(cfg.train.epochs):
        schedule = stage.schedule or cfg.train.schedule
        schedule.milestones = [m for m in schedule.milestones if m < stage.epochs]
        staged.append(schedule)
    # Any other schedule of the method (the gates' optimizer) runs on the train stage's clock.
    for f in dataclasses.fields(cfg.method):
        schedule = getattr(cfg.method, f.name)
        if isinstance(schedule, Schedule) and not any(schedule is s for s in staged):
            schedule.milestones = [m for m in schedule.milestones if m < cfg.train.epochs]


def in_profile(cfg: ExperimentConfig, profile: str) -> bool:
    """Whether a folder of configs runs ``cfg`` under ``profile`` (a config named as a file always runs)."""
    of = PROFILES[profile].experiments_of if profile in PROFILES else None
    return (profile == "full" and cfg.full) or profile in cfg.profiles or (of is not None and in_profile(cfg, of))


def _with_epochs(cfg: ExperimentConfig, epochs: int, steps_per_epoch: int) -> ExperimentConfig:
    """``cfg`` with ``epochs`` main-stage epochs, every other epoch field and duration scaled alike
    (``steps_per_epoch``: the unscaled epoch's steps)."""
    if epochs == cfg.train.epochs:
        return cfg
    out = _scale_epochs(cfg, epochs / cfg.train.epochs, steps_per_epoch)
    out = dataclasses.replace(out, train=dataclasses.replace(out.train, epochs=epochs))
    _fit_milestones(out)
    return out


def _minimum_epochs(cfg: ExperimentConfig, steps_per_epoch: int) -> ExperimentConfig:
    """``cfg`` scaled to the fewest main-stage epochs (1 up to its own) that ``plan`` accepts; the
    config's own budget (unscaled) if no fewer will do, and then ``plan`` says why."""
    for epochs in range(1, cfg.train.epochs):
        candidate = _with_epochs(cfg, epochs, steps_per_epoch)
        try:
            plan(candidate)
        except ConfigError:
            continue
        return candidate
    return cfg


def resolve(cfg: ExperimentConfig, profile: str, epochs: int | None = None) -> ExperimentConfig:
    """Apply a profile: the resolved config is exactly what the run will do. ``epochs`` (an explicit
    ``train.epochs``) replaces the profile's main-stage epochs; every epoch field scales with it."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile: unknown {profile!r}; choose from {', '.join(PROFILES)}")
    settings = dataclasses.asdict(PROFILES[profile])
    settings.update(
        {k: v for k, v in dataclasses.asdict(cfg.profiles.get(profile, ProfileConfig())).items() if v is not None}
    )
    if epochs is not None:
        settings["epochs"] = epochs
    steps_per_epoch = reference_steps_per_epoch(cfg)  # of the unscaled config: what its iterations mean
    data = cfg.data
    for key in ("max_train", "max_test", "batch_size", "workers"):
        if settings[key] is not None:
            current = getattr(data, key)
            data = dataclasses.replace(data, **{key: settings[key] if current is None else min(current, settings[key])})
    out = dataclasses.replace(cfg, data=data)
    if settings["epochs"] == "minimum":  # found with the profile's data: fewer images, fewer steps
        out = dataclasses.replace(out, method=METHODS[out.method.name].rehearsal_options(out.method))
        out = _minimum_epochs(out, steps_per_epoch)
    elif settings["epochs"] is not None:
        out = _with_epochs(out, settings["epochs"], steps_per_epoch)
    if settings["latency_batch_sizes"] is not None and hasattr(out.method, "latency_batch_sizes"):
        out = dataclasses.replace(
            out, method=dataclasses.replace(out.method, latency_batch_sizes=list(settings["latency_batch_sizes"]))
        )
    return dataclasses.replace(out, seeds=settings["seeds"] or out.seeds, profile=profile, profiles={}, full=True)


def synthetic_allowed(cfg: ExperimentConfig) -> bool:
    """Whether the profile a config was resolved for generates data sets absent from the data root."""
    return cfg.profile in PROFILES and PROFILES[cfg.profile].synthetic


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _schedule_key(cfg: ExperimentConfig, stage: Stage) -> str:
    """The config key that holds a stage's schedule."""
    if stage.schedule is None:
        return "train.schedule"
    for f in dataclasses.fields(cfg.method):
        if getattr(cfg.method, f.name) is stage.schedule:
            return f"method.{f.name}"
    return f"the {stage.name} stage's schedule"


def plan(cfg: ExperimentConfig, steps_per_epoch: int | None = None) -> list[Stage]:
    """The stages a resolved config trains, checked before any training: every stage has epochs,
    every milestone falls inside its stage, and the method fits the budget (``Method.check_budget``,
    with ``steps_per_epoch`` of the data, by default ``reference_steps_per_epoch``)."""
    method = METHODS[cfg.method.name](cfg.method)
    stages = method.stages(cfg.train.epochs)
    for stage in stages:
        schedule = stage.schedule or cfg.train.schedule
        late = [m for m in schedule.milestones if m >= stage.epochs]
        if late:
            raise ConfigError(
                f"{_schedule_key(cfg, stage)}.milestones: {late[0]} is not inside the {stage.name} "
                f"stage's {stage.epochs} epochs"
            )
    try:
        method.check_budget(steps_per_epoch or reference_steps_per_epoch(cfg), cfg.train.epochs)
    except ValueError as exc:
        raise ConfigError(f"method.{exc}") from None
    return stages


def collect_configs(
    paths: list[Path], profile: str, overrides: list[str], only: list[str] | str | None
) -> list[ExperimentConfig]:
    """Every config named (files), or every config of the profile in the folders named, resolved
    for ``profile`` with the overrides final (``load_config``); with ``only``, those whose name
    matches one of its patterns (a substring, or a glob)."""
    configs = []
    for path in paths:
        try:
            files = sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
        except OSError as exc:  # a name too long, a loop of links
            raise ConfigError(describe_failure(exc)) from None
        if not files:
            raise ConfigError(f"{path}: a folder with no YAML config (*.yaml) in it")
        for file in files:
            if path.is_dir() and not in_profile(load_config(file), profile):
                continue
            configs.append(load_config(file, overrides, profile))
    if not configs:
        raise ConfigError(f"no experiment of profile {profile!r} in {', '.join(map(str, paths))}")
    if only:
        given = [only] if isinstance(only, str) else only
        patterns = [p if any(ch in p for ch in "*?[") else f"*{p}*" for p in given]
        selected = [c for c in configs if any(fnmatch.fnmatch(c.name, p) for p in patterns)]
        if not selected:
            raise ConfigError(
                f"--only {' --only '.join(given)}: matches none of the {len(configs)} experiment(s) of profile "
                f"{profile!r} in {', '.join(map(str, paths))}"
            )
        configs = selected
    seen: dict[str, int] = {}
    for c in configs:
        seen[c.name] = seen.get(c.name, 0) + 1
    dupes = [n for n, k in seen.items() if k > 1]
    if dupes:
        raise ConfigError(f"experiment name {dupes[0]!r} is used by more than one config")
    return configs


def stratified_sample(configs: list[ExperimentConfig]) -> list[ExperimentConfig]:
    """One config per (method, model, data set): the first by name, in the order given."""
    first: dict[tuple[str, str, str], ExperimentConfig] = {}
    for cfg in sorted(configs, key=lambda c: c.name):
        first.setdefault((cfg.method.name, cfg.model, cfg.data.dataset), cfg)
    chosen = {id(c) for c in first.values()}
    return [c for c in configs if id(c) in chosen]
