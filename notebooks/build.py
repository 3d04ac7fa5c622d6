"""Write the notebooks of this folder from the cell sources below: ``python notebooks/build.py``.

The sources here are the one place the notebooks are edited; ``--check`` exits 1 when a
notebook's cells differ from them (outputs are ignored, so executed notebooks pass).
Execute them with ``python -m experiments.notebooks --profile P``. Each notebook reads
``RESULTS_DIR`` and writes its figure (PNG + PDF) or table (Markdown + CSV) to ``FIGURES_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

SETUP = """\
%matplotlib inline
import os, sys
sys.path.insert(0, os.path.abspath(".."))  # the repository root; notebooks run from notebooks/
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd
from reporting import figures, results, tables

RESULTS = Path(os.environ.get("RESULTS_DIR", "../results/subset"))
FIGURES = Path(os.environ.get("FIGURES_DIR", "../figures/subset"))
runs = results.runs_frame(RESULTS)
print(f"{len(runs)} finished run(s) of {runs['name'].nunique()} experiment(s) under {RESULTS}")"""

CONVENTIONS = (
    "Every point is one experiment: the mean over its seeds of the **final-epoch** test accuracy; thin "
    "error bars one sample standard deviation, thick translucent ones the 95% Student-t interval of the "
    "mean (neither for a single seed). Each dense control is a line with its 95% interval as a band. "
    "Sparsity counts exact zeros of the conv + linear weights against the dense architecture. Panel "
    'titles and the caption name the data ("CIFAR-10 subset" for the subset), the profile and the seeds '
    "per point."
)

NOTEBOOKS: dict[str, tuple[str, list[str]]] = {}

NOTEBOOKS["fig1_accuracy_vs_sparsity"] = (
    f"""\
# Figure 1: accuracy against sparsity, unstructured methods

Per model and data set: final test accuracy against the compression ratio (dense weights /
nonzero weights, log axis; every tick also gives the weight sparsity) of every unstructured
method (xRDA with the log-reweighted or plain l1 penalty, magnitude pruning, lottery tickets and
their controls, random pruning, SNIP, gradual magnitude pruning, RigL, ...), against the dense
controls of their recipes. {CONVENTIONS}

Writes `fig1_accuracy_vs_sparsity.png` / `.pdf`.""",
    [
        SETUP,
        """\
sel = runs[runs.family.isin(["dense", "unstructured"]) & runs.main]
points = results.aggregate(sel)
sparse = points[points.family == "unstructured"]
if not figures.missing(sparse, "unstructured runs", FIGURES / "fig1_accuracy_vs_sparsity"):
    panels = figures.pairs(sparse)
    fig, axes = figures.grid(len(panels), ncols=1, size=(9.0, 5.5))
    for ax, (model, dataset) in zip(axes, panels):
        here = figures.select(points, model, dataset)
        if not figures.missing(here[here.family == "dense"], f"dense control for {model}, {dataset}"):
            figures.dense_band(ax, here[here.family == "dense"])
        for variant, group in figures.by_variant(here[here.family == "unstructured"]):
            figures.curve(ax, group, "compression", "test_acc", variant)
        figures.compression_axis(ax)
        ax.set(title=figures.panel_title(points, model, dataset), ylabel="final test accuracy (%)")
    figures.finish(fig, axes, "Accuracy against compression, unstructured methods", sel, FIGURES,
                   "fig1_accuracy_vs_sparsity")
    plt.show()
    print(points[["name", "variant", "seeds", "test_acc", "test_acc_std", "test_acc_ci", "sparsity",
                  "compression"]].round(4).to_string())""",
    ],
)

NOTEBOOKS["fig2_structured"] = (
    f"""\
# Figure 2: structured sparsity, accuracy against FLOPs and parameters kept

