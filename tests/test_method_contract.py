"""What every registered method must do, checked over ``pruning.registry.METHODS`` and the shipped
configs, so that a new method file is covered the moment it exists:

- its options are spelled out in every shipped YAML, every numeric option declares its range, and a
  value outside it is a one-line config error naming the file and the key;
- it has one protocol config in the smoke profile (the runs below start from it);
- a masked method reaches its operating point exactly: round(s N) of its N selected weights removed
  (within one weight a layer for a method that rounds per layer, ``exact_target = False``);
- a run resumed from a mid-run checkpoint ends exactly where the uninterrupted run ends;
- two data-parallel processes end with the same model and method state;
- a finished run leaves nothing alive once its model and method are dropped (one process runs
  hundreds of experiments in the full profile);
- each variant has a label, a family, an order and a colour, and no two variants share one.

The runs use ResNet-20 on 8x8 random images, 2 epochs a stage (1 for the data-parallel ones), 4
batches of 32 an epoch. The checks
are functions, so ``test_a_broken_method_fails_the_contract`` shows each one failing.
"""

from __future__ import annotations

import dataclasses
import gc
import typing
import weakref
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from experiments.run import CONFIG_DIR
from pruning.base import METHOD_CLASSES, Method, RunContext, Stage
from pruning.masks import MaskedConfig, MaskedMethod, random_masks
from pruning.registry import METHODS
from tests.helpers import keep_checkpoints
from training import config, distributed
from training.build import build_model_and_method, optimizer_factory
from training.loop import LoopSettings, Trainer
from training.schema import ConfigError

PATHS = sorted(CONFIG_DIR.rglob("*.yaml"))
RAW = {p: config.load_config(p) for p in PATHS}
SMOKE = {cfg.method.name: p for p, cfg in RAW.items() if "smoke" in cfg.profiles}
CPU = torch.device("cpu")


