"""Every notebook, executed headless (nbclient, a real kernel), on the synthetic fixture tree and on
an empty results folder. The executed copies go to tmp_path; the committed notebooks stay untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from experiments.notebooks import NOTEBOOKS, execute, execute_all  # noqa: E402
from reporting import (  # noqa: E402
    figures,  # noqa: E402
    results,
)
from tests.conftest import ROOT  # noqa: E402
from tests.fixtures.synthetic_results import SYNTHETIC_LABEL, write_results_tree  # noqa: E402

# notebook -> the files it writes to FIGURES_DIR when its results exist
EXPECTED = {
    "fig1_accuracy_vs_sparsity": ["fig1_accuracy_vs_sparsity.png", "fig1_accuracy_vs_sparsity.pdf"],
    "fig2_structured": ["fig2_structured.png", "fig2_structured.pdf"],
    "fig3_layer_density": ["fig3_layer_density.png", "fig3_layer_density.pdf", "fig3_layer_density.csv"],
    "fig4_training_dynamics": ["fig4_training_dynamics.png", "fig4_training_dynamics.pdf"],
    "fig5_ablations": [
        "fig5a_reweighting.png",
        "fig5a_reweighting.pdf",
        "fig5b_matched_ablations.png",
        "fig5b_matched_ablations.pdf",
    ],
    "fig6_generalisation": ["fig6_generalisation.png", "fig6_generalisation.pdf"],
    "table7_summary": ["table7_summary.md", "table7_summary.csv"],
}


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def run_all(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """Execute every notebook; returns FIGURES_DIR and each notebook's printed text."""
    for name in ("RESULTS_DIR", "FIGURES_DIR", "MPLBACKEND"):  # restored after the test
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    figures, out = tmp_path / "figures", tmp_path / "executed"
    committed = {nb: nb.read_bytes() for nb in notebooks()}
    printed = {}
    for (nb, *_), _, error in execute_all([(nb, results, figures, out / nb.name) for nb in notebooks()], workers=2):
        assert error is None, (nb.name, error)
        cells = nbformat.read(out / nb.name, as_version=4).cells
        outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], nb.name
        printed[nb.stem] = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert {nb: nb.read_bytes() for nb in notebooks()} == committed
    return figures, printed


def test_every_notebook_is_expected_and_matches_build() -> None:
    import importlib.util

    assert [nb.stem for nb in notebooks()] == sorted(EXPECTED)
    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOKS / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert sorted(build.NOTEBOOKS) == sorted(EXPECTED)
    assert [stem for stem in build.NOTEBOOKS if build.differs(stem)] == []


