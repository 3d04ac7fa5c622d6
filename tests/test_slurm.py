"""The SLURM scripts (scripts/slurm/) without SLURM: the batch scripts run under bash with the
variables SLURM would set, and stubs for python, torchrun, scontrol and sbatch that record what they
were given. A real cluster is scripts/slurm/test_local_cluster.sh's job (root, apt)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import experiments.run as run
from tests.conftest import ROOT

SLURM = ROOT / "scripts" / "slurm"
SCRIPTS = sorted(p for p in SLURM.iterdir() if p.suffix in (".sh", ".sbatch"))

# A stub records its arguments (one a line), then the variables NOTED, in $STUB_LOG/<name>.args.
NOTED = ("OMP_NUM_THREADS", "PROFILE", "SHARDS")
STUB = """#!/bin/bash
{{ printf '%s\\n' "$@"; {notes}; }} > "$STUB_LOG/{name}.args"
{body}
"""
# A run that lasts until it is stopped, noting the signal.
SLOW = """trap 'echo TERM > "$STUB_LOG/{name}.signal"; exit 143' TERM
touch "$STUB_LOG/{name}.started"
for i in $(seq 300); do sleep 0.05; done
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything SLURM (the tests may run inside a job) or that
    the scripts read, plus ``extra``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_")
        and k
        not in (
            "SHARDS",
            "GPUS",
            "PROFILE",
            "ENV_SH",
            "CUDA_VISIBLE_DEVICES",
            "OMP_NUM_THREADS",
            "TASKS",
            "MAX_PARALLEL",
        )
    }
    return keep | extra


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    """A folder of stub commands, put first on PATH by the ENV_SH file ``tmp_path/env.sh``."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, body in (
        ("python", ""),
        ("torchrun", ""),
        ("scontrol", ""),
        ("nvidia-smi", ""),
        ("sbatch", 'echo "Submitted batch job 1"'),
    ):
        make_stub(bin_dir, name, body)
    (tmp_path / "env.sh").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    return tmp_path


def make_stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    notes = "; ".join(f'echo "{v}=${{{v}:-}}"' for v in NOTED)
    path.write_text(STUB.format(name=name, body=body, notes=notes))
    path.chmod(0o755)


def recorded(stubs: Path, name: str) -> tuple[list[str], dict[str, str]]:
    """The arguments a stub was called with, and the variables it noted."""
    lines = (stubs / "log" / f"{name}.args").read_text().splitlines()
    return lines[: -len(NOTED)], dict(line.split("=", 1) for line in lines[-len(NOTED) :])


def array_env(stubs: Path, task: int, **slurm: str) -> dict[str, str]:
    return clean_env(
        ENV_SH=str(stubs / "env.sh"),
        STUB_LOG=str(stubs / "log"),
        SLURM_SUBMIT_DIR=str(ROOT),
        SLURM_JOB_ID="100",
        SLURM_ARRAY_JOB_ID="77",
        SLURM_ARRAY_TASK_ID=str(task),
        **slurm,
    )


def sized(n: int) -> dict[str, str]:
    """What SLURM sets for --array=0-<n-1>."""
    return dict(SLURM_ARRAY_TASK_COUNT=str(n), SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX=str(n - 1))


def batch(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM / script), *args], env=env, cwd="/", capture_output=True, text=True, timeout=30
    )


# ---------------------------------------------------------------- the files


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_accepts_the_scripts(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    if script.name != "common.sh":  # sourced, not run
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


@pytest.mark.parametrize(
    "script,output", [("array.sbatch", "logs/slurm/%A_%a.out"), ("torchrun.sbatch", "logs/slurm/%j.out")]
)
def test_sbatch_options_sit_in_the_header(script: str, output: str) -> None:
    """sbatch reads #SBATCH lines only before the first command: all of them must come first."""
    lines = (SLURM / script).read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    options = [line.split(None, 1)[1] for line in lines[:first_command] if line.startswith("#SBATCH")]
    assert not any(line.startswith("#SBATCH") for line in lines[first_command:])
    assert {"--requeue", "--open-mode=append", f"--output={output}"} <= set(options)
    assert any(re.fullmatch(r"--signal=B:USR1@\d+", o) for o in options)  # the script's requeue trap


# ---------------------------------------------------------------- the shard of an array task


def shard(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"source {SLURM / 'common.sh'}; slurm_shard"],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.mark.parametrize(
    "env,expected",
    [
        (dict(SLURM_ARRAY_TASK_ID="3", **sized(16)), "3/16"),
        (dict(SLURM_ARRAY_TASK_ID="0", **sized(1)), "0/1"),
        (dict(SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_MAX="1"), "1/2"),  # no COUNT (older SLURM): MAX + 1
        (
            dict(
                SLURM_ARRAY_TASK_ID="7",
                SLURM_ARRAY_TASK_COUNT="2",
                SLURM_ARRAY_TASK_MIN="3",
                SLURM_ARRAY_TASK_MAX="7",
                SHARDS="16",
            ),
            "7/16",
        ),  # rerunning tasks 3 and 7 of 16
    ],
)
def test_shard_of_an_array_task(env: dict[str, str], expected: str) -> None:
    done = shard(**env)
    assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "not a job array task"),
        (
            dict(
                SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_COUNT="8", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="14"
            ),
            "not 0..7",
        ),  # --array=0-15:2
        (
            dict(
                SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="2", SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="7"
            ),
            "set SHARDS=N",
        ),  # --array=3,7 without SHARDS
        (dict(SLURM_ARRAY_TASK_ID="4", SLURM_ARRAY_TASK_MIN="1", SLURM_ARRAY_TASK_MAX="4"), "set SHARDS=N"),
        (dict(SLURM_ARRAY_TASK_ID="16", SHARDS="16"), "need 0 <= task id < N"),
    ],
)
def test_shard_refuses_arrays_that_would_miss_runs(env: dict[str, str], message: str) -> None:
    done = shard(**env)
    assert done.returncode == 2 and done.stdout == "" and message in done.stderr


# ---------------------------------------------------------------- array.sbatch


@pytest.fixture
def list_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """The runs the runner's --list names for runner arguments (configs are read once)."""
    loaded: dict = {}
    collect = run.config.collect_configs

    def cached(paths, profile, overrides, only):
        key = (tuple(paths), profile, tuple(overrides), only)
        if key not in loaded:
            loaded[key] = collect(paths, profile, overrides, only)
        return loaded[key]

    monkeypatch.setattr(run.config, "collect_configs", cached)
    monkeypatch.chdir(ROOT)  # the tasks' paths are relative to the repository root

    def runs(args: list[str], text: bool = False) -> list[tuple[str, int]] | str:
        assert run.main([*args, "--list"]) == 0
        out = capsys.readouterr().out
        if text:
            return out
        return [(m[1], int(m[2])) for line in out.splitlines() if (m := re.fullmatch(r"  (\S+) seed (\d+)", line))]

    return runs


def test_array_tasks_together_run_every_run_once(stubs: Path, list_runs) -> None:
    """The runner arguments each task of an N-task array passes: as shards, they hold every run of
    the profile exactly once, task K taking every N-th from the K-th."""
    every = list_runs(["experiments/configs", "--profile", "smoke", "--seeds", "1", "--shard", "0/1"])
    assert len(every) > 5
    for n in (1, 2, 3, len(every) + 2):
        shards = []
        for k in range(n):
            done = batch(
                "array.sbatch",
                array_env(stubs, k, PROFILE="smoke", SLURM_CPUS_PER_TASK="3", **sized(n)),
                "--results",
                "/tmp/out",
                "--seeds",
                "1",
            )
            assert done.returncode == 0, done.stderr
            args, noted = recorded(stubs, "python")
            assert args == [
                "-m",
                "experiments.run",
                "experiments/configs",
                "--profile",
                "smoke",
                "--shard",
                f"{k}/{n}",
                "--no-progress",
                "--results",
                "/tmp/out",
                "--seeds",
                "1",
            ]
            assert noted["OMP_NUM_THREADS"] == "3"
            assert f"shard {k}/{n}" in done.stdout
            shards.append(list_runs(args[2:]))
        assert sorted(itertools.chain(*shards)) == sorted(every)
        assert shards[0] == every[0::n]


def test_array_task_defaults_and_exit_status(stubs: Path) -> None:
    make_stub(stubs / "bin", "python", "exit 3")
    done = batch("array.sbatch", array_env(stubs, 1, **sized(2)))
    args, _ = recorded(stubs, "python")
    assert args[3:7] == ["--profile", "full", "--shard", "1/2"] and args[-1] == "--no-progress"
    assert done.returncode == 3  # the runner's status is the task's


