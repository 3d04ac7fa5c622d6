"""scripts/env.sh and training.torchvision_check: two set-ups started at once install once, a
torchvision that does not load beside torch is reported in one line saying which build to install,
and the data paths that need it fail with that line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from training import data, torchvision_check
from training.data import DataError

FAKE_PYTHON = """\
#!/usr/bin/env bash
# python3 -m venv DIR makes DIR/bin/python (this script); pip is logged and slow; the torchvision
# check prints $TV_LINE and fails when it is set.
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1 $2" = "-m pip" ]; then echo "pip ${*:3}" >> "$LOG"; sleep 1; exit 0; fi
if [ "$1 $2" = "-m training.torchvision_check" ]; then [ -z "$TV_LINE" ] || { echo "$TV_LINE"; exit 1; }; fi
exit 0
"""


@pytest.mark.parametrize("tv_line", ["", "torchvision 0.28.0 does not load beside torch 2.13.0+cpu (...)"])
def test_two_setups_at_once_install_once_and_say_which_torchvision_to_install(tmp_path: Path, tv_line: str) -> None:
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "env.sh", repo / "scripts" / "env.sh")
    (repo / "requirements.txt").write_text("torch\n")
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", LOG=str(tmp_path / "pip.log"), TV_LINE=tv_line)
    command = ["bash", "-c", f"source {repo}/scripts/env.sh && echo ready"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all(out.rstrip().endswith("ready") for out, _ in outputs)
    assert sum("setting up" in out for out, _ in outputs) == 1  # the other waited, then found it ready
    assert (tmp_path / "pip.log").read_text().count("-r ") == 1
    warnings = [line for _, err in outputs for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ([f"warning: CIFAR downloads and ImageNet need torchvision: {tv_line}"] * 2 if tv_line else [])


def test_the_install_line_matches_the_torch_build() -> None:
    assert torchvision_check.matching_version("2.13.0+cpu") == "0.28.0"
    assert torchvision_check.install_line("2.5.1", "12.4") == (
        "pip install torchvision==0.20.1 --index-url https://download.pytorch.org/whl/cu124"
    )
    assert torchvision_check.install_line("2.13.0+cpu", None).endswith(
        "==0.28.0 --index-url https://download.pytorch.org/whl/cpu"
    )


@pytest.fixture
def broken_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError


def test_a_broken_torchvision_is_one_line_saying_what_to_install(broken_torchvision: None) -> None:
    with pytest.raises(torchvision_check.TorchvisionError) as info:
        torchvision_check.import_torchvision()
    message = str(info.value)
    assert "\n" not in message and "install the matching build: pip install torchvision==" in message


def test_the_cifar_download_fails_with_that_line(tmp_path: Path, broken_torchvision: None) -> None:
    with pytest.raises(DataError) as info:
        data.download_cifar(tmp_path, "cifar10")
    assert "cannot be downloaded" in str(info.value) and "pip install torchvision==" in str(info.value)
    assert "download failed" not in str(info.value)
    # ImageNet does not need torchvision: it falls back to the same transforms with PIL and records
    # the line (image_pipeline); tests/test_imagenet.py runs that path.
