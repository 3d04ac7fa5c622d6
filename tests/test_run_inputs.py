"""The runner on inputs it must refuse or survive: results that cannot be written, run folders that
are links out of the results folder, selections that select nothing, numbers that overflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.run import main
from tests.conftest import ROOT
from tests.helpers import run_config

CONFIG = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train: {epochs: 1, schedule: {name: constant}}
optimizer: {name: sgd, lr: 0.05}
"""


def two_configs(tmp_path: Path) -> list[str]:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(CONFIG)
    return [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]


def one_line_errors(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def test_results_that_are_a_file_fail_each_run_in_one_line(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    results = tmp_path / "results"
    results.write_text("a file where the results folder should be\n")
    argv = [*two_configs(tmp_path), "--data-root", str(tiny_cifar), "--results", str(results), "--no-progress"]
    assert main(argv) == 1  # every run went on to be tried, and failed
    captured = capsys.readouterr()
    lines = one_line_errors(captured.err)
    assert lines == [
        f"error: {name} seed 0: {results / name / 'seed0'}: Not a directory (no error.log: "
        f"{results / name / 'seed0'} cannot be written either)"
        for name in ("a", "b")
    ]
    assert "failed: a seed 0, b seed 0" in captured.out


def test_one_run_folder_that_cannot_be_written_does_not_stop_the_others(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "a").write_text("in the way\n")  # a's run folder cannot be made
    argv = [*two_configs(tmp_path), "--data-root", str(tiny_cifar), "--results", str(results), "--no-progress"]
    assert main(argv) == 1
    (line,) = one_line_errors(capsys.readouterr().err)
    assert line.startswith(f"error: a seed 0: {results / 'a' / 'seed0'}: Not a directory")
    assert (results / "b" / "seed0" / "metrics.json").exists()


def test_a_run_folder_that_is_a_link_out_of_the_results_is_refused(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".keep.tmp").write_text("not the runner's to delete\n")
    for linked in ("tiny/seed0", "tiny"):  # the run folder, or its experiment's folder
        shutil.rmtree(tmp_path / "results", ignore_errors=True)
        (tmp_path / "results" / linked).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "results" / linked).symlink_to(elsewhere, target_is_directory=True)
        assert run_config(tmp_path, tiny_cifar, CONFIG) == 1
        (line,) = one_line_errors(capsys.readouterr().err)
        assert f"{tmp_path / 'results' / linked}: a symbolic link (to {elsewhere})" in line
        assert sorted(p.name for p in elsewhere.iterdir()) == [".keep.tmp"]  # nothing written, nothing deleted


def test_temporary_file_cleanup_deletes_links_not_their_targets(tmp_path: Path) -> None:
    from training.records import remove_temporary_files

    target = tmp_path / "precious.tmp"
    target.write_text("keep\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".x.tmp").symlink_to(target)
    (folder / ".dir.tmp").mkdir()  # not a file: left alone, no error
    remove_temporary_files(folder)
    assert target.read_text() == "keep\n" and not (folder / ".x.tmp").is_symlink()


def test_an_only_that_matches_nothing_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a.yaml").write_text(CONFIG)
    assert main([str(tmp_path / "a.yaml"), "--only", "nothing-matches-this"]) == 2
    (line,) = one_line_errors(capsys.readouterr().err)
    assert line.startswith("error: --only nothing-matches-this: matches none of the 1 experiment(s)")


def test_zero_seeds_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a.yaml").write_text(CONFIG)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "a.yaml"), "--seeds", "0"])
    assert exit_.value.code == 2
    assert "argument --seeds: expected an integer in 1.." in capsys.readouterr().err


def test_a_folder_without_yaml_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--list"]) == 2
    (line,) = one_line_errors(capsys.readouterr().err)
    assert line == f"error: {tmp_path / 'empty'}: a folder with no YAML config (*.yaml) in it"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: 0.05", "optimizer.lr: 1000000000"),  # 400 digits: too large for a float
        ("lr: 0.05", "is too large for a number"),
        ("epochs: 1", "train.epochs: 1000000000"),  # an int beyond int64
        ("lr: 0.05", "optimizer.lr: must be a finite number"),  # .inf
    ],
)
def test_numbers_that_overflow_are_config_errors(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture
) -> None:
    key = text.split(":")[0]
    value = ".inf" if "finite" in message else "1" + "0" * 400
    path = tmp_path / "big.yaml"
    path.write_text(CONFIG.replace(text, f"{key}: {value}"))
    assert main([str(path), "--list"]) == 2
    (line,) = one_line_errors(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: ") and message in line


def test_a_config_that_is_a_link_to_an_endless_device_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for device, kind in (("/dev/zero", "a character device"), ("/dev/urandom", "a character device")):
        path = tmp_path / "endless.yaml"
        path.unlink(missing_ok=True)
        path.symlink_to(device)
        assert main([str(path), "--list"]) == 2
        (line,) = one_line_errors(capsys.readouterr().err)
        assert line == f"error: {path}: {kind}, not a regular file"
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    assert main([str(fifo), "--list"]) == 2
    assert "a pipe, not a regular file" in capsys.readouterr().err


def _read_only_mount_works(folder: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_on_read_only_media_a_finished_run_is_skipped_and_the_others_fail_in_one_line(
    tmp_path: Path, tiny_cifar: Path
) -> None:
    """A real read-only mount (a private mount namespace): no permission trick that root ignores."""
    if shutil.which("unshare") is None or not _read_only_mount_works(tmp_path):
        pytest.skip("no unshare / read-only bind mount here")
    configs = two_configs(tmp_path)
    results = tmp_path / "results"
    args = ["--data-root", str(tiny_cifar), "--results", str(results), "--no-progress"]
    assert main([configs[0], *args]) == 0  # a finished; b not started
    command = " ".join(
        [f"mount --bind {results} {results} && mount -o remount,bind,ro {results} &&", sys.executable]
        + ["-m", "experiments.run", *configs, *args]
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"[skip] a seed 0: finished ({results / 'a' / 'seed0' / 'metrics.json'})" in proc.stdout
    (line,) = one_line_errors(proc.stderr)
    assert line.startswith(f"error: b seed 0: {results / 'b'}: Read-only file system")
