"""Small plotting helpers shared by the notebooks: panels, captions, saving PNG + PDF.

Every variant's colour and legend place come from its method (the ``color`` and ``order``
columns of ``reporting.results.runs_frame``), the same in every figure.

Conventions: accuracies and fractions are plotted in percent; every point is an experiment's
mean over its seeds with the sample standard deviation as error bar; every figure's caption
(suptitle) says what it shows and, from ``results.title_line``, the data set label (which says
"CIFAR-10 subset" for the subset), the profile and the number of seeds per point.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reporting.results import title_line

DENSE_COLOR = "black"


def missing(frame: pd.DataFrame, what: str) -> bool:
    """True (after printing what is missing) when ``frame`` has no rows."""
    if frame.empty:
        print(f"missing: no {what} in these results; nothing drawn")
        return True
    return False


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (model, dataset) combinations present, sorted by dataset then model."""
    found = {(m, d) for m, d in zip(frame["model"], frame["dataset"])}
    return sorted(found, key=lambda md: (md[1], md[0]))


def select(frame: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    return frame[(frame["model"] == model) & (frame["dataset"] == dataset)]


def legend_order(frame: pd.DataFrame) -> list[str]:
    """The variants present, in legend order (the methods' ``order``, then the label)."""
    return [variant for _, variant in sorted(set(zip(frame["order"], frame["variant"])))]


def by_variant(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(variant, rows) in legend order."""
    for variant in legend_order(frame):
        yield variant, frame[frame["variant"] == variant]


def grid(panels: int, ncols: int = 3, size: tuple[float, float] = (4.6, 3.6)) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure with ``panels`` axes in rows of ``ncols`` (unused cells hidden)."""
    ncols = max(1, min(ncols, panels))
    nrows = max(1, -(-panels // ncols))
    width = max(size[0] * ncols, 8.0)  # room for the two-line caption
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, size[1] * nrows + 0.8), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def curve(
    ax: plt.Axes,
    points: pd.DataFrame,
    x: str,
    y: str,
    label: str,
    x_scale: float = 1.0,
    y_scale: float = 100.0,
    **style: Any,
) -> None:
    """``aggregate`` rows as one line with error bars (``<x>_std``, ``<y>_std``), sorted by x.

    Points whose x is not finite (e.g. the compression of an all-zero network) are left out
    with a printed note.
    """
    p = points.sort_values(x)
    finite = np.isfinite(p[x].astype(float))
    if not finite.all():
        print(f"note: {label}: {int((~finite).sum())} point(s) with non-finite {x} left out")
        p = p[finite]
    xerr = p[f"{x}_std"] * x_scale if f"{x}_std" in p else None
    options = {"marker": "o", "ms": 4, "capsize": 2, "lw": 1.2, "color": points["color"].iloc[0]} | style
    ax.errorbar(p[x] * x_scale, p[y] * y_scale, xerr=xerr, yerr=p[f"{y}_std"] * y_scale, label=label, **options)


def grouped_bars(ax: plt.Axes, points: pd.DataFrame, y: str, group: str = "match", scale: float = 100.0) -> None:
    """Bars of ``y`` (± ``<y>_std``) side by side per variant, one cluster per value of ``group``;
    clusters are labelled "<model>, <dataset>" and the shared operating point."""
    clusters = sorted(points[group].unique())
    variants = legend_order(points)
    width = 0.8 / len(variants)
    for k, variant in enumerate(variants):
        rows = points[points["variant"] == variant]
        offsets = [clusters.index(c) + (k - (len(variants) - 1) / 2) * width for c in rows[group]]
        ax.bar(
            offsets,
            rows[y] * scale,
            width,
            yerr=rows[f"{y}_std"] * scale,
            capsize=2,
            color=rows["color"].iloc[0],
            label=variant,
        )
    first = [points[points[group] == c].iloc[0] for c in clusters]
    ax.set_xticks(range(len(clusters)), [f"{r['model']}, {r['dataset']}\n{r['point']}" for r in first], fontsize=7)


def dense_band(ax: plt.Axes, dense: pd.DataFrame, y: str = "test_acc", scale: float = 100.0) -> None:
    """The dense control as a horizontal line (mean) and band (± std; none for one seed) across the panel."""
    for _, row in dense.iterrows():
        mean, std = row[y] * scale, row[f"{y}_std"] * scale
        ax.axhline(mean, color=DENSE_COLOR, lw=1, ls="--", label="dense")
        if np.isfinite(std):
            ax.axhspan(mean - std, mean + std, color=DENSE_COLOR, alpha=0.12, lw=0)


def compression_axis(ax: plt.Axes) -> None:
    """Log-scale x axis of compression ratios, ticks labelled "10x (90%)" with the weight sparsity."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda c, _: f"{c:g}x\n({100 * (1 - 1 / c):.0f}%)" if c >= 1 else ""))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("compression ratio, log scale (weight sparsity)")


def band(
    ax: plt.Axes, x: pd.Series, mean: pd.Series, std: pd.Series, label: str, color: Any, scale: float = 100.0
) -> None:
    """A line with a ± std band."""
    x, mean, std = np.asarray(x, float), np.asarray(mean, float) * scale, np.asarray(std, float) * scale
    ax.plot(x, mean, color=color, lw=1.2, label=label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)


def finish(
    fig: plt.Figure,
    axes: list[plt.Axes],
    what: str,
    frame: pd.DataFrame,
    figures: str | Path,
    stem: str,
    legend: bool = True,
) -> list[Path]:
    """Caption, one shared legend below the panels; saves ``<stem>.png`` and ``<stem>.pdf`` in ``figures``."""
    if legend:
        handles: dict[str, Any] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        if handles:
            fig.legend(
                handles.values(),
                handles.keys(),
                loc="outside lower center",
                ncol=min(4, len(handles)),
                fontsize=8,
                frameon=False,
            )
    fig.suptitle(f"{what}\n{title_line(frame)}", fontsize=9)
    return save(fig, figures, stem)


def save(fig: plt.Figure, figures: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` (150 dpi) and ``<stem>.pdf`` to ``figures``; returns the paths."""
    folder = Path(figures)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        # bbox "tight" keeps a caption wider than the panels; no creation date, so that drawing
        # unchanged results again gives the same bytes.
        fig.savefig(
            path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if path.suffix == ".pdf" else None
        )
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths
