"""reporting.provenance: which runs came from which environment and revision, from their env.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reporting.provenance import environments, machines_markdown


def runs(tmp_path: Path) -> pd.DataFrame:
    rows = []
    # (name, seed, platform, revision, wall time, cpu record)
    for name, seed, platform, revision, wall, cpu in (
        ("a", 0, "kernel-1", "abc1234aaaa", 500.0, None),
        ("a", 1, "kernel-2", "def5678bbbb", 250.0, None),
        (
            "a",
            2,
            "kernel-2",
            "def5678bbbb-dirty",
            260.0,
            {"model_name": "AMD EPYC 7B13", "model": "1", "flags": ["avx2"]},
        ),
        ("b", 1, "kernel-1", "abc1234aaaa", 520.0, None),
    ):
        run_dir = tmp_path / name / f"seed{seed}"
        run_dir.mkdir(parents=True)
        env = {"device_name": "AMD EPYC", "platform": platform, "cpu_count": 2, "torch_threads": 1, "torch": "2.x"}
        env |= {"git_revision": revision} | ({"cpu": cpu} if cpu else {})
        (run_dir / "env.json").write_text(json.dumps(env))
        (run_dir / "config.yaml").write_text(f"name: {name}\nlr: 0.1\nseed: {seed}\n")
        rows.append({"name": name, "seed": seed, "run_dir": str(run_dir), "wall_time_s": wall, "data_fingerprint": "f"})
    return pd.DataFrame(rows)


def test_runs_are_grouped_by_their_recorded_environment(tmp_path: Path) -> None:
    frame = runs(tmp_path)
    table = environments(frame)
    assert table["environment"].nunique() == 2
    assert table.loc[2, "cpu"] == "AMD EPYC 7B13 (family/model/stepping 1)" and table.loc[2, "cpu_flags"] == 1
    text = machines_markdown(frame)
    assert "**Environment 1** (2 runs; seed 0: 1, seed 1: 1): AMD EPYC; kernel-1" in text
    assert "median 510 s (500-520)" in text and "`def5678-dirty` (1)" in text
    assert "1 of the 1 have a resolved config identical, but for the seed, to a clean run" in text
    assert "Seed(s) 1 ran in more than one environment" in text
    assert "instruction-set flags recorded for some runs only" in text
    assert "bit-reproducible only on the same CPU type" in text