def test_notebooks_draw_every_figure_from_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = write_results_tree(tmp_path / "results")
    figures, printed = run_all(results, tmp_path, monkeypatch)
    written = sorted(p.name for p in figures.iterdir())
    assert written == sorted(f for files in EXPECTED.values() for f in files)
    for name in written:
        assert (figures / name).stat().st_size > 500, name
    assert (figures / "fig1_accuracy_vs_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    assert (figures / "fig1_accuracy_vs_sparsity.pdf").read_bytes()[:4] == b"%PDF"
    assert "missing" not in printed["fig1_accuracy_vs_sparsity"] + printed["fig5_ablations"]
    table = (figures / "table7_summary.csv").read_text().splitlines()
    assert len(table) == 1 + 15 and table[0].startswith("experiment,variant,model,dataset")
    assert "| dense_r20 | dense |" in (figures / "table7_summary.md").read_text()


def test_notebooks_report_missing_results_and_remove_stale_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "results"
    empty.mkdir()
    # What an earlier execution on other results wrote: a figure not drawn again must not stay.
    (tmp_path / "figures").mkdir()
    for name in (f for files in EXPECTED.values() for f in files):
        (tmp_path / "figures" / name).write_text("drawn from results that are gone")
    (tmp_path / "figures" / "notes.txt").write_text("not a notebook's output")
    figures, printed = run_all(empty, tmp_path, monkeypatch)
    assert sorted(p.name for p in figures.iterdir()) == ["notes.txt"]
    for stem, text in printed.items():
        assert "0 finished run(s)" in text and "missing: no " in text, stem


def test_caption_names_data_profile_and_seeds(tmp_path: Path) -> None:
    runs = results.runs_frame(write_results_tree(tmp_path / "results"))
    fig, axes = figures.grid(1)
    axes[0].plot([0, 1], [0, 1], label="x")
    paths = figures.finish(fig, axes, "What it shows", runs, tmp_path / "figures", "caption")
    caption = fig._suptitle.get_text()
    plt.close(fig)
    assert caption.startswith("What it shows\n") and SYNTHETIC_LABEL in caption
    assert "profile subset" in caption and "1-2 seeds per point" in caption
    assert [p.name for p in paths] == ["caption.png", "caption.pdf"] and all(p.exists() for p in paths)


def test_reexecution_is_byte_identical_and_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Executing a notebook again on unchanged results rewrites no byte (no timestamps, no absolute
    paths of this machine), and the kernel says nothing on stderr (no TCP transport warning)."""
    results = write_results_tree(tmp_path / "results")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = NOTEBOOKS / "fig1_accuracy_vs_sparsity.ipynb"
    outputs = []
    for k in range(2):
        figures, out = tmp_path / f"figures{k}", tmp_path / f"executed{k}.ipynb"
        execute(notebook, results, figures, out)
        outputs.append(
            (
                out.read_bytes(),
                (figures / "fig1_accuracy_vs_sparsity.pdf").read_bytes(),
                (figures / "fig1_accuracy_vs_sparsity.png").read_bytes(),
            )
        )
    assert outputs[0][0].replace(b"figures0", b"figures1") == outputs[1][0]
    assert outputs[0][1:] == outputs[1][1:]
    relative = os.path.relpath(results, NOTEBOOKS)  # what the notebook is told and prints, not /tmp/...
    assert f"under {relative}".encode() in outputs[0][0] and b"iopub.execute_input" not in outputs[0][0]
    assert "WARNING" not in capfd.readouterr().err


def test_failing_notebook_names_its_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.notebooks import main

    bad = tmp_path / "bad.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('raise ValueError("no runs under RESULTS_DIR")')]
    nbformat.write(nb, bad)
    code = main(["--results", str(tmp_path), "--figures", str(tmp_path / "f"), "--notebooks", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == ["error: notebook bad.ipynb: CellExecutionError: ValueError: no runs under RESULTS_DIR"]


def test_notebooks_run_side_by_side_and_each_failure_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.notebooks import main

    paths = []
    for name, source in (("bad", 'raise ValueError("broken")'), ("good", 'print("fine")')):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source)]
        paths.append(tmp_path / f"{name}.ipynb")
        nbformat.write(nb, paths[-1])
    args = ["--results", str(tmp_path), "--figures", str(tmp_path / "f"), "--jobs", "2", "--notebooks"]
    assert main([*args, *map(str, paths)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: notebook bad.ipynb: CellExecutionError: ValueError: broken"
    assert captured.out.startswith("[notebook] good.ipynb: ")
    assert "fine" in (tmp_path / "f" / "good.ipynb").read_text()


def test_a_notebook_is_named_by_its_name_and_what_it_cannot_draw_is_said_on_the_console(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from experiments.notebooks import find_notebook, main

    assert (
        find_notebook("fig5_ablations") == find_notebook("fig5_ablations.ipynb") == NOTEBOOKS / "fig5_ablations.ipynb"
    )
    with pytest.raises(SystemExit):
        main(["--notebooks", "fig9"])
    assert "no notebook 'fig9'; the notebooks are fig1_accuracy_vs_sparsity," in capfd.readouterr().err
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('print("missing: no plain-l1 runs in these results; nothing drawn")')]
    nbformat.write(nb, tmp_path / "empty.ipynb")
    args = ["--results", str(tmp_path), "--figures", str(tmp_path / "f"), "--jobs", "1"]
    assert main([*args, "--notebooks", str(tmp_path / "empty.ipynb")]) == 0
    out = capfd.readouterr().out
    assert "[notebook] empty.ipynb: missing: no plain-l1 runs in these results; nothing drawn" in out


@pytest.mark.parametrize("jobs", ["1"])
def test_sigterm_stops_the_notebooks_and_their_kernels_within_seconds(tmp_path: Path, jobs: str) -> None:
    import nbformat

    figures = tmp_path / "figures"
    figures.mkdir()
    cell = "import os, time\nopen(os.path.join(os.environ['FIGURES_DIR'], f'kernel-{os.getpid()}'), 'w').close()\n"
    slow = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell + "time.sleep(300)")])
    notebooks = [tmp_path / f"slow{k}.ipynb" for k in (1, 2)]
    for path in notebooks:
        nbformat.write(slow, path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.notebooks", "--results", str(tmp_path), "--figures", str(figures)]
        + ["--jobs", jobs, "--notebooks", *map(str, notebooks)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.time() + 120
    while not list(figures.glob("kernel-*")) and time.time() < deadline:
        time.sleep(0.2)
    kernels = [int(p.name.split("-")[1]) for p in figures.glob("kernel-*")]
    assert kernels
    proc.send_signal(signal.SIGTERM)
    stopped = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - stopped < 20  # (the notebook itself sleeps 300 s)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "interrupted: notebooks stopped after 0 of 2; rerun the same command to execute them"
    ]
    time.sleep(1)
    for pid in kernels:  # gone, or a zombie waiting for its reaper: not computing
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
