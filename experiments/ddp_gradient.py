"""One step's gradient under several processes against the full batch's gradient in one process.

``torchrun --nproc_per_node N -m experiments.ddp_gradient CONFIG --json OUT.json`` builds the
config's model and method as a run does (same seed), takes the first global batch of its first
epoch (each process its shard, as a run shards it; the shards are gathered to rebuild the global
batch), and on every process compares

- the gradient DistributedDataParallel leaves after one forward and backward of the shards
  (averaged over the processes, batch norm synchronised, the method's penalty included), with
- the gradient of one model, plain batch norm, on the whole global batch,

for every parameter, and the batch-norm running statistics that step leaves. Both are computed in
float64, so they agree up to the order of the sums: float64's unit roundoff is 1.1e-16 and a
gradient entry sums at most batch x 32 x 32 (about 1.3e5 at batch 128) terms, so rounding moves it
by well under 1e-10 of the tensor's largest entry; ``TOLERANCE`` (1e-8 of it) leaves a wide margin
above that, while a reduction error (a sum not averaged, a process's share lost, batch norm on the
shard alone) moves the gradient by a sizeable fraction of its scale. The same holds on any device
and backend (gloo, NCCL), nondeterministic kernels included: they too only reorder sums.

The JSON (written by rank 0) has each process's largest difference relative to the tensor's
scale, the tolerance and the verdict; the exit status is 0 when every process is within it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from training import distributed
from training.build import build_data, build_model_and_method, run_context
from training.config import load_config, plan

TOLERANCE = 1e-8  # largest |DDP - full batch| over a tensor, relative to that tensor's largest |entry|


def first_global_batch(train_batches: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This process's shard (x, y) of the first batch of epoch 1, and the global batch's images and
    labels rebuilt from every process's shard (rank r holds images r, r + N, ...)."""
    x, y = next(iter(train_batches.epoch(1)))
    world = distributed.world_size()
    if world == 1:
        return x, y, torch.cat([x.flatten(1), y.unsqueeze(1).to(x.dtype)], 1)
    flat = torch.cat([x.flatten(1), y.unsqueeze(1).to(x.dtype)], 1).contiguous()
    parts = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(parts, flat)
    merged = torch.empty((world * len(flat), flat.shape[1]), dtype=flat.dtype, device=flat.device)
    for r, part in enumerate(parts):
        merged[r::world] = part
    return x, y, merged


def one_step(
    model: nn.Module, forward: nn.Module, method: Any, x: torch.Tensor, y: torch.Tensor, penalty: bool
) -> None:
    """The loop's forward and backward of one batch (cross-entropy, plus the method's penalty)."""
    loss = F.cross_entropy(forward(x), y)
    if penalty and (extra := method.penalty(model)) is not None:
        loss = loss + extra
    loss.backward()


def compare(config: Path, data_root: Path, device: torch.device, overrides: list[str], profile: str) -> dict[str, Any]:
    cfg = load_config(config, overrides, profile)
    seed = 0
    train_b, _, _, data_info = build_data(cfg, data_root, device, seed, cuda_fast=False)
    torch.manual_seed(seed)
    ctx = run_context(device, data_info, train_b, seed)
    model, method = build_model_and_method(cfg, ctx)
    stage = plan(cfg, ctx.steps_per_epoch)[0]
    model = method.begin_stage(stage, model)
    model.double()
    x, y, merged = first_global_batch(train_b, device)
    x, y = x.double(), y
    full_x = merged[:, :-1].reshape(-1, *x.shape[1:]).double()
    full_y = merged[:, -1].round().long()

    # One process, the whole global batch, plain batch norm.
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    one_step(model, model, method, full_x, full_y, stage.penalty)
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    ref_buffers = {n: b.clone() for n, b in model.named_buffers() if b.is_floating_point()}

    # The same weights, each process its shard, through DistributedDataParallel.
    model.load_state_dict(start)
    model.zero_grad(set_to_none=True)
    forward = distributed.wrap_ddp(model, device) if distributed.active() else model
    one_step(model, forward, method, x, y, stage.penalty)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b for n, b in model.named_buffers() if b.is_floating_point()}

    worst, where = 0.0, None
    missing = sorted(set(reference) ^ set(grads))
    for kind, mine, ref in (("gradient", grads, reference), ("buffer", buffers, ref_buffers)):
        for name in sorted(set(mine) & set(ref)):
            scale = float(ref[name].abs().max())
            diff = float((mine[name] - ref[name]).abs().max()) / (scale if scale > 0 else 1.0)
            if diff > worst or where is None:
                worst, where = diff, f"{kind} {name}"
    return {
        "rank": distributed.rank(),
        "shard": len(y),
        "global_batch": len(full_y),
        "tensors": len(reference) + len(ref_buffers),
        "max_rel_diff": worst,
        "at": where,
        "missing_gradients": missing,
        "within": worst <= TOLERANCE and not missing,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="experiments.ddp_gradient", description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--profile", default="smoke")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--data-root", type=Path, default=None, help="default: $DATA_ROOT, else ./data")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path, default=None, help="where rank 0 writes the result")
    args = p.parse_args(argv)
    data_root = args.data_root or Path(os.environ.get("DATA_ROOT") or "data")
    device = distributed.setup(torch.device(args.device))
    try:
        found = compare(args.config, data_root, device, args.overrides, args.profile)
        every = [found]
        if distributed.active():
            every = [None] * distributed.world_size()
            dist.all_gather_object(every, found)
    finally:
        distributed.teardown()
    result = {
        "processes": len(every),
        "dtype": "float64",
        "tolerance": TOLERANCE,
        "tolerance_means": "max |DDP - full batch| over a tensor / max |full batch| of that tensor",
        "ranks": every,
        "within": all(r["within"] for r in every),
    }
    if found["rank"] == 0:
        if args.json:
            from training.records import atomic_write_json

            atomic_write_json(args.json, result)
        print(json.dumps(result, indent=2))
    return 0 if result["within"] else 1


if __name__ == "__main__":
    sys.exit(main())
