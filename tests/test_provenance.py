"""reporting.provenance: which runs came from which environment and revision, from their env.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reporting.provenance import code_changes_markdown, environments, machines_markdown

# A real env.json (what the schema accepts), its machine fields set per run below.
ENV = json.loads((Path(__file__).resolve().parent.parent / "results/subset/r20_dense_sgd/seed0/env.json").read_text())


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
        ("b", 2, "kernel-1", "abc1234aaaa-dirty", 510.0, None),  # dirty, and another lr than b's clean run
    ):
        run_dir = tmp_path / name / f"seed{seed}"
        run_dir.mkdir(parents=True)
        env = {k: v for k, v in ENV.items() if k != "cpu"}
        env |= {"device_name": "AMD EPYC", "platform": platform, "cpu_count": 2, "torch_threads": 1, "torch": "2.x"}
        env |= {"git_revision": revision} | ({"cpu": cpu} if cpu else {})
        (run_dir / "env.json").write_text(json.dumps(env))
        config = {"name": name, "lr": 0.2 if (name, seed) == ("b", 2) else 0.1, "seed": seed}
        rows.append(
            {"name": name, "seed": seed, "run_dir": str(run_dir), "wall_time_s": wall, "data_fingerprint": "f"}
            | {"config": config}
        )
    return pd.DataFrame(rows)


def test_runs_are_grouped_by_their_recorded_environment(tmp_path: Path) -> None:
    frame = runs(tmp_path)
    table = environments(frame)
    assert table["environment"].nunique() == 2
    assert table.loc[2, "cpu"] == "AMD EPYC 7B13 (family/model/stepping 1)" and table.loc[2, "cpu_flags"] == 1
    text = machines_markdown(frame)
    assert "**Environment 1** (3 runs; seed 0: 1, seed 1: 1, seed 2: 1): AMD EPYC; kernel-1" in text
    assert "median 510 s (500-520)" in text and "`def5678-dirty` (1)" in text
    # b's dirty run trained another lr than b's clean one: only a's counts as the same config
    assert "1 of the 2 have a resolved config identical, but for the seed, to a clean run" in text
    assert "and 2 read data with the same fingerprint as the clean runs of their experiment" in text
    assert "Seed(s) 1, 2 ran in more than one environment" in text
    assert "instruction-set flags recorded for some runs only" in text
    assert "bit-reproducible only on the same CPU type" in text
    # four runs record no model or flags: the note must not say every run's CPU is known
    assert "4 of the 5 runs name their CPU only as AMD EPYC, without model number or instruction-set flags" in text
    assert "the other 1 record both" in text and "each run's CPU" not in text


def test_code_changes_are_listed_from_their_record(tmp_path: Path) -> None:
    assert code_changes_markdown(tmp_path / "none.json") == "No comparison recorded yet.\n"
    cpu = {"model_name": "Intel Xeon", "family": "6", "model": "167", "stepping": "1"}
    entry = {
        "experiment": "r20_x",
        "revision": "a" * 40,
        "checkout": "b" * 40 + "-dirty",
        "epochs": 15,
        "threads": 1,
        "date": "2026-12-03",
        "environment": {"cpu": cpu},
    }
    record = tmp_path / "code_changes.json"
    same = entry | {"equal": True, "differences": [], "kernel_choices": ["optimizers[1].fused: None against True"]}
    final = {"then": {"test_acc": 0.5012}, "now": {"test_acc": 0.4987}}
    moved = entry | {"equal": False, "differences": ["d1", "d2", "d3", "d4"], "kernel_choices": [], "final": final}
    record.write_text(json.dumps({"comparisons": [same, moved]}))
    first, second = code_changes_markdown(record).splitlines()
    assert first == (
        "- `r20_x` (its recorded config, seed 0, 15 epochs): `aaaaaaa` against `bbbbbbb-dirty`, side by side on "
        "Intel Xeon (6/167/1), 1 thread(s) each, 2026-12-03: **equal bit for bit**; the optimizers' kernel choice "
        "differed (optimizers[1].fused: None against True)."
    )
    assert second.endswith("**different** (d1; d2; d3, ...); final test accuracy 50.12% at `aaaaaaa`, 49.87% now.")
