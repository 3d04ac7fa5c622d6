"""Data-parallel runs: two gloo processes train exactly what one process trains with the same global batch."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.run import main
from tests.conftest import ROOT, write_cifar10
from training import distributed

# xRDA (its state must stay identical on every rank), BN everywhere, two epochs with a schedule step.
CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 2, schedule: {name: cosine}}
optimizer: {name: rda, lr: 0.2, momentum_timescale: 5.0, weight_decay: 5.0e-4}
method: {name: rda, lam: 2.0e-4, reweight: log}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two(argv: list[str] | list[list[str]], timeout: float = 240) -> list[subprocess.CompletedProcess[str]]:
    """``python ARGV`` as ranks 0 and 1 of a gloo group (the environment torchrun sets); their outcomes.
    ``argv`` may be a list of two, one for each rank."""
    per_rank = argv if argv and isinstance(argv[0], list) else [argv, argv]
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(ROOT),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, *per_rank[rank]],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    done = []
    for p in procs:
        try:
            out = p.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two processes did not finish (a collective waiting for the other rank?)")
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out))
    return done


def run_two_processes(args: list[str], results: list[Path]) -> None:
    """``python -m experiments.run ARGS`` as ranks 0 and 1 (the environment torchrun sets), rank k writing
    to results[k]."""
    runs = launch_two([["-m", "experiments.run", *args, "--results", str(r)] for r in results])
    outputs = [run.stdout for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    assert "[done]" in outputs[0] and "[done]" not in outputs[1]  # only rank 0 prints


def load(run_dir: Path) -> tuple[dict, dict]:
    return (
        torch.load(run_dir / "checkpoint.pt", weights_only=True),
        json.loads((run_dir / "metrics.json").read_text()),
    )


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data", per_batch=16, test=24)  # 80 train images: batches 32, 32, 16
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    common = [str(config), "--data-root", str(data), "--device", "cpu", "--no-progress"]
    assert main([*common, "--results", str(tmp_path / "single")]) == 0
    ranks = [tmp_path / "rank0", tmp_path / "rank1"]
    run_two_processes(common, ranks)

    assert not ranks[1].exists()  # rank 1 trained too, but wrote nothing
    run_dir = ranks[0] / "tiny" / "seed0"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.yaml",
        "env.json",
        "history.csv",
        "metrics.json",
    ]
    assert json.loads((run_dir / "env.json").read_text())["processes"] == 2
    single, single_metrics = load(tmp_path / "single" / "tiny" / "seed0")
    ddp, ddp_metrics = load(run_dir)
    assert ddp["step"] == single["step"] == 6  # 3 global batches per epoch, not 3 per process
    # Float tolerance: the sums run in another order (observed: max |difference| about 1e-5 after
    # 6 steps; with per-process batch norm instead of synchronised, 7e-2).
    for name, w in single["model"].items():
        torch.testing.assert_close(ddp["model"][name], w, rtol=1e-4, atol=5e-5)
    for a, b in zip(ddp["optimizers"][0]["state"].values(), single["optimizers"][0]["state"].values()):
        for key in b:  # xRDA's z, v, r, beta: the same on the ranks as in one process, up to rounding
            # amplified by training. omega = M / (1 + (M - 1) r / max r), M = 500, is steep for small r, so
            # beta amplifies rounding up to M times. v averages gradients, and 1e-5 weight differences move
            # its small entries (observed: up to 1.6% of max |v| after 6 steps on an AMD EPYC), so v is
            # compared at 5% of its scale; a gradient summed instead of averaged would be off by 100%.
            atol = max(5e-5, 5e-2 * float(b[key].abs().max())) if key == "v" else 5e-5
            torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=atol)
    for key in ("train_loss", "test_loss", "sparsity"):
        assert ddp_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-6), key
    # Accuracies are counts over the whole test set (shards summed), not over rank 0's half.
    assert ddp_metrics["test_acc"] == single_metrics["test_acc"] and ddp_metrics["test_size"] == 24
    assert ddp_metrics["train_acc"] == single_metrics["train_acc"]

    # Resume: rank 1 has no files; it gets rank 0's decision and checkpoint.
    (run_dir / "metrics.json").unlink()
    run_two_processes(common, ranks)
    assert not ranks[1].exists()
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["test_acc"] == ddp_metrics["test_acc"] and resumed["test_loss"] == ddp_metrics["test_loss"]


def test_batches_that_do_not_split_evenly_are_refused(tmp_path: Path) -> None:
    assert distributed.uneven_split(100, 32, 1) is None
    assert distributed.uneven_split(80, 32, 2) is None  # last batch 16
    assert distributed.uneven_split(65, 32, 2) is None  # last batch of 1 image is dropped by the loop
    assert "not a multiple of the 4 processes" in distributed.uneven_split(100, 30, 4)
    assert "last batch of an epoch holds 3 images" in distributed.uneven_split(67, 32, 2)


def test_sync_batch_norm_is_batch_norm_in_one_process() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4, momentum=None))
    reference = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    distributed.sync_batch_norm(model)
    assert all(type(model[i]) is distributed.SyncBatchNorm2d and isinstance(model[i], nn.BatchNorm2d) for i in (1, 3))
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # the same tensors
    x = torch.randn(5, 3, 6, 6)
    for mode in (True, False):
        model.train(mode)
        reference.train(mode)
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_outside_a_launcher_there_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and distributed.setup(torch.device("cpu")) == torch.device("cpu")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main(), distributed.active()) == (
        0,
        1,
        True,
        False,
    )
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    moved = distributed.to_device({"x": [torch.ones(1), (torch.zeros(1), 3)]}, torch.device("meta"))
    assert moved["x"][0].device.type == "meta" and moved["x"][1][0].device.type == "meta" and moved["x"][1][1] == 3


# Run on both ranks: the gradient check under a correct reduction and under three broken ones, each
# put in by replacing what the project's DDP wrapper and synchronised batch norm use.
FAULTS = """
import json, sys
import torch.distributed as dist
from experiments import ddp_gradient
from training import distributed

