"""The checkout itself: no tracked file carries an unresolved merge, and what the runs write
locally (smoke runs, rehearsals, logs, checkpoints) is ignored by git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.split("\0") if name]


def conflict_lines(path: Path) -> list[int]:
    """Lines of an unresolved merge: an opening and a closing marker, and what lies between.
    (A lone "=======" is a Markdown heading underline, not a conflict.)"""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return []  # binary files, submodules, files deleted in the work tree
    opening = [n for n, line in enumerate(lines, 1) if line.startswith("<<<<<<< ")]
    closing = [n for n, line in enumerate(lines, 1) if line.startswith(">>>>>>> ")]
    return sorted(opening + closing) if opening and closing else []


def test_no_tracked_file_holds_merge_conflict_markers() -> None:
    found = {str(p.relative_to(ROOT)): lines for p in tracked_files() if (lines := conflict_lines(p))}
    assert not found, f"unresolved merge conflict markers (file: lines): {found}"


@pytest.mark.parametrize(
    "path",
    [
        "results/smoke/x/seed0/metrics.json",
        "results/rehearsal/x/seed0/metrics.json",
        "figures/rehearsal/fig1.png",
        "results/subset/x/seed0/checkpoint.pt",
        "logs/run.log",
        ".venv.lock",
    ],
)
def test_local_outputs_are_ignored(path: str) -> None:
    tracked_files()  # skips outside a checkout
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
    assert result.returncode == 0, f"{path} is not ignored by .gitignore"
