"""The one training loop every method runs through.

It knows nothing of YAML: the runner hands it a model, a method, batches, and a
factory that builds a stage's optimizers and schedulers. Per step it does one forward,
one backward and the optimizer steps, accumulating loss and accuracy on the device; the
host reads them once per epoch (no per-step syncs). The RNG is re-seeded from
(seed, epoch) at every epoch, so a run resumed from its last checkpoint repeats exactly
what an uninterrupted one would have done.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pruning.base import Batches, Method, Stage
from training.data import derive_seed

Optimizers = tuple[list[torch.optim.Optimizer], list[Any]]


class TrainingDiverged(RuntimeError):
    """The training or test loss, or a weight, became NaN or infinite."""


_stop = {"requested": False}


def request_stop(signum: int | None = None, frame: object = None) -> None:
    """A signal handler: stop the training (KeyboardInterrupt, so that it unwinds like Ctrl-C). The
    request is also kept, and every step and evaluation batch checks it: an exception raised where
    Python ignores exceptions (a destructor running at that moment) would otherwise be lost and the
    run go on. Only the first signal raises: a second one (a job scheduler and ``run_all.sh`` both
    sending SIGTERM) would otherwise interrupt the runner while it reports and exits."""
    first = not _stop["requested"]
    _stop["requested"] = True
    if first:
        raise KeyboardInterrupt


def check_stop() -> None:
    if _stop["requested"]:
        raise KeyboardInterrupt


def clear_stop() -> None:
    """Forget an earlier request (a runner starting its runs in a process that stopped before)."""
    _stop["requested"] = False


@dataclass
class LoopSettings:
    seed: int
    device: torch.device
    label_smoothing: float = 0.0
    bf16: bool = False  # autocast to bfloat16 (CUDA only)
    test_each_epoch: bool = True  # False: the history has no test loss / accuracy
    compile: bool = False
    progress: bool = True
    # Several processes (set by the runner): ``wrap`` puts the model in DistributedDataParallel for
    # forward and backward; ``reduce`` sums a tensor over the processes (epoch totals, evaluation).
    wrap: Callable[[nn.Module], nn.Module] | None = None
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Replaying a run (experiments.verify): keep the training loss of the first ``trace_steps`` steps
    # (read once, at the end of their epoch), and stop before step ``stop_after_steps`` + 1.
    trace_steps: int = 0
    stop_after_steps: int | None = None


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def totals(
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    count: int,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, int, int]:
    """(loss sum, correct, count) as numbers, summed over the processes by ``reduce`` if given."""
    if reduce is None:
        return loss_sum.item(), correct.item(), count
    count_t = loss_sum.new_tensor(count, dtype=torch.float64)
    summed = reduce(torch.stack([loss_sum.double(), correct.double(), count_t]))
    loss, right, n = summed.tolist()
    return loss, round(right), round(n)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Batches,
    device: torch.device,
    bf16: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction) over ``batches``, one host sync.

    With ``reduce`` (several processes, each holding a shard of the test set) the sums are
    taken over every process's shard, so every process gets the same numbers.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in batches.epoch(0):
        check_stop()
        with autocast(device, bf16):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
        count += len(y)
    model.train(was_training)
    loss, right, count = totals(loss_sum, correct, count, reduce)
    return loss / max(count, 1), right / max(count, 1)


def check_finite(model: nn.Module, epoch: int, stage: str, **losses: float | None) -> None:
    """Raise TrainingDiverged if a loss or any parameter is NaN or infinite (one host sync)."""
    for name, value in losses.items():
        if value is not None and not math.isfinite(value):
            what = {"train_loss": "training loss", "val_loss": "validation loss", "test_loss": "test loss"}[name]
            raise TrainingDiverged(
                f"{what} is {value} in epoch {epoch} ({stage}); lower the learning rate or the penalty"
            )
    params = [p.detach() for p in model.parameters()]
    if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
        bad = next(n for n, p in model.named_parameters() if not bool(p.isfinite().all()))
        raise TrainingDiverged(
            f"weights of {bad} are not finite in epoch {epoch} ({stage}); lower the learning rate or the penalty"
        )


class Trainer:
    """Runs a method's stages; ``on_epoch(state)`` receives a checkpointable state dict."""

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        stages: list[Stage],
        train_batches: Batches,
        test_batches: Batches,
        make_optimizers: Callable[[Stage, nn.Module], Optimizers],
        settings: LoopSettings,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        log: Callable[[str], None] = print,
        val_batches: Batches | None = None,
    ) -> None:
        self.model = model
        self.method = method
        self.stages = stages
        self.train_batches = train_batches
        self.val_batches = val_batches  # held out of training: what hyperparameters are chosen on
        self.test_batches = test_batches
        self.make_optimizers = make_optimizers
        self.settings = settings
        self.on_epoch = on_epoch
        self.log = log
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.elapsed = 0.0
        self.step_losses: list[float] = []  # of the first settings.trace_steps steps
        self.stopped = False  # settings.stop_after_steps reached

    def _forward_model(self) -> nn.Module:
        model = self.settings.wrap(self.model) if self.settings.wrap is not None else self.model
        return torch.compile(model) if self.settings.compile else model

    def run(self, resume: dict[str, Any] | None = None) -> nn.Module:
        """Train every stage (from ``resume``, a checkpoint, if given); returns the model."""
        done_stage, done_epochs = -1, 0
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            self.method.load_state_dict(resume["method"])
            self.history = list(resume["history"])
            self.step, self.elapsed = resume["step"], resume["elapsed"]
            done_stage, done_epochs = resume["stage"], resume["stage_epoch"]
        for k, stage in enumerate(self.stages):
            if k < done_stage or (k == done_stage and done_epochs >= stage.epochs):
                continue
            if k == done_stage:  # resuming inside this stage: its beginning already happened
                optimizers, schedulers = self.make_optimizers(stage, self.model)
                for opt, state in zip(optimizers, resume["optimizers"]):
                    opt.load_state_dict(state)
                for sched, state in zip(schedulers, resume["schedulers"]):
                    sched.load_state_dict(state)
                first = done_epochs
            else:
                torch.manual_seed(derive_seed(self.settings.seed, 2, k))
                self.model = self.method.begin_stage(stage, self.model)
                optimizers, schedulers = self.make_optimizers(stage, self.model)
                first = 0
            if self.method.ctx is not None:  # the stage's optimizers, for methods that reset their state
                self.method.ctx.optimizers = optimizers
            forward = self._forward_model()
            for e in range(first, stage.epochs):
                self._epoch(k, stage, e, forward, optimizers, schedulers)
                if self.stopped:
                    return self.model
        return self.model

    def _epoch(
        self,
        k: int,
        stage: Stage,
        e: int,
        forward: nn.Module,
        optimizers: list[torch.optim.Optimizer],
        schedulers: list[Any],
    ) -> None:
        device = self.settings.device
        epoch = len(self.history) + 1
        torch.manual_seed(derive_seed(self.settings.seed, 1, epoch))  # dropout, gate noise: same on resume
        start = time.perf_counter()
        lr = optimizers[0].param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        count = 0
        self.model.train()
        bar = tqdm(
            self.train_batches.epoch(epoch),
            total=len(self.train_batches),
            leave=False,
            desc=f"{stage.name} {e + 1}/{stage.epochs}",
            disable=not self.settings.progress or None,
            mininterval=1.0,
        )
        limit, traced = self.settings.stop_after_steps, []
        for x, y in bar:
            check_stop()
            if limit is not None and self.step >= limit:
                self.stopped = True
                break
            with autocast(device, self.settings.bf16):
                out = forward(x)
                loss = F.cross_entropy(out, y, label_smoothing=self.settings.label_smoothing)
            total = loss
            if stage.penalty:
                penalty = self.method.penalty(self.model)
                if penalty is not None:
                    total = loss + penalty
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            total.backward()
            for opt in optimizers:
                opt.step()
            self.method.after_step(self.model, self.step)
            if self.step < self.settings.trace_steps:
                traced.append(loss.detach().float())
            self.step += 1
            loss_sum += loss.detach().float() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
            count += len(y)
        if traced:
            self.step_losses += torch.stack(traced).tolist()
        if self.stopped:  # a replay of the first steps: no epoch end, no history row
            return
        for sched in schedulers:
            sched.step()
        self.method.end_epoch(self.model, stage)
        loss_total, correct_total, count = totals(loss_sum, correct, count, self.settings.reduce)
        train_loss = loss_total / max(count, 1)
        reduce, bf16 = self.settings.reduce, self.settings.bf16
        val_loss, val_acc = (
            evaluate(self.model, self.val_batches, device, bf16, reduce)
            if self.val_batches is not None
            else (None, None)
        )
        test_loss, test_acc = (
            evaluate(self.model, self.test_batches, device, bf16, reduce)
            if self.settings.test_each_epoch
            else (None, None)
        )
        check_finite(self.model, epoch, stage.name, train_loss=train_loss, val_loss=val_loss, test_loss=test_loss)
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        row = {
            "epoch": epoch,
            "stage": stage.name,
            "stage_epoch": e + 1,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": correct_total / max(count, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "sparsity": float(self.method.sparsity(self.model)),
            "seconds": seconds,
        }
        self.history.append(row)
        val = f" val {val_loss:.4f}/{val_acc:.4f}" if val_loss is not None else ""
        test = f" test {test_loss:.4f}/{test_acc:.4f}" if test_loss is not None else ""
        self.log(
            f"epoch {epoch:4d} {stage.name} {e + 1}/{stage.epochs} lr {lr:.4g} "
            f"train {row['train_loss']:.4f}/{row['train_acc']:.4f}{val}{test} "
            f"sparsity {row['sparsity']:.4f} {seconds:.1f}s"
        )
        if self.on_epoch is not None:
            self.on_epoch(
                {
                    "stage": k,
                    "stage_epoch": e + 1,
                    "step": self.step,
                    "elapsed": self.elapsed,
                    "model": self.model.state_dict(),
                    "method": self.method.state_dict(),
                    "optimizers": [o.state_dict() for o in optimizers],
                    "schedulers": [s.state_dict() for s in schedulers],
                    "history": self.history,
                }
            )