wrap, sum_over = distributed.wrap_ddp, distributed._SumOverProcesses.apply

def with_hook(fault):
    def hook(state, bucket):
        grad = bucket.buffer()
        if fault == "drop rank 1" and dist.get_rank() == 1:
            grad.zero_()  # rank 1's share never arrives
        divide = 1 if fault == "sum, not averaged" else dist.get_world_size()
        return dist.all_reduce(grad, async_op=True).get_future().then(lambda f: f.value()[0] / divide)

    def wrap_ddp(model, device):
        ddp = wrap(model, device)
        ddp.register_comm_hook(None, hook)
        return ddp

    return wrap_ddp

config, data = sys.argv[1:3]
verdicts = {}
for fault in ("none (hook averages)", "sum, not averaged", "drop rank 1", "batch norm on the shard"):
    distributed.wrap_ddp = with_hook(fault) if fault != "batch norm on the shard" else wrap
    distributed._SumOverProcesses.apply = (lambda t: t) if fault == "batch norm on the shard" else sum_over
    found = ddp_gradient.compare(config, data, distributed.setup(ddp_gradient.torch.device("cpu")), [], "smoke")
    verdicts[fault] = [found["within"], found["max_rel_diff"]]
print("VERDICTS " + json.dumps(verdicts))
"""


def test_the_gradient_check_passes_a_correct_reduction_and_fails_a_broken_one(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data", per_batch=16, test=24)
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    runs = launch_two(["-c", FAULTS, str(config), str(data)])
    assert [r.returncode for r in runs] == [0, 0], runs[0].stdout
    verdicts = [json.loads(r.stdout.split("VERDICTS ")[1]) for r in runs]
    for rank_verdicts in verdicts:
        assert rank_verdicts.pop("none (hook averages)")[0]  # a comm hook as such changes nothing
        for fault, (within, diff) in rank_verdicts.items():
            assert not within and diff > 1e-3, (fault, diff)
