"""Execute every notebook against one profile's results: ``python -m experiments.notebooks --profile P``.

Each notebook reads ``RESULTS_DIR`` and writes its figures to ``FIGURES_DIR``
(figures/<profile>/). The notebooks in notebooks/ are committed with the outputs of the
committed results (the ``subset`` profile), so for that profile they are rewritten in
place; for any other profile the executed copies go beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from experiments.arguments import one_line_failures, positive_int

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COMMITTED_PROFILE = "subset"


def execute(notebook: Path, results: Path, figures: Path, out: Path, timeout: int = 600) -> Any:
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    from training.records import atomic_write_text

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:  # timestamps of an earlier execution
        cell.metadata.pop("execution", None)
    # Paths relative to the notebook's folder (where the kernel runs): the outputs then hold no
    # absolute path of this machine, and re-executing on unchanged results changes no byte.
    os.environ["RESULTS_DIR"] = os.path.relpath(results.resolve(), notebook.parent.resolve())
    os.environ["FIGURES_DIR"] = os.path.relpath(figures.resolve(), notebook.parent.resolve())
    os.environ.setdefault("MPLBACKEND", "Agg")
    # A local kernel over IPC sockets: no network port, and no warning about unencrypted TCP.
    with tempfile.TemporaryDirectory() as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            coalesce_streams=True,
            config=config,
            resources={"metadata": {"path": str(notebook.parent)}},
        )
        client.execute()
    atomic_write_text(out, nbformat.writes(nb) + "\n")
    return nb


def missing_lines(nb: Any) -> list[str]:
    """What an executed notebook said it could not draw (``reporting.figures.missing``'s lines)."""
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines += [line for line in output.get("text", "").splitlines() if line.startswith("missing: ")]
    return lines


def _execute_timed(notebook: Path, results: Path, figures: Path, out: Path) -> tuple[float, str | None]:
    """``execute`` in a worker: seconds taken, and the error as one line (None when it ran); what the
    notebook could not draw is printed here, on the console, not only inside the notebook."""
    start = time.perf_counter()
    try:
        for line in missing_lines(execute(notebook, results, figures, out)):
            print(f"[notebook] {notebook.name}: {line}", flush=True)
    except Exception as exc:
        # The error's name and message (CellExecutionError carries them; its text ends in a blank line).
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", None) else (lines[-1] if lines else "")
        return time.perf_counter() - start, f"{type(exc).__name__}: {last}"
    return time.perf_counter() - start, None


def execute_all(
    jobs: list[tuple[Path, Path, Path, Path]], workers: int
) -> Iterator[tuple[tuple[Path, Path, Path, Path], float, str | None]]:
    """``execute`` every (notebook, results, figures, out), ``workers`` at a time, each in its own process
    (a notebook's paths reach its kernel through the environment); yields them in the order given.
    Stopped (SIGTERM, Ctrl-C), it stops every worker and their kernels at once."""
    # spawn: a fresh interpreter per worker, not a fork of a process that may hold torch's threads
    pool = ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"), initializer=_worker)
    try:
        futures = [pool.submit(_execute_timed, *job) for job in jobs]
        for job, future in zip(jobs, futures):
            yield (job, *future.result())
    except BaseException:  # stopped: every worker and its kernel killed now (a kernel would go on computing)
        for process in list(getattr(pool, "_processes", {}).values()):
            _kill_tree(process.pid)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _worker() -> None:
    """Ctrl-C is the main process's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _kill_tree(pid: int) -> None:
    """Kill ``pid`` and its children (a notebook's kernel leads a process group of its own) at once."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            child = int(stat.parent.name)
            with contextlib.suppress(OSError):
                os.killpg(child, signal.SIGKILL) if os.getpgid(child) == child else os.kill(child, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def find_notebook(name: str) -> Path:
    """A notebook by its path, or by its name in notebooks/ (with or without ``.ipynb``)."""
    for candidate in (Path(name), NOTEBOOKS / name, NOTEBOOKS / f"{name}.ipynb"):
        if candidate.is_file() and candidate.suffix == ".ipynb":
            return candidate.resolve()
    known = ", ".join(sorted(n.stem for n in NOTEBOOKS.glob("*.ipynb")))
    raise FileNotFoundError(f"no notebook {name!r}; the notebooks are {known}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.notebooks", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="full")
    p.add_argument("--results", type=Path, default=None, help="default: results/<profile>")
    p.add_argument("--figures", type=Path, default=None, help="default: figures/<profile>")
    p.add_argument(
        "--notebooks",
        nargs="*",
        default=None,
        help="paths, or names in notebooks/ (fig1_accuracy_vs_sparsity, with or without .ipynb); default: every one",
    )
    p.add_argument(
        "--jobs", type=positive_int, default=None, help="notebooks executed at once (default: the cores, at most 4)"
    )
    args = p.parse_args(argv)
    try:
        chosen = [find_notebook(name) for name in args.notebooks or []]
    except FileNotFoundError as exc:
        p.error(str(exc))
    results = args.results or ROOT / "results" / args.profile
    figures = args.figures or ROOT / "figures" / args.profile
    if not results.is_dir():
        p.error(f"{results}: no such results folder (--results, or --profile for results/<profile>)")
    figures.mkdir(parents=True, exist_ok=True)
    jobs = []
    for notebook in chosen or sorted(NOTEBOOKS.glob("*.ipynb")):
        out = notebook if args.profile == COMMITTED_PROFILE and args.results is None else figures / notebook.name
        jobs.append((notebook, results, figures, out))
    workers = args.jobs or min(len(os.sched_getaffinity(0)), 4, len(jobs))
    failed, done = [], 0
    signal.signal(signal.SIGTERM, _stop)  # SIGTERM as Ctrl-C: unwind, stop the kernels, say so
    try:
        for (notebook, _, _, out), seconds, error in execute_all(jobs, workers):
            done += 1
            if error is None:
                where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
                print(f"[notebook] {notebook.name}: {seconds:.0f}s -> {where}", flush=True)
            else:  # every failing notebook is reported, not just the first
                print(f"error: notebook {notebook.name}: {error}", file=sys.stderr, flush=True)
                failed.append(notebook.name)
    except KeyboardInterrupt:
        print(
            f"interrupted: notebooks stopped after {done} of {len(jobs)}; rerun the same command to execute them",
            file=sys.stderr,
            flush=True,
        )
        return 130
    return 1 if failed else 0


def _stop(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the unwinding is not interrupted again
    raise KeyboardInterrupt


_main = one_line_failures(main)


if __name__ == "__main__":
    sys.exit(_main())