Per model and data set: final test accuracy against the FLOPs kept (multiply-adds with a
nonzero weight on the exported, possibly physically smaller, model, as a share of the dense
architecture's) and against the nonzero parameters kept, for xRDA with kernel- or
channel-grouped penalties, network slimming, L0-HC and Dep-L0, against the dense controls of
their recipes. {CONVENTIONS}

Writes `fig2_structured.png` / `.pdf`.""",
    [
        SETUP,
        """\
sel = runs[runs.family.isin(["dense", "structured"])]
points = results.aggregate(sel)
structured = points[points.family == "structured"]
if not figures.missing(structured, "structured runs (xRDA kernel / channel, network slimming, L0-HC, Dep-L0)",
                    FIGURES / "fig2_structured"):
    panels = figures.pairs(structured)
    fig, axes = figures.grid(2 * len(panels), ncols=2, size=(6.5, 5.0))
    for i, (model, dataset) in enumerate(panels):
        here = figures.select(points, model, dataset)
        figures.missing(here[here.family == "dense"], f"dense control for {model}, {dataset}")
        for ax, kept, what, by in zip(axes[2 * i:2 * i + 2], ("flops_kept", "params_kept"),
                                      ("FLOPs kept (% of dense)", "nonzero parameters kept (% of dense)"),
                                      ("by FLOPs", "by parameters")):
            figures.dense_band(ax, here[here.family == "dense"])
            for variant, group in figures.by_variant(here[here.family == "structured"]):
                figures.curve(ax, group, kept, "test_acc", variant, x_scale=100)
            ax.set(title=f"{figures.panel_title(points, model, dataset)}: {by}", xlabel=what,
                   ylabel="final test accuracy (%)")
    figures.finish(fig, axes, "Structured sparsity: accuracy against FLOPs and parameters kept", sel, FIGURES,
                   "fig2_structured")
    plt.show()
    print(points[["name", "variant", "seeds", "test_acc", "test_acc_ci", "flops_kept", "params_kept"]].round(4)
          .to_string())""",
    ],
)

NOTEBOOKS["fig3_layer_density"] = (
    f"""\
# Figure 3: per-layer density of the sparse networks

One panel per model, data set and method: the density (nonzero / dense weights) of every
prunable layer, in network order, for each operating point of the method (mean over seeds;
the legend gives the operating point, in increasing order, and the achieved overall sparsity).
Removed channels count as zeros. {CONVENTIONS}

Writes `fig3_layer_density.png` / `.pdf` and the numbers as `fig3_layer_density.csv`.""",
    [
        SETUP,
        """\
sel = runs[runs.family.isin(["unstructured", "structured"])]
density = results.layer_density(results.layers_frame(sel))
if not figures.missing(density, "per-layer tables of sparse runs", FIGURES / "fig3_layer_density"):
    FIGURES.mkdir(parents=True, exist_ok=True)
    density.to_csv(FIGURES / "fig3_layer_density.csv", index=False)
    order = figures.legend_order(runs)
    panels = sorted({(m, d, v) for m, d, v in zip(density.model, density.dataset, density.variant)},
                    key=lambda p: (p[1], p[0], order.index(p[2])))
    value = dict(zip(runs.name, runs.point_value))  # the operating point as a number: lam, target or ratio
    fig, axes = figures.grid(len(panels), ncols=3)
    for ax, (model, dataset, variant) in zip(axes, panels):
        here = density[(density.model == model) & (density.dataset == dataset) & (density.variant == variant)]
        for name in sorted(set(here.name), key=lambda n: (value.get(n), n)):
            g = here[here.name == name]
            point = g.point.iloc[0]
            ax.plot(g.layer_index, 100 * g.density, marker=".", lw=1,
                    label=f"{point or name}: {100 * g.sparsity.iloc[0]:.1f}% sparse")
        ticks = g.iloc[:: max(1, len(g) // 12)]  # layer names, at most about a dozen
        ax.set_xticks(ticks.layer_index, ticks.layer, rotation=90, fontsize=6)
        ax.set(title=f"{variant}: {figures.panel_title(runs, model, dataset)}", ylabel="layer density (% nonzero)",
               ylim=(-3, 103))
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6)
    figures.finish(fig, axes, "Per-layer density of the sparse networks (conv + linear layers in network order)", sel,
                   FIGURES, "fig3_layer_density", legend=False)
    plt.show()""",
    ],
)

NOTEBOOKS["fig4_training_dynamics"] = (
    f"""\
# Figure 4: training dynamics, xRDA against dense

Accuracy and weight sparsity per epoch (mean over seeds, band one std) of xRDA with the
log-reweighted l1 penalty at each of its operating points, against the dense controls: the sparse
network is trained from random initialisation in one stage, no pruning step. The accuracy per epoch
is the validation split's (held out of training) where the runs have one, since their test set is
read only once, at the end; otherwise the test set's, as a diagnostic only. The reported figure is
the final epoch's test accuracy. {CONVENTIONS}

Writes `fig4_training_dynamics.png` / `.pdf`.""",
    [
        SETUP,
        """\
sel = runs[(runs.family == "dense") | (runs.variant == "xRDA log-l1")]
curves = results.epoch_mean(results.history_frame(sel), columns=("val_acc", "test_acc", "train_acc", "sparsity"))
if not figures.missing(curves[curves.method == "rda"], "per-epoch histories of xRDA log-l1 runs",
                    FIGURES / "fig4_training_dynamics"):
    panels = figures.pairs(curves[curves.method == "rda"])
    fig, axes = figures.grid(2 * len(panels), ncols=2)
    for i, (model, dataset) in enumerate(panels):
        here = figures.select(curves, model, dataset)
        accuracy = "val_acc" if here.val_acc.notna().any() else "test_acc"
        figures.missing(here[here.family == "dense"], f"dense control for {model}, {dataset}")
        order = here.groupby("name")["lam"].first().sort_values(na_position="first")
        for k, name in enumerate(order.index):  # each method its own colour (as in every figure); lam by line style
            g = here[here.name == name]
            label = f"{g.label.iloc[0]}, {name}"
            for ax, column in zip(axes[2 * i:2 * i + 2], (accuracy, "sparsity")):
                figures.band(ax, g.epoch, g[column], g[f"{column}_std"], label, g.color.iloc[0],
                             ls=("-", "--", ":", "-.")[k % 4])
        what = "validation accuracy" if accuracy == "val_acc" else "test accuracy (diagnostic)"
        title = figures.panel_title(curves, model, dataset)
        axes[2 * i].set(title=f"{title}: {what}", xlabel="epoch", ylabel=f"{what} (%)")
        axes[2 * i + 1].set(title=f"{title}: weight sparsity", xlabel="epoch", ylabel="zero conv + linear weights (%)")
        axes[2 * i + 1].legend(fontsize=7)
    figures.finish(fig, axes, "Training dynamics: xRDA log-l1 (one stage, from scratch) against dense", sel, FIGURES,
                   "fig4_training_dynamics", legend=False)
    plt.show()""",
    ],
)

NOTEBOOKS["fig5_ablations"] = (
    f"""\
# Figure 5: ablations

**(a)** Reweighting: xRDA with the log-reweighted l1 penalty against plain l1 (no
reweighting), accuracy against compression (each point one `lam`), dense controls as lines.
**(b)** Controlled comparisons: runs whose resolved configs are equal except for one field, side
by side: the averaging of the optimizer (xRDA, a = 1 - lr/lr_0; proximal SGD, a = 0; classic RDA,
a = 1) and the reweighting (log-l1 vs plain l1 at equal `lam`); final test accuracy and sparsity.
{CONVENTIONS}

Writes `fig5a_reweighting.png` / `.pdf` and `fig5b_matched_ablations.png` / `.pdf`.""",
    [
        SETUP,
        """\
rda = runs[runs.method == "rda"]
sel = rda[rda.variant.isin(["xRDA log-l1", "xRDA plain l1"])]
points, dense = results.aggregate(sel), results.aggregate(runs[runs.family == "dense"])
if not figures.missing(points[points.variant == "xRDA plain l1"], "xRDA plain-l1 runs for ablation (a)",
                    FIGURES / "fig5a_reweighting"):
    panels = figures.pairs(points)
    fig, axes = figures.grid(len(panels))
    for ax, (model, dataset) in zip(axes, panels):
        figures.dense_band(ax, figures.select(dense, model, dataset))
        for variant, group in figures.by_variant(figures.select(points, model, dataset)):
            figures.curve(ax, group, "compression", "test_acc", variant)
        figures.compression_axis(ax)
        figures.y_span(ax, 20)
        ax.set(title=figures.panel_title(points, model, dataset), ylabel="final test accuracy (%)")
    figures.finish(fig, axes, "Ablation (a): log-reweighted against plain l1 (xRDA; each point one lam)", sel, FIGURES,
                   "fig5a_reweighting")
    plt.show()""",
        """\
studies = {"optimizer.avg": "averaging: xRDA / proximal SGD / RDA", "method.reweight": "log-l1 vs plain l1"}
found = {field: results.matched(rda, field) for field in studies}
found = {field: m for field, m in found.items() if not figures.missing(m, f"matched runs for {studies[field]}")}
if found:
    fig, axes = figures.grid(2 * len(found), ncols=2)
    for i, (field, matched) in enumerate(found.items()):
        points = results.aggregate(matched)
        for ax, column, what in zip(axes[2 * i:2 * i + 2], ("test_acc", "sparsity"),
                                    ("final test accuracy (%)", "weight sparsity (%)")):
            figures.grouped_bars(ax, points, column)
            ax.set_title(f"{what.split(' (')[0]}\\n{studies[field]} (only {field} differs)", fontsize=8)
            ax.set_ylabel(what)
        print(points[["name", "variant", "match", "seeds", "test_acc", "test_acc_std", "test_acc_ci", "sparsity"]]
              .round(4).to_string())
    figures.finish(fig, axes, "Ablation (b): controlled comparisons", pd.concat(list(found.values())), FIGURES,
                   "fig5b_matched_ablations")
    plt.show()
else:
    figures.remove_stale(FIGURES / "fig5b_matched_ablations")""",
    ],
)

NOTEBOOKS["fig6_generalisation"] = (
    f"""\
# Figure 6: generalisation, train-test gap

Left: the gap between the training accuracy (the running accuracy over the last epoch's
augmented training batches, as the loop measures it) and the final test accuracy, in
percentage points, of the dense controls and of xRDA log-l1 at each `lam`, smallest first.
Right: the gap per epoch between the training accuracy and the validation accuracy (the test
accuracy where the runs have no validation split) of the dense controls and xRDA at the smallest
`lam` (mean over seeds). {CONVENTIONS}

Writes `fig6_generalisation.png` / `.pdf`.""",
    [
        SETUP,
        """\
sel = runs[(runs.family == "dense") | (runs.variant == "xRDA log-l1")]
points = results.aggregate(sel)
if not figures.missing(points[points.method == "rda"], "xRDA log-l1 runs", FIGURES / "fig6_generalisation"):
    curves = results.epoch_mean(results.history_frame(sel), columns=("train_acc", "val_acc", "test_acc"))
    panels = figures.pairs(points[points.method == "rda"])
    fig, axes = figures.grid(2 * len(panels), ncols=2)
    for i, (model, dataset) in enumerate(panels):
        here = figures.select(points, model, dataset).sort_values(["family", "lam"], na_position="first")
        title = figures.panel_title(points, model, dataset)
        ax = axes[2 * i]
        spread = 100 * here.gap_std if here.gap_std.notna().any() else None
        ax.bar(range(len(here)), 100 * here.gap, yerr=spread, capsize=2, color=list(here.color))
        ax.set_xticks(range(len(here)), [p or v for p, v in zip(here.point, here.variant)], rotation=30, fontsize=7)
        ax.set(title=f"{title}: final gap", ylabel="train - test accuracy (pp)")
        held = "val_acc" if curves.val_acc.notna().any() else "test_acc"
        shown = list(here[here.family == "dense"].name) + list(here[here.method == "rda"].name[:1])
        for name in shown:
            g = curves[curves.name == name]
            axes[2 * i + 1].plot(g.epoch, 100 * (g.train_acc - g[held]), label=g.label.iloc[0], color=g.color.iloc[0])
        what = "validation" if held == "val_acc" else "test"
        axes[2 * i + 1].set(title=f"{title}: gap per epoch", xlabel="epoch", ylabel=f"train - {what} accuracy (pp)")
        axes[2 * i + 1].legend(fontsize=7)
    figures.finish(fig, axes, "Generalisation: train-test gap (train accuracy: running, augmented batches), dense "
                   "against xRDA log-l1", sel, FIGURES, "fig6_generalisation", legend=False)
    plt.show()
    print(points[["name", "variant", "seeds", "train_acc", "test_acc", "gap", "gap_std", "sparsity"]].round(4)
          .to_string())""",
    ],
)

NOTEBOOKS["table7_summary"] = (
    """\
# Table 7: summary

Every experiment (method, model, data set) with its seeds, epochs, final test accuracy
(mean ± sample std over seeds [± half-width of the 95% Student-t interval], %), the paired
(same seed) difference to the dense control of its recipe with its 95% interval, weight sparsity,
compression ratio, FLOPs kept (nonzero multiply-adds / dense), nonzero parameters, and the number
the reproduced paper or its release reports for the same setting where one is cited in
`reporting/reported.yaml` (with its source); blank where none is. The data label and profile
follow the table.

Writes `table7_summary.md` and `table7_summary.csv` (numbers in percent, unrounded).""",
    [
        SETUP,
        """\
from IPython.display import Markdown, display

table = tables.summary_frame(runs)
if not figures.missing(table, "finished runs", FIGURES / "table7_summary"):
    FIGURES.mkdir(parents=True, exist_ok=True)
    table.to_csv(FIGURES / "table7_summary.csv", index=False)
    markdown = tables.summary_markdown(table)
    (FIGURES / "table7_summary.md").write_text(markdown)
    print(f"wrote {FIGURES / 'table7_summary.md'}, {FIGURES / 'table7_summary.csv'}; "
          f"{table.paper_source.ne('').sum()} row(s) with a cited paper figure")
    display(Markdown(markdown))""",
    ],
)


def notebook(stem: str) -> nbformat.NotebookNode:
    """The notebook ``stem`` built from its sources (no outputs; stable cell ids)."""
    markdown, code = NOTEBOOKS[stem]
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = [nbformat.v4.new_markdown_cell(markdown, id=f"{stem}-0")]
    nb.cells += [nbformat.v4.new_code_cell(source, id=f"{stem}-{k}") for k, source in enumerate(code, 1)]
    return nb


def differs(stem: str) -> bool:
    """Whether notebooks/<stem>.ipynb is missing or its cell types and sources differ from the sources here."""
    path = HERE / f"{stem}.ipynb"
    if not path.exists():
        return True
    have = nbformat.read(path, as_version=4).cells
    want = notebook(stem).cells
    return [(c.cell_type, c.source) for c in have] != [(c.cell_type, c.source) for c in want]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        stale = [stem for stem in NOTEBOOKS if differs(stem)]
        for stem in stale:
            print(f"notebooks/{stem}.ipynb differs from notebooks/build.py: run python notebooks/build.py")
        return 1 if stale else 0
    for stem in NOTEBOOKS:
        if differs(stem):  # rewrite only what changed, so executed outputs of the others are kept
            nbformat.write(notebook(stem), HERE / f"{stem}.ipynb")
            print(f"wrote notebooks/{stem}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
