"""Small plotting helpers shared by the notebooks: panels, captions, saving PNG + PDF.

Every variant's colour and legend place come from its method (the ``color`` and ``order``
columns of ``reporting.results.runs_frame``), the same in every figure.

Conventions: accuracies and fractions are plotted in percent; every point is an experiment's
mean over its seeds with the sample standard deviation as error bar; every figure's caption
(suptitle) says what it shows and, from ``results.title_line``, the data set label (which says
"CIFAR-10 subset" for the subset), the profile and the number of seeds per point.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from reporting.results import title_line

DENSE_COLOR = "black"


OUTPUT_SUFFIXES = (".png", ".pdf", ".csv", ".md")


def missing(frame: pd.DataFrame, what: str, output: str | Path | None = None) -> bool:
    """True (after printing what is missing) when ``frame`` has no rows; then also removes the
    figure ``output`` (a path without suffix) drawn earlier (``remove_stale``)."""
    if frame.empty:
        print(f"missing: no {what} in these results; nothing drawn")
        if output is not None:
            remove_stale(output)
        return True
    return False


def remove_stale(output: str | Path) -> None:
    """Remove ``<output>.png/.pdf/.csv/.md``: a figure that is not drawn again would otherwise
    stay beside the new ones, showing results that are no longer there."""
    removed = [Path(f"{output}{suffix}") for suffix in OUTPUT_SUFFIXES]
    removed = [path for path in removed if path.is_file()]
    for path in removed:
        path.unlink()
    if removed:
        print("removed stale " + ", ".join(str(p) for p in removed))


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
    """``aggregate`` rows as one line, sorted by x: thin error bars one sample std (``<y>_std``), thick
    translucent ones the 95% t-interval of the mean (``<y>_ci``); none for a single seed.

    Points whose x is not finite (e.g. the compression of an all-zero network) are left out
    with a printed note.
    """
    p = points.sort_values(x)
    finite = np.isfinite(p[x].astype(float))
    if not finite.all():
        print(f"note: {label}: {int((~finite).sum())} point(s) with non-finite {x} left out")
        p = p[finite]
    color = points["color"].iloc[0]
    options = {"marker": "o", "ms": 4, "lw": 1.2, "color": color} | style
    xs, ys = p[x] * x_scale, p[y] * y_scale
    ax.plot(xs, ys, label=label, **options)
    for spread, width, alpha in ((f"{y}_std", 1.0, 1.0), (f"{y}_ci", 4.0, 0.3)):
        err = p[spread].astype(float) * y_scale if spread in p else None
        if err is not None and np.isfinite(err).any():
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt="none",
                ecolor=color,
                elinewidth=width,
                alpha=alpha,
                capsize=2 if width == 1.0 else 0,
            )


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
            yerr=rows[f"{y}_std"] * scale if rows[f"{y}_std"].notna().any() else None,
            capsize=2,
            color=rows["color"].iloc[0],
            label=variant,
        )
    first = [points[points[group] == c].iloc[0] for c in clusters]
    ax.set_xticks(
        range(len(clusters)),
        [f"{panel_title(points, r['model'], r['dataset'])}\n{r['point']}" for r in first],
        fontsize=7,
    )


def dense_band(ax: plt.Axes, dense: pd.DataFrame, y: str = "test_acc", scale: float = 100.0) -> None:
    """Each dense control as a horizontal line (mean) with a band (the 95% t-interval of the mean; none
    for one seed) across the panel, labelled with its experiment when there are several."""
    styles = ["--", ":", "-."]
    for k, (_, row) in enumerate(dense.sort_values("name").iterrows()):
        mean, ci = row[y] * scale, row.get(f"{y}_ci", math.nan) * scale
        label = f"dense control: {row['name']}" if len(dense) > 1 else "dense control"
        ax.axhline(mean, color=row.get("color", DENSE_COLOR), lw=1, ls=styles[k % 3], label=label)
        if np.isfinite(ci):
            ax.axhspan(mean - ci, mean + ci, color=row.get("color", DENSE_COLOR), alpha=0.10, lw=0)


MODEL_NAMES = {
    "resnet20": "ResNet-20",
    "resnet32": "ResNet-32",
    "resnet56": "ResNet-56",
    "resnet110": "ResNet-110",
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "vgg16": "VGG-16",
    "vgg19": "VGG-19",
    "densenet40": "DenseNet-40",
}


def panel_title(frame: pd.DataFrame, model: str, dataset: str) -> str:
    """ "ResNet-20, CIFAR-10 subset": the model and the data the panel's runs used (a subset says so)."""
    rows = select(frame, model, dataset)
    data = rows["data_name"].iloc[0] if "data_name" in rows and len(rows) else dataset
    return f"{MODEL_NAMES.get(model, model)}, {data}"


def y_span(ax: plt.Axes, at_least: float = 20.0) -> None:
    """Widen the y axis to at least ``at_least`` points, so that noise does not look like a trend."""
    low, high = ax.get_ylim()
    if high - low < at_least:
        middle = (low + high) / 2
        ax.set_ylim(middle - at_least / 2, middle + at_least / 2)


COMPRESSION_TICKS = (1, 1.25, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)


def compression_axis(ax: plt.Axes) -> None:
    """Log-scale x axis of compression ratios, every tick inside the range labelled "5x\n(80%)" with
    the weight sparsity it means."""
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [t for t in COMPRESSION_TICKS if low <= t <= high] or [low, high]
    ax.set_xticks(ticks, [f"{t:g}x\n({100 * (1 - 1 / t):.0f}%)" for t in ticks], fontsize=7)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("compression ratio, log scale (weight sparsity)")


def band(
    ax: plt.Axes,
    x: pd.Series,
    mean: pd.Series,
    std: pd.Series,
    label: str,
    color: Any,
    scale: float = 100.0,
    ls: str = "-",
) -> None:
    """A line with a ± std band; a run of one or two epochs gets markers, so that it shows at all."""
    x, mean, std = np.asarray(x, float), np.asarray(mean, float) * scale, np.asarray(std, float) * scale
    ax.plot(x, mean, color=color, lw=1.2, ls=ls, label=label, marker="o" if len(x) <= 2 else None, ms=4)
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
    """Caption, one shared legend below the panels; saves ``<stem>.png`` and ``<stem>.pdf`` in ``figures``.

    Two panels with the same title are refused: a reader cannot tell them apart (each must say what
    differs, e.g. its x axis or the ablated field)."""
    repeated = [t for t, n in Counter(ax.get_title() for ax in axes).items() if t and n > 1]
    if repeated:
        raise ValueError(f"{stem}: two or more panels share the title {repeated[0]!r}")
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
