"""Several runner processes side by side: shards of the (experiment, seed) pairs are disjoint and complete."""

import itertools
import re
import subprocess
from pathlib import Path

import pytest

from experiments.run import main
from tests.conftest import ROOT
from training.distributed import parse_shard, take_shard

CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 1}
optimizer: {name: sgd, lr: 0.05}
"""


@pytest.mark.parametrize("items,n", [(10, 1), (10, 3), (7, 7), (3, 5), (0, 2)])
def test_shards_are_disjoint_complete_and_balanced(items: int, n: int) -> None:
    pairs = [(f"exp{i // 2}", i % 2) for i in range(items)]
    shards = [take_shard(pairs, k, n) for k in range(n)]
    assert sorted(itertools.chain(*shards)) == sorted(pairs)  # every pair once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_takes_every_nth_pair() -> None:
    assert take_shard(list(range(7)), 1, 3) == [1, 4] and take_shard(list(range(7)), 0, 3) == [0, 3, 6]


def test_shard_text_is_validated() -> None:
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("4/4", "1", "-1/3", "a/b", "1/0"):
        with pytest.raises(ValueError, match="expected K/N"):
            parse_shard(bad)
    with pytest.raises(ValueError):
        take_shard([1, 2], 2, 2)


def listed(capsys: pytest.CaptureFixture, folder: Path, shard: str) -> list[tuple[str, int]]:
    assert main([str(folder), "--list", "--seeds", "2", "--shard", shard]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [(m[1], int(m[2])) for line in lines if (m := re.fullmatch(r"  (\S+) seed (\d+)", line))]


def test_runner_shards_split_every_experiment_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(CONFIG)
    every = [(name, seed) for name in "abc" for seed in (0, 1)]
    for n in (2, 4):
        shards = [listed(capsys, tmp_path, f"{k}/{n}") for k in range(n)]
        assert sorted(itertools.chain(*shards)) == every
        assert shards[0] == every[0::n]
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--list", "--shard", "3/3"])


@pytest.mark.parametrize("value", ["0", "x", "-2"])
def test_run_all_refuses_a_bad_job_count(value: str) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "run_all.sh"), "--jobs", value], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "--jobs expects a positive integer" in done.stderr


def test_run_all_help_mentions_jobs() -> None:
    done = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--jobs N" in done.stdout
