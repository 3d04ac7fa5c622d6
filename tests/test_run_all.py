"""run_all.sh: the main job stops before the notebooks without data, and SIGTERM stops every runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_cifar10

CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: EPOCHS, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
profiles: {smoke: {epochs: EPOCHS}}
"""


def configs(tmp_path: Path, epochs: int, names: tuple[str, ...] = ("a",)) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.yaml").write_text(CONFIG.replace("EPOCHS", str(epochs)))
    return folder


def start(tmp_path: Path, folder: Path, data: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "bash",
            str(ROOT / "run_all.sh"),
            "--profile",
            "smoke",
            "--configs",
            str(folder),
            "--data-root",
            str(data),
            "--results",
            str(tmp_path / "results"),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def test_without_data_it_stops_before_the_notebooks_with_the_error_last(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)  # a folder without its files: no download is tried
    proc = start(tmp_path, configs(tmp_path, 1), data)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3
    assert "[notebook]" not in out and "stopped before the notebooks" in err
    assert err.strip().splitlines()[-1] == (
        f"error: {data / 'cifar-10-batches-py' / 'data_batch_1'}: missing; delete "
        f"{data / 'cifar-10-batches-py'} and rerun to download it again, or point "
        "--data-root / DATA_ROOT at a complete copy"
    )


def test_sigterm_stops_every_runner(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data")
    results = tmp_path / "results"
    proc = start(tmp_path, configs(tmp_path, 50, ("a", "b")), data, "--jobs", "2")
    deadline = time.time() + 240
    while len(list(results.glob("*/seed0/history.csv"))) < 2 and time.time() < deadline:  # both runners training
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted: rerun the same command to go on" in err
    assert "Traceback" not in err
    left = subprocess.run(["pgrep", "-f", str(results)], capture_output=True, text=True).stdout.split()
    assert left == []  # no runner goes on writing
    assert not list(results.glob("*/seed0/metrics.json"))
    (entry,) = json.loads((results / "invocations.json").read_text())  # its time counts towards the cost
    assert entry["exit_status"] == 130 and entry["seconds"] >= 1 and "--jobs 2" in entry["command"]


def test_smoke_runs_one_runner_per_core_unless_told(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        import pytest

        pytest.skip("one core: one runner")
    data = write_cifar10(tmp_path / "data")
    results = tmp_path / "results"
    proc = start(tmp_path, configs(tmp_path, 50, ("a", "b")), data)  # no --jobs
    deadline = time.time() + 240
    while len(list(results.glob("*/seed0/history.csv"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    jobs = min(cores, 4)
    assert f"[0/{jobs}] " in out and f"[1/{jobs}] " in out  # side by side, not one after the other


def run_all(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "run_all.sh"), *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile"], "--profile expects a value"),
        (["--profile="], "--profile expects a value"),
        (["--only"], "--only expects a value"),
        (["--only", "--force"], "--only expects a value"),
        (["--data-root"], "--data-root expects a value"),
        (["--device"], "--device expects a value"),
        (["--seeds"], "--seeds expects a value"),
        (["--configs"], "--configs expects a value"),
        (["--results"], "--results expects a value"),
        (["--jobs"], "--jobs expects a value"),
        (["--profile", "bogus"], "--profile bogus: unknown; choose one of smoke, subset, full, rehearsal"),
        (["--seeds", "0"], "--seeds expects a positive integer, got '0'"),
        (["--device", "gpu"], "--device gpu: unknown; choose one of auto, cpu, cuda"),
        (["--jobs", "0"], "--jobs expects a positive integer, got '0'"),
        (["--configs", "/no/such/folder"], "--configs /no/such/folder: not a folder"),
        (["--bogus"], "unknown option --bogus"),
    ],
)
def test_a_bad_command_line_is_one_line_before_any_work(args: list[str], message: str) -> None:
    proc = run_all(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {message} (see ./run_all.sh --help)"]


def test_its_profiles_are_the_runners() -> None:
    from training.config import PROFILES

    line = next(line for line in (ROOT / "run_all.sh").read_text().splitlines() if line.startswith("profiles="))
    assert line.split('"')[1].split() == list(PROFILES)


def test_an_only_that_matches_nothing_stops_with_that_error(tmp_path: Path) -> None:
    proc = start(tmp_path, configs(tmp_path, 1), tmp_path / "data", "--only", "nothing-matches", "--jobs", "1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: --only nothing-matches: matches none of the 1 experiment(s)")


def test_sigterm_stops_the_notebooks_stage_within_seconds(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data")
    results = tmp_path / "results"
    proc = start(tmp_path, configs(tmp_path, 1), data, "--jobs", "1")
    deadline = time.time() + 240
    while not (results / "figures").is_dir() and time.time() < deadline:  # the notebooks stage began
        time.sleep(0.2)
    time.sleep(2)  # kernels started
    proc.send_signal(signal.SIGTERM)
    stopped = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - stopped < 30  # (every notebook would take minutes)
    assert proc.returncode == 130 and "run_all.sh: stopping the notebooks..." in err
    assert "Traceback" not in err
    (entry,) = json.loads((results / "invocations.json").read_text())
    assert entry["exit_status"] == 130


def test_a_killed_runner_is_named(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data")
    results = tmp_path / "results"
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "a.yaml").write_text(CONFIG.replace("EPOCHS", "200"))  # shard 0: killed while training
    (folder / "b.yaml").write_text(CONFIG.replace("EPOCHS", "1"))  # shard 1: finishes
    proc = start(tmp_path, folder, data, "--jobs", "2")
    deadline = time.time() + 240
    finished = results / "b" / "seed0" / "metrics.json"
    while not ((results / "a" / "seed0" / "history.csv").exists() and finished.exists()) and time.time() < deadline:
        time.sleep(0.2)
    pattern = f"--shard 0/2 .*{results}"
    runner = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()
    assert len(runner) == 1, runner
    os.kill(int(runner[0]), signal.SIGKILL)  # as the kernel's out-of-memory killer does
    lines = []
    for line in proc.stderr:  # up to the word about the runner, then stop the notebooks stage
        lines.append(line)
        if "was stopped by signal" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert (
        "run_all.sh: runner 0/2 was stopped by signal 9 (SIGKILL: often the kernel's out-of-memory killer"
        in "".join(lines)
    )
    assert not (results / "a" / "seed0" / "metrics.json").exists()
