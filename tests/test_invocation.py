"""run_all.sh's cost record: each invocation appended to RESULTS/invocations.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.invocation import main


def test_each_invocation_is_appended_with_what_it_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    common = ["--revision", "abc123", "--profile", "subset", "--jobs", "2"]
    assert (
        main([str(tmp_path), "--seconds", "60", "--status", "130", *common, "--", "./run_all.sh", "--jobs", "2"]) == 0
    )
    assert main([str(tmp_path), "--seconds", "40", "--status", "0", *common, "--", "./run_all.sh", "--jobs", "2"]) == 0
    first, second = json.loads((tmp_path / "invocations.json").read_text())
    assert first["command"] == "./run_all.sh --jobs 2" and first["exit_status"] == 130 and second["exit_status"] == 0
    assert (first["seconds"], second["seconds"]) == (60, 40)  # the profile cost 100 s over two invocations
    assert first["git_revision"] == "abc123" and first["profile"] == "subset"
    assert (first["jobs"], first["threads_per_job"]) == (2, 1)
    assert first["date"].endswith("+00:00") and first["cpu_count"] >= 1 and len(first["load_average"]) == 3
    assert not list(tmp_path.glob(".*.tmp"))