def test_array_task_refuses_a_bad_array_before_running(stubs: Path) -> None:
    done = batch(
        "array.sbatch",
        array_env(stubs, 2, SLURM_ARRAY_TASK_COUNT="8", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="14"),
    )
    assert done.returncode == 2 and "set SHARDS=N" in done.stderr
    assert not (stubs / "log" / "python.args").exists()


def test_array_task_runs_in_the_submit_folder(stubs: Path, tmp_path: Path) -> None:
    done = batch("array.sbatch", array_env(stubs, 0, **sized(1)) | {"SLURM_SUBMIT_DIR": str(tmp_path)})
    assert done.returncode == 2 and "not the repository root" in done.stderr


def start_and_signal(
    stubs: Path, script: str, env: dict[str, str], sig: signal.Signals, *args: str
) -> subprocess.CompletedProcess:
    """Start a batch script whose command runs until stopped; once it runs, send ``sig`` to the
    batch shell alone, as SLURM does for --signal=B:..."""
    proc = subprocess.Popen(
        ["bash", str(SLURM / script), *args],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = stubs / "log" / f"{Path(env['STUB_CMD']).name}.started"
    deadline = time.monotonic() + 20
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_time_limit_signal_stops_the_run_and_requeues_the_task(stubs: Path) -> None:
    make_stub(stubs / "bin", "python", SLOW.format(name="python"))
    done = start_and_signal(stubs, "array.sbatch", array_env(stubs, 1, STUB_CMD="python", **sized(2)), signal.SIGUSR1)
    assert done.returncode == 0, done.stderr
    assert (stubs / "log" / "python.signal").read_text().strip() == "TERM"  # the run was stopped first
    assert recorded(stubs, "scontrol")[0] == ["requeue", "77_1"]  # the array task, not the whole array
    assert "requeued 77_1" in done.stdout


def test_a_failed_requeue_is_an_error(stubs: Path) -> None:
    make_stub(stubs / "bin", "python", SLOW.format(name="python"))
    make_stub(stubs / "bin", "scontrol", "exit 1")
    done = start_and_signal(stubs, "array.sbatch", array_env(stubs, 0, STUB_CMD="python", **sized(2)), signal.SIGUSR1)
    assert done.returncode == 1 and "scontrol requeue 77_0 failed" in done.stderr


def test_scancel_stops_the_run_without_requeueing(stubs: Path) -> None:
    make_stub(stubs / "bin", "python", SLOW.format(name="python"))
    done = start_and_signal(stubs, "array.sbatch", array_env(stubs, 0, STUB_CMD="python", **sized(2)), signal.SIGTERM)
    assert done.returncode == 143
    assert (stubs / "log" / "python.signal").read_text().strip() == "TERM"
    assert not (stubs / "log" / "scontrol.args").exists()


# ---------------------------------------------------------------- torchrun.sbatch


def torchrun_env(stubs: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        ENV_SH=str(stubs / "env.sh"),
        STUB_LOG=str(stubs / "log"),
        SLURM_SUBMIT_DIR=str(ROOT),
        SLURM_JOB_ID="55",
        **extra,
    )


CONFIG = "experiments/configs/l0hc/l0hc_resnet50_imagenet.yaml"


def test_torchrun_job_uses_every_gpu_of_the_node(stubs: Path) -> None:
    done = batch(
        "torchrun.sbatch",
        torchrun_env(stubs, SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="32"),
        CONFIG,
        "--data-root",
        "/data",
    )
    assert done.returncode == 0, done.stderr
    args, noted = recorded(stubs, "torchrun")
    assert args == [
        "--standalone",
        "--nproc_per_node",
        "4",
        "-m",
        "experiments.run",
        "--profile",
        "full",
        "--no-progress",
        CONFIG,
        "--data-root",
        "/data",
    ]
    assert noted["OMP_NUM_THREADS"] == "8"  # the job's CPUs shared by its 4 processes
    parsed = run.parse_args(args[5:])  # what the runner makes of them
    assert parsed.configs == [Path(CONFIG)] and parsed.profile == "full" and parsed.data_root == Path("/data")


@pytest.mark.parametrize(
    "extra,gpus", [(dict(GPUS="2", SLURM_GPUS_ON_NODE="8"), "2"), (dict(CUDA_VISIBLE_DEVICES="0,1,2"), "3")]
)
def test_torchrun_gpu_count(stubs: Path, extra: dict[str, str], gpus: str) -> None:
    done = batch("torchrun.sbatch", torchrun_env(stubs, **extra), CONFIG)
    assert done.returncode == 0, done.stderr
    assert recorded(stubs, "torchrun")[0][:3] == ["--standalone", "--nproc_per_node", gpus]


def test_torchrun_job_needs_gpus_and_a_config(stubs: Path) -> None:
    # PATH holds the stub nvidia-smi, which lists no GPU
    env = torchrun_env(stubs) | {"PATH": f"{stubs / 'bin'}:{os.environ['PATH']}"}
    done = batch("torchrun.sbatch", env, CONFIG)
    assert done.returncode == 2 and "no GPUs" in done.stderr
    done = batch("torchrun.sbatch", torchrun_env(stubs, GPUS="2"))
    assert done.returncode == 2 and "name the config" in done.stderr
    assert not (stubs / "log" / "torchrun.args").exists()


def test_torchrun_job_requeues_itself_near_the_time_limit(stubs: Path) -> None:
    make_stub(stubs / "bin", "torchrun", SLOW.format(name="torchrun"))
    done = start_and_signal(
        stubs, "torchrun.sbatch", torchrun_env(stubs, GPUS="2", STUB_CMD="torchrun"), signal.SIGUSR1, CONFIG
    )
    assert done.returncode == 0, done.stderr
    assert (stubs / "log" / "torchrun.signal").read_text().strip() == "TERM"
    assert recorded(stubs, "scontrol")[0] == ["requeue", "55"]


# ---------------------------------------------------------------- submit.sh


def test_submit_sizes_the_array_to_the_runs(stubs: Path, list_runs) -> None:
    """One task per (experiment, seed) run that --list names for the same runner arguments. The stub
    python prints what the runner prints for them."""
    args = ["experiments/configs", "--profile", "smoke", "--list", "--shard", "0/1", "--seeds", "2"]
    listing = list_runs(args, text=True)
    runs = len(list_runs(args))
    assert runs > 5
    (stubs / "listing.txt").write_text(listing)
    make_stub(stubs / "bin", "python", f'cat "{stubs / "listing.txt"}"')
    env = clean_env(ENV_SH=str(stubs / "env.sh"), STUB_LOG=str(stubs / "log"), MAX_PARALLEL="3", SHARDS="5")
    logs = ROOT / "logs"
    existed = logs.exists()
    try:
        done = subprocess.run(
            [str(SLURM / "submit.sh"), "--time=1:00:00", "smoke", "--seeds", "2"],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (logs / "slurm").is_dir()  # sbatch does not make the log folder
    finally:
        if not existed:
            subprocess.run(["rm", "-rf", str(logs)], check=True)
    assert done.returncode == 0, done.stderr
    assert recorded(stubs, "python")[0] == ["-m", "experiments.run", *args]
    sbatch, noted = recorded(stubs, "sbatch")
    assert sbatch == [f"--array=0-{runs - 1}%3", "--time=1:00:00", "scripts/slurm/array.sbatch", "--seeds", "2"]
    assert noted["PROFILE"] == "smoke" and noted["SHARDS"] == ""  # the array is 0..N-1: no SHARDS
    assert f"{runs} run(s) in {runs} task(s)" in done.stdout


def test_submit_caps_the_array_at_tasks(stubs: Path) -> None:
    make_stub(stubs / "bin", "python", 'echo "shard 0/1 runs 40 of them:"')
    env = clean_env(ENV_SH=str(stubs / "env.sh"), STUB_LOG=str(stubs / "log"), TASKS="16")
    logs = ROOT / "logs"
    existed = logs.exists()
    try:
        done = subprocess.run([str(SLURM / "submit.sh"), "full"], env=env, capture_output=True, text=True, timeout=30)
    finally:
        if not existed:
            subprocess.run(["rm", "-rf", str(logs)], check=True)
    assert done.returncode == 0, done.stderr
    assert recorded(stubs, "sbatch")[0] == ["--array=0-15", "scripts/slurm/array.sbatch"]
