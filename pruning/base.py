"""The interface every method implements to plug into the one training loop.

A method is a small class in ``pruning/methods/``; defining it (a subclass of ``Method`` with a
``name``) registers it: ``pruning.registry.METHODS`` maps each name to its class, and YAML files
select it with ``method: {name: ...}``. The loop (training/loop.py) calls its hooks in this order:

    method = Method(cfg)                          # the validated config (method.cfg)
    model = method.prepare(model, ctx)            # wrap the dense model (gates, masks); ctx: RunContext
    for k, stage in enumerate(method.stages(train_epochs)):
        model = method.begin_stage(stage, model)  # prune, rewind, ...; then the stage's optimizers are built:
        #   method.param_groups(model)  -> the main optimizer's parameter groups
        #   method.extra_optimizers(model) -> optimizers of the method's own (e.g. the gates' Adam)
        for each epoch of the stage:
            for each batch:
                loss = cross_entropy + method.penalty(model)   # (no penalty in a stage with penalty=False)
                backward; every optimizer steps
                method.after_step(model, step)    # step counts from 0 over the whole run
            method.end_epoch(model, stage)
    final = method.export(model)                  # the sparse model that is measured
    method.metrics(final)                         # its own entries of metrics.json

On resume (a run killed mid-way): ``prepare`` runs again on a freshly built model, then the
model's state_dict and ``method.load_state_dict`` are restored from the checkpoint, and
``begin_stage`` is *not* re-run for the stage that was in progress (its optimizers are rebuilt
and their state restored). Everything a method must remember across epochs (masks, saved
weights, the step of its last update) therefore lives in ``state_dict()``.

``ctx.optimizers`` holds the current stage's optimizers while it trains (a method that resets
optimizer state, such as RigL's regrown weights, reads them in ``after_step``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn

from pruning.accounting import weight_sparsity


def option(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    epochs: bool = False,
    unbounded: bool = False,
    optional: bool = False,
) -> Any:
    """A config field with its valid range, checked when a config is loaded (``training.schema``):
    ``ge`` / ``gt`` / ``le`` / ``lt`` bound the value (every element of a list; None passes);
    ``unbounded``: every value is valid, said explicitly (a method's numeric options all declare a range).
    ``epochs``: a count of epochs, which profiles scale with the training budget. ``optional``: an
    option added after runs were recorded, written into a resolved config only where it differs
    from its default, so that those runs' resolved configs keep their text (and stay finished)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    metadata = ({"range": bounds} if bounds or unbounded else {}) | ({"epochs": True} if epochs else {})
    metadata |= {"optional": True} if optional else {}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def epochs_field(default: int, ge: int = 1, optional: bool = False) -> Any:
    """A count of epochs (at least ``ge``): profiles scale it with the training budget."""
    return option(default, ge=ge, epochs=True, optional=optional)


@dataclass(frozen=True)
class Duration:
    """A point or a span of training, in iterations (``"2000it"``) or epochs (``"2ep"``, ``"0.5ep"``).

    Methods turn it into optimizer steps with ``steps(steps_per_epoch)``. Profiles move it with
    the training budget (``training.config``): an epoch count is scaled like every epoch field,
    and an iteration count becomes the same fraction of the shortened training, in epochs.
    """

    value: float
    unit: Literal["it", "ep"]

    LIMIT: ClassVar[float] = 1e12  # far beyond any training, and exact as a float
    PATTERN: ClassVar[re.Pattern[str]] = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(it|ep)\s*")

    @classmethod
    def parse(cls, value: Any) -> Duration:
        """``"2000it"``, ``"2ep"`` or ``"0.5ep"``; a plain integer counts iterations."""
        if isinstance(value, Duration):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= cls.LIMIT:
                raise ValueError(f"expected a duration in 0..{cls.LIMIT:g}, got {str(value)[:20]}")
            return cls(float(value), "it")
        match = cls.PATTERN.fullmatch(value) if isinstance(value, str) and len(value) < 100 else None
        if match is None:
            raise ValueError(f"expected a duration such as 2000it, 2ep or 0.5ep, got {str(value)[:60]!r}")
        number, unit = float(match[1]), match[2]
        if not number <= cls.LIMIT:  # also refuses inf
            raise ValueError(f"expected a duration of at most {cls.LIMIT:g}, got {value!r}")
        if unit == "it" and number != int(number):
            raise ValueError(f"expected a whole number of iterations, got {value!r}")
        return cls(number, unit)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{int(self.value)}it" if self.unit == "it" else f"{self.value:g}ep"

    def steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps; a nonzero duration is at least one step."""
        steps = self.value if self.unit == "it" else self.value * steps_per_epoch
        return max(1, round(steps)) if self.value > 0 else 0

    def check_within(self, key: str, steps_per_epoch: int, epochs: int) -> None:
        """ValueError naming ``key`` if this point lies beyond ``epochs`` of training."""
        step, total = self.steps(steps_per_epoch), steps_per_epoch * epochs
        if step > total:
            raise ValueError(f"{key}: {self} (step {step}) is beyond the training's {total} steps")


def duration_field(default: str) -> Any:
    """A config field holding a ``Duration`` (written as text in YAML)."""
    return field(default_factory=lambda: Duration.parse(default), metadata={"duration": True})


@dataclass
class Schedule:
    """Learning-rate schedule of one stage; milestones are epochs of that stage."""

    name: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = option(default_factory=list, ge=1, epochs=True)
    gamma: float = option(0.1, gt=0.0)

    def __post_init__(self) -> None:
        if self.milestones and self.name != "multistep":
            raise ValueError(f"milestones: only a multistep schedule has milestones, not {self.name}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones: must increase, got {self.milestones}")


@dataclass
class Stage:
    """One call of the training loop: ``epochs`` epochs with a fresh optimizer."""

    name: str
    epochs: int
    lr: float | None = None  # None: the optimizer config's lr
    schedule: Schedule | None = None  # None: the train config's schedule
    penalty: bool = True  # False: method.penalty is not added (fine-tuning)


@dataclass
class MethodConfig:
    name: str


class Batches(Protocol):
    """Batches of one split: ``epoch(e)`` yields (inputs, labels) on the run's device."""

    def epoch(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...


def _no_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass
class RunContext:
    """What a method may know of the run it is part of; handed to ``Method.prepare``.

    ``train_batches`` are this process's training batches: ``epoch(e)`` depends only on (seed, e),
    and the loop trains on epochs 1, 2, ..., so ``epoch(0)`` is a fixed draw that training never
    sees (data-driven methods such as SNIP score on it). ``reduce`` sums a tensor over the
    processes of a data-parallel run, in place (the identity with one process): a method that
    computes something from data must reduce it, so that every process decides the same thing.
    """

    device: torch.device
    input_shape: tuple[int, ...]  # (C, H, W) of one input
    num_classes: int
    train_batches: Batches
    steps_per_epoch: int
    seed: int = 0
    reduce: Callable[[torch.Tensor], torch.Tensor] = _no_reduce
    world_size: int = 1
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)  # the current stage's (set by the loop)


@dataclass
class ExtraOptimizer:
    """Parameters a method trains with an optimizer of their own, not the experiment's.

    ``schedule``: None follows the stage's learning-rate schedule (decays with the weights);
    a Schedule of its own otherwise (e.g. constant).
    """

    params: list[nn.Parameter]
    kind: Literal["adam"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Variant:
    """How reports name and draw a run of a method: one entry per distinguishable variant.

    ``order`` places it in every legend and table (smaller first; gaps of 10 leave room for new
    variants); ``color`` is its fixed colour in every figure (None: one derived from the label).
    ``main`` is False for ablations of a method's optimizer, which the headline figures leave out.
    """

    label: str
    family: Literal["dense", "unstructured", "structured"]
    order: int
    color: str | None = None
    main: bool = True


METHOD_CLASSES: dict[str, type[Method]] = {}  # filled as method classes are defined (pruning.registry)


class Method:
    """A method that changes nothing: the dense control. Subclasses override hooks.

    A subclass that sets ``name`` is a method the YAML can name; one without (a shared base such
    as ``MaskedMethod``) is not registered.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    requires_optimizer: ClassVar[str | None] = None  # the experiment's optimizer must be this one
    variant_info: ClassVar[Variant | None] = None  # the one variant of a single-variant method

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name:
            if name in METHOD_CLASSES and METHOD_CLASSES[name] is not cls:
                raise TypeError(f"method name {name!r} is defined twice")
            METHOD_CLASSES[name] = cls

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg
        self.ctx: RunContext | None = None

    # ------------------------------------------------ training hooks

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        self.ctx = ctx
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Parameter groups of the experiment's optimizer; options override the optimizer's.
        Parameters handed to ``extra_optimizers`` must not appear here."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def extra_optimizers(self, model: nn.Module) -> list[ExtraOptimizer]:
        """Optimizers of the method's own parameters (built with each stage's optimizers)."""
        return []

    def stages(self, train_epochs: int) -> list[Stage]:
        return [Stage("train", train_epochs)]

    @classmethod
    def rehearsal_options(cls, cfg: MethodConfig) -> MethodConfig:
        """``cfg`` at the smallest sizes of data the method accepts, for the ``rehearsal`` profile (a
        hundred-odd images, every stage at toy size): by default unchanged; a method whose options
        ask for more data than a rehearsal holds (GraSP's images of every class) lowers them."""
        return cfg

    def check_budget(self, steps_per_epoch: int, train_epochs: int) -> None:
        """Raise ValueError, starting with the option's name, if the config cannot run in a main
        stage of ``train_epochs`` epochs of ``steps_per_epoch`` steps (checked before training)."""

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        return model

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step; ``step`` counts from 0 over the whole run."""

    def end_epoch(self, model: nn.Module, stage: Stage) -> None:
        pass

    def sparsity(self, model: nn.Module) -> torch.Tensor:
        """Weight sparsity logged each epoch (0-d tensor, no host sync); gates may override."""
        return weight_sparsity(model)

    def export(self, model: nn.Module) -> nn.Module:
        """The final model to measure: masks folded in, channels physically removed."""
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        """Method-specific entries for metrics.json, computed on the exported model."""
        return {}

    # ------------------------------------------------ how reports name a run

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: Any) -> Variant:
        """The variant a run of this method is (``optimizer``: the run's optimizer config)."""
        if cls.variant_info is None:
            raise NotImplementedError(f"{cls.__name__} declares neither variant_info nor variant()")
        return cls.variant_info

    @classmethod
    def operating_point(cls, cfg: MethodConfig) -> str:
        """The knob that sets a run's sparsity, e.g. "lam 1e-05" or "target 80%"; "" for none."""
        return ""


def sparsity_point(sparsity: float) -> str:
    """The operating point of a method aiming at a weight sparsity."""
    return f"target {100 * sparsity:g}%"


def lam_point(lam: float) -> str:
    return f"lam {lam:.1e}"
