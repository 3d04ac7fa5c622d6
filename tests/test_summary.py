"""experiments.summary: --help, and a smoke profile's table ends with what smoke checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import summary
from tests.fixtures.synthetic_results import write_results_tree


def test_help_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        summary.main(["--help"])
    assert exit_.value.code == 0 and "usage: python -m experiments.summary" in capsys.readouterr().out


@pytest.mark.parametrize("profile", ["smoke", "subset"])
def test_a_smoke_summary_says_its_numbers_mean_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str
) -> None:
    tree = write_results_tree(tmp_path / "results")
    for path in [*tree.glob("*/seed*/metrics.json"), *tree.glob("*/seed*/config.yaml")]:
        path.write_text(
            path.read_text()
            .replace('"profile": "subset"', f'"profile": "{profile}"')
            .replace("profile: subset", f"profile: {profile}")
        )
    assert summary.main([str(tree)]) == 0
    out = capsys.readouterr().out
    assert (summary.SMOKE_CAVEAT in out) == (profile == "smoke")
    assert out.rstrip().endswith(summary.SMOKE_CAVEAT) == (profile == "smoke")
