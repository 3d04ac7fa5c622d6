"""Several processes: DistributedDataParallel set up from torchrun's environment, and run shards.

**Data parallel (one run, several processes).** ``torchrun --nproc_per_node N -m experiments.run
...`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) starts N copies of the runner; ``setup`` joins them into one process group
(NCCL on CUDA, each process on GPU ``LOCAL_RANK``; gloo on CPU). Each global batch of B images
is split into N shards of B / N (rank r takes images r, r + N, ...), the model is wrapped in
DistributedDataParallel, which averages the gradients over the processes before the optimizer
steps, so every process applies the same update to the same weights and optimizer state (xRDA's
included). Batch norm is synchronised (``SyncBatchNorm2d``): it normalises with the mean and
variance of the global batch, so a run on N processes computes what one process computes with
the same global batch, up to floating-point rounding (the order of the sums differs).

**Shards (several runs side by side).** ``take_shard(items, k, n)`` gives process k of n every
n-th (experiment, seed) pair: the n shards are disjoint and together hold every pair once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


# ---------------------------------------------------------------- process group


def launched() -> bool:
    """True when a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched as one of several; returns this process's device.

    Outside a launcher nothing happens and ``device`` is returned unchanged.
    """
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The process that writes files and prints (rank 0, or the only one)."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over every process (in place; returned for chaining)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every process (pickled; keep tensors on the CPU)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def to_device(tree: Any, device: torch.device) -> Any:
    """A copy of nested dicts / lists / tuples with every tensor moved to ``device``."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, device) for v in tree)
    return tree


# ---------------------------------------------------------------- synchronised batch norm


class _SumOverProcesses(torch.autograd.Function):
    """y = sum over processes of x; the gradient of x is the sum over processes of dL/dy.

    Each process's loss depends on every process's x through y, so the gradient of the sum of
    the processes' losses with respect to this process's x is sum_r dL_r/dy (DDP then averages).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training across several processes, uses the global batch's statistics.

    Per channel each process sums d = x - m and d^2 over its shard (n_r values; m is the running
    mean, a shift that keeps the sums small); one all-reduce gives S, Q and N = sum n_r, then
    mean = m + S / N and var = Q / N - (S / N)^2 (biased, for normalising; the running variance
    takes the unbiased var N / (N - 1), as nn.BatchNorm2d does). Gradients flow through the
    all-reduce. In eval mode, or with one process, it is nn.BatchNorm2d.
    Unlike torch.nn.SyncBatchNorm it also runs on CPU (gloo), and it stays an nn.BatchNorm2d
    with the same parameters, buffers and state_dict, so channel surgery and the methods'
    ``isinstance`` checks see no difference.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        c = x.shape[1]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 in float32; float64 stays float64
        # Sums of x - m, with m the running mean (the same on every process): Q / N - mean^2 then
        # subtracts small numbers, not mean^2 ~ var + mean^2, and loses no precision to a large mean.
        m = (
            self.running_mean.to(xf.dtype).clone() if self.running_mean is not None else xf.new_zeros(c)
        )  # updated below
        d = xf - m.view(1, c, 1, 1)
        local = torch.cat([d.sum((0, 2, 3)), d.square().sum((0, 2, 3)), xf.new_full((1,), xf.numel() // c)])
        total = _SumOverProcesses.apply(local)
        count = total[2 * c]
        shifted_mean = total[:c] / count
        var = (total[c : 2 * c] / count - shifted_mean.square()).clamp_min(0.0)
        mean = shifted_mean + m
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_((var.detach() * count / (count - 1)).to(self.running_var.dtype), factor)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale + (self.bias if self.affine else 0.0)
        return (xf * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)).to(x.dtype)


def sync_batch_norm(model: nn.Module) -> nn.Module:
    """Make every plain BatchNorm2d of ``model`` a SyncBatchNorm2d, in place (same tensors)."""
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncBatchNorm2d
    return model


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with synchronised batch norm, in DistributedDataParallel for forward and backward.

    The model itself is changed only by the batch-norm class; methods keep using it directly
    (penalties computed on it join the same backward, and their gradients are averaged too).
    """
    sync_batch_norm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def uneven_split(train_size: int, batch_size: int, world: int) -> str | None:
    """Why the batches of an epoch cannot be split evenly over ``world`` processes, or None.

    DDP averages the processes' mean losses, which is the global batch's mean loss only when
    every process holds as many images. The loop drops a last batch of one image.
    """
    if world <= 1:
        return None
    if batch_size % world:
        return f"data.batch_size {batch_size} is not a multiple of the {world} processes"
    last = train_size % batch_size
    if last > 1 and last % world:
        return (
            f"the last batch of an epoch holds {last} images ({train_size} % {batch_size}), not a multiple "
            f"of the {world} processes; choose data.max_train so that it is"
        )
    return None


# ---------------------------------------------------------------- shards of a run list


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (0 <= K < N) -> (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise ValueError(f"--shard {text}: expected K/N with 0 <= K < N, e.g. 0/4")
    return int(match[1]), int(match[2])


def take_shard(items: Sequence[T], k: int, n: int) -> list[T]:
    """Items k, k + n, k + 2n, ...: the n shards are disjoint and together hold every item."""
    if not 0 <= k < n:
        raise ValueError(f"shard {k} of {n}: need 0 <= k < n")
    return list(items[k::n])


def share_from_main(obj: Any, device: torch.device) -> Any:
    """Rank 0's ``obj`` (tensors on the CPU) on every process, its tensors moved to ``device``."""
    return to_device(broadcast_object(obj if is_main() else None), device)
