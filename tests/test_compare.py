"""experiments.compare: a claim only where the paired 95% interval excludes 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import compare
from tests.fixtures.synthetic_results import write_results_tree


def test_pairs_by_seed_and_names_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = write_results_tree(tmp_path / "results")
    # the fixture: magnitude 0.75 / 0.77 against dense 0.80 / 0.82 (seeds 0 / 1): -5 points on both seeds;
    # xRDA 0.78 / 0.76: -2 and -6, whose interval over two pairs (t = 12.7) contains 0
    assert compare.main([str(tree), "dense_r20", "magnitude_r20_oneshot_s80", "rda_r20_lam1e-5", "l0hc_r20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "magnitude_r20_oneshot_s80 - dense_r20: -5.00 pp [-5.00, -5.00] over 2 seed(s): lower"
    assert out[1].startswith("rda_r20_lam1e-5 - dense_r20: -4.00 pp [-29.41, +21.41] over 2 seed(s): unresolved")
    assert out[2] == "l0hc_r20 - dense_r20: -2.00 pp over 1 seed(s): unresolved (one pair: no interval)"


def test_against_the_matched_control_and_bad_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = write_results_tree(tmp_path / "results")
    assert compare.main([str(tree), "--control", "magnitude_r20_oneshot_s80", "rda_r20_lam1e-5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("magnitude_r20_oneshot_s80 - dense_r20: -5.00 pp")
    assert out[1] == f"rda_r20_lam1e-5: no dense control of its recipe under {tree}"
    assert compare.main([str(tree), "dense_r20", "nothing"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tree}: no finished run of nothing"


def test_the_family_with_holm_and_what_each_side_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = write_results_tree(tmp_path / "results")
    assert compare.main([str(tree), "--family"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("after Holm's correction") and out[-1].split()[0] == str(len(out) - 1)
    line = next(x for x in out if x.startswith("[control] magnitude_r20_oneshot_s80 - dense_r20: -5.00 pp"))
    assert "after Holm:" in line and "sparsity" in line and "FLOPs kept" in line and "steps" in line
    assert compare.main([str(tree), "--family", "dense_r20"]) == 2
    assert compare.main([str(tree)]) == 2
