"""experiments.readme: the README's result tables are written from the runs, and the committed
README matches the committed results."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments import readme
from tests.conftest import ROOT
from tests.fixtures.synthetic_results import write_results_tree


def test_a_table_block_is_filled_from_its_results_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_results_tree(tmp_path / "results" / "x")
    page = tmp_path / "README.md"
    page.write_text("# Title\n\n<!-- table: results/x -->\n| typed | by hand |\n<!-- end table -->\n\nAfter.\n")
    assert readme.main(["--readme", str(page), "--check"]) == 1
    assert "the table of results/x differs from its results" in capsys.readouterr().err
    assert readme.main(["--readme", str(page)]) == 0
    text = page.read_text()
    assert "typed" not in text and text.startswith("# Title\n") and text.endswith("<!-- end table -->\n\nAfter.\n")
    assert "| `dense_r20` | dense |" in text and "| experiment | method | seeds | test acc (%)" in text
    assert readme.main(["--readme", str(page), "--check"]) == 0  # filled: nothing stale
    capsys.readouterr()
    assert readme.main(["--readme", str(page)]) == 0 and "0 table(s) rewritten" in capsys.readouterr().out


def test_a_readme_without_a_block_or_with_a_missing_folder_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "README.md"
    page.write_text("no tables\n")
    assert readme.main(["--readme", str(page)]) == 2
    page.write_text("<!-- table: results/none -->\n<!-- end table -->\n")
    assert readme.main(["--readme", str(page), "--check"]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_the_committed_readme_tables_match_the_committed_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert readme.main(["--readme", str(ROOT / "README.md"), "--check"]) == 0, capsys.readouterr().err


def test_a_count_in_the_prose_follows_the_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = tmp_path / "configs"
    (configs / "snip").mkdir(parents=True)
    shipped = ROOT / "experiments" / "configs" / "snip" / "subset" / "r20_snip_s80.yaml"
    shutil.copy(shipped, configs / "snip" / "r20_snip_s80.yaml")
    page = tmp_path / "README.md"
    write_results_tree(tmp_path / "results" / "x")
    page.write_text(
        "<!-- table: results/x -->\n<!-- end table -->\n"
        "smoke is <!-- count: smoke.experiments -->1<!-- end count --> experiments, "
        "<!-- count: smoke.epochs -->1<!-- end count --> epochs.\n"
    )
    args = ["--readme", str(page), "--configs", str(configs)]
    assert readme.main(args) == 0  # fills the table; the counts already hold
    assert readme.main([*args, "--check"]) == 0
    text = (configs / "snip" / "r20_snip_s80.yaml").read_text().replace("r20_snip_s80", "r20_snip_s90")
    (configs / "snip" / "r20_snip_s90.yaml").write_text(text.replace("sparsity: 0.8", "sparsity: 0.9"))
    capsys.readouterr()
    assert readme.main([*args, "--check"]) == 1  # a new config: the README's numbers are stale
    err = capsys.readouterr().err
    assert "count smoke.experiments: the README says '1', its source gives '2'" in err
    assert "count smoke.epochs: the README says '1', its source gives '2'" in err
    assert readme.main(args) == 0 and "2<!-- end count --> experiments" in page.read_text()
    assert readme.main([*args, "--check"]) == 0
    page.write_text(page.read_text() + "<!-- count: smoke.typo -->1<!-- end count -->\n")
    assert readme.main([*args, "--check"]) == 2 and "unknown count 'smoke.typo'" in capsys.readouterr().err


def test_a_verdicts_block_is_checked_word_for_word(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_results_tree(tmp_path / "results" / "x")
    page = tmp_path / "README.md"
    page.write_text("## Results\n\n<!-- verdicts: results/x -->\n<!-- end verdicts -->\n\n## Layout\n")
    assert readme.main(["--readme", str(page), "--check"]) == 1
    assert readme.main(["--readme", str(page)]) == 0
    text = page.read_text()
    assert "paired comparisons" in text and "| nominal | after Holm |" in text
    assert readme.main(["--readme", str(page), "--check"]) == 0
    capsys.readouterr()
    # one verdict word changed by hand, in the prose or in a table: the check fails
    for word, other in (("| lower |", "| higher |"), ("None survives", "All survive")):
        assert word in text
        page.write_text(text.replace(word, other, 1))
        assert readme.main(["--readme", str(page), "--check"]) == 1
        assert "the verdicts of results/x differs from its results" in capsys.readouterr().err


def test_a_verdict_typed_in_results_outside_a_block_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_results_tree(tmp_path / "results" / "x")
    page = tmp_path / "README.md"
    page.write_text("## Results\n\n<!-- table: results/x -->\n<!-- end table -->\n\n## Layout\n")
    assert readme.main(["--readme", str(page)]) == 0
    filled = page.read_text()
    page.write_text(filled.replace("## Layout\n", "## Layout\n\nA lower layer of the code.\n"))
    assert readme.main(["--readme", str(page), "--check"]) == 0  # outside Results: not a verdict
    page.write_text(filled.replace("\n\n## Layout", "\n\nxRDA is higher than magnitude pruning.\n\n## Layout"))
    assert readme.main(["--readme", str(page), "--check"]) == 1
    assert "a verdict typed in Results, outside a generated block: xRDA is higher" in capsys.readouterr().err
    assert readme.typed_verdicts("## Results\nThe dense recipes do not separate.\n## Next\n")


def test_the_prose_calls_pending_only_what_pending_txt_lists() -> None:
    """Outside the generated blocks, a sentence that calls a subset config's runs pending must name
    a config that ``results/subset/pending.txt`` still lists: typed prose cannot outlive its runs."""
    import re

    from reporting.budgets import pending

    text = (ROOT / "README.md").read_text()
    prose = re.sub(r"<!-- (\w[\w-]*):[^>]*-->.*?<!-- end \1 -->", "", text, flags=re.S)
    waiting = pending(ROOT / "results" / "subset")
    for paragraph in prose.split("\n\n"):
        if re.search(r"\bpending\b(?!\.txt)", paragraph):  # the word, not the file's name
            for name in re.findall(r"`(r20_\w+)`", paragraph):
                assert name in waiting, f"README calls {name}'s runs pending, but pending.txt does not list it"