class ClassBatches:
    """4 fixed batches of 32 random 3x8x8 images, every one of 10 classes about equally often."""

    def __init__(self, seed: int = 0, n: int = 4) -> None:
        gen = torch.Generator().manual_seed(seed)
        labels = (torch.arange(32 * n) % 10)[torch.randperm(32 * n, generator=gen)]
        images = torch.randn(32 * n, 3, 8, 8, generator=gen)
        self.data = list(zip(images.split(32), labels.split(32)))

    def epoch(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.data

    def __len__(self) -> int:
        return len(self.data)


def tiny(name: str, epochs: int = 2) -> config.ExperimentConfig:
    """``name``'s smoke config at ``epochs`` epochs a stage."""
    return config.resolve(RAW[SMOKE[name]], "smoke", epochs=epochs)


def run(
    cfg: config.ExperimentConfig,
    resume: dict[str, Any] | None = None,
    checkpoints: list[dict[str, Any]] | None = None,
    shard: int = 0,
    parallel: bool = False,
    built: list[torch.Tensor] | None = None,
) -> tuple[torch.nn.Module, Method]:
    """The real loop on ResNet-20 and ``ClassBatches`` (each checkpoint through torch.save/load);
    ``built`` receives the parameters of the model as built, before any export replaces it."""
    torch.manual_seed(0)
    batches = ClassBatches(seed=shard)
    ctx = RunContext(CPU, (3, 8, 8), 10, batches, len(batches))
    if parallel:
        ctx.reduce, ctx.world_size = distributed.all_reduce_sum, 2
    model, method = build_model_and_method(cfg, ctx)
    if built is not None:
        built.extend(model.parameters())

    settings = LoopSettings(
        seed=0,
        device=CPU,
        progress=False,
        wrap=(lambda m: distributed.wrap_ddp(m, CPU)) if parallel else None,
        reduce=distributed.all_reduce_sum if parallel else None,
    )
    stages = config.plan(cfg, len(batches))
    trainer = Trainer(
        model,
        method,
        stages,
        batches,
        ClassBatches(seed=99, n=1),
        optimizer_factory(cfg, method),
        settings,
        keep_checkpoints(checkpoints),
        log=lambda s: None,
    )
    return trainer.run(resume), method


def states_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    return a == b


# ------------------------------------------------ the checks


def check_options(name: str) -> None:
    """Every shipped YAML of ``name`` spells out every option (an ``optional`` one where it differs
    from its default); every numeric option has a range, and
    a value outside it is a one-line ConfigError naming the file and the key."""
    Config = METHODS[name].Config
    fields = {f.name: f for f in dataclasses.fields(Config)}
    paths = [p for p, cfg in RAW.items() if cfg.method.name == name]
    assert paths, f"{name}: no shipped config"
    required = {k for k, f in fields.items() if not f.metadata.get("optional")}  # optional: may stay unwritten
    for path in paths:
        written = set(yaml.safe_load(path.read_text())["method"])
        assert required <= written <= set(fields), f"{path}: spell out every option"
    hints = typing.get_type_hints(Config)
    for key, f in fields.items():
        numeric = {int, float} & set(typing.get_args(hints[key]) or (hints[key],))
        if not numeric or hints[key] is bool:
            continue
        assert "range" in f.metadata, f"{name}.{key}: a numeric option declares its range (pruning.base.option)"
        bounds = f.metadata["range"]
        bad = next(
            (v for k, v in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)) if k in bounds for v in [bounds[k] + v]),
            None,
        )
        if bad is None:
            continue  # declared unbounded
        value = (
            [int(bad)] if "list" in str(hints[key]) else (int(bad) if int in numeric and float not in numeric else bad)
        )
        with pytest.raises(ConfigError) as err:
            config.load_config(paths[0], [f"method.{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])
        message = str(err.value)
        assert "\n" not in message and str(paths[0]) in message and f"method.{key}" in message, message


def check_exact_target(cfg: config.ExperimentConfig) -> None:
    """A masked method ends with exactly round(s N) of its N selected weights masked, and at zero."""
    model, method = run(cfg)
    if not isinstance(method, MaskedMethod):
        return  # no exact operating point promised
    selected = method.selected(model)
    masks = method.masker.masks
    assert set(masks) == set(selected), f"{cfg.method.name}: masks on other weights than it selects"
    total = sum(m.numel() for m in masks.values())
    removed = total - sum(int(m.sum()) for m in masks.values())
    slack = 0 if method.exact_target else len(masks)  # per-layer counts, each rounded on its own
    assert abs(removed - round(cfg.method.sparsity * total)) <= slack, (
        f"{cfg.method.name}: {removed} of {total} weights removed, target {round(cfg.method.sparsity * total)}"
    )
    assert all(torch.equal(selected[n][~m], torch.zeros_like(selected[n][~m])) for n, m in masks.items())


def check_resume(cfg: config.ExperimentConfig) -> None:
    """Killed after the middle epoch and resumed on a fresh model, a run ends exactly as the straight one."""
    checkpoints: list[dict[str, Any]] = []
    straight, method = run(cfg, checkpoints=checkpoints)
    middle = checkpoints[len(checkpoints) // 2 - 1]
    resumed, resumed_method = run(cfg, resume=middle)
    assert states_equal(straight.state_dict(), resumed.state_dict()), f"{cfg.method.name}: resumed model differs"
    assert states_equal(method.state_dict(), resumed_method.state_dict()), f"{cfg.method.name}: method state differs"


def check_frees(cfg: config.ExperimentConfig) -> None:
    """Once the model and the method of a finished run are dropped, the garbage collector frees
    them and every parameter the run built. (A hook on a tensor is held on the C++ side, out of the
    collector's sight: one that refers back to the tensor keeps it, and everything it reaches, for
    the life of the process.)"""
    built: list[torch.Tensor] = []
    model, method = run(cfg, built=built)
    refs = [weakref.ref(model), weakref.ref(method), *(weakref.ref(p) for p in built)]
    del model, method, built
    gc.collect()
    alive = sum(ref() is not None for ref in refs)
    assert alive == 0, f"{cfg.method.name}: {alive} of the run's model, method and parameters stay alive"


# ------------------------------------------------ the tests, one per method and check


@pytest.mark.parametrize("name", sorted(METHODS))
def test_options_are_spelled_out_and_range_checked(name: str) -> None:
    check_options(name)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_smoke_config(name: str) -> None:
    assert name in SMOKE, f"{name}: no config in the smoke profile"
    assert sum(1 for cfg in RAW.values() if cfg.method.name == name and "smoke" in cfg.profiles) == 1


@pytest.mark.parametrize("name", sorted(METHODS))
def test_operating_point_is_exact(name: str) -> None:
    check_exact_target(tiny(name))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_resume_equals_an_uninterrupted_run(name: str) -> None:
    check_resume(tiny(name))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_finished_run_is_freed(name: str) -> None:
    check_frees(tiny(name, epochs=1))


def _ranks(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.set_num_threads(1)
    states = {}
    for name in sorted(METHODS):
        model, method = run(tiny(name, epochs=1), shard=rank, parallel=True)
        states[name] = {"model": model.state_dict(), "method": method.state_dict()}
    torch.save(states, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def data_parallel(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every method's smoke config trained by two gloo processes, each on its own data."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_ranks, args=(f"file://{folder}/store", str(folder)), nprocs=2)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_data_parallel_processes_agree(name: str, data_parallel: list[dict[str, Any]]) -> None:
    first, second = (ranks[name] for ranks in data_parallel)
    assert states_equal(first["method"], second["method"]), f"{name}: the processes' method states differ"
    for key, value in first["model"].items():
        torch.testing.assert_close(second["model"][key], value, rtol=0, atol=0, msg=f"{name}: {key}")


def test_labels_and_colours_are_present_and_unique() -> None:
    variants = {METHODS[cfg.method.name].variant(cfg.method, cfg.optimizer) for cfg in RAW.values()}
    labels = [v.label for v in variants]
    assert len(labels) == len(set(labels)), "one label, one variant"
    for attribute in ("order", "color"):
        values = [getattr(v, attribute) for v in variants]
        assert None not in values and len(values) == len(set(values)), f"every variant has its own {attribute}"
    assert all(v.label and v.family in ("dense", "unstructured", "structured") for v in variants)


# ------------------------------------------------ the checks catch broken methods


@dataclasses.dataclass
class BrokenConfig(MaskedConfig):
    name: str = "broken"


class MissesItsTarget(MaskedMethod):
    """Random masks one weight short of the target."""

    Config = BrokenConfig

    def begin_stage(self, stage: Stage, model: torch.nn.Module) -> torch.nn.Module:
        weights = self.selected(model)
        total = sum(w.numel() for w in weights.values())
        density = {n: 1 - (round(self.cfg.sparsity * total) - 1) / total for n in weights}
        self.masker.set(random_masks({n: w.shape for n, w in weights.items()}, density))
        return model


class ResumesDifferently(MaskedMethod):
    """Prunes at random every epoch, from a generator it does not save: a resumed run draws anew."""

    Config = BrokenConfig

    def prepare(self, model: torch.nn.Module, ctx: RunContext) -> torch.nn.Module:
        self.generator = torch.Generator().manual_seed(1)
        return super().prepare(model, ctx)

    def end_epoch(self, model: torch.nn.Module, stage: Stage) -> None:
        weights = self.selected(model)
        shapes = {n: w.shape for n, w in weights.items()}
        self.masker.set(random_masks(shapes, dict.fromkeys(weights, 1 - self.cfg.sparsity), generator=self.generator))


class KeepsItsModel(MaskedMethod):
    """Counts its gradients with a hook that refers back to the method, which holds the model."""

    Config = BrokenConfig

    def prepare(self, model: torch.nn.Module, ctx: RunContext) -> torch.nn.Module:
        self.grads_seen = 0
        for p in model.parameters():
            p.register_post_accumulate_grad_hook(lambda p: setattr(self, "grads_seen", self.grads_seen + 1))
        return super().prepare(model, ctx)


@pytest.mark.parametrize(
    "broken, check",
    [(MissesItsTarget, check_exact_target), (ResumesDifferently, check_resume), (KeepsItsModel, check_frees)],
)
def test_a_broken_method_fails_the_contract(broken: type[Method], check: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "broken", broken)  # registered for this test only
    cfg = dataclasses.replace(tiny("snip"), method=BrokenConfig(sparsity=0.8))
    with pytest.raises(AssertionError, match="weights removed|differs|stay alive"):
        check(cfg)
    assert "broken" not in METHOD_CLASSES  # the classes have no ``name``: nothing else sees them
