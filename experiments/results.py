"""Load what the runner wrote under a results folder into tables, for notebooks and summaries."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml


def load_runs(results: str | Path) -> list[dict[str, Any]]:
    """One record per finished run (a folder with metrics.json): metrics plus its resolved config."""
    runs = []
    for metrics_path in sorted(Path(results).glob("*/seed*/metrics.json")):
        run = json.loads(metrics_path.read_text())
        config_path = metrics_path.parent / "config.yaml"
        run["config"] = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
        run["run_dir"] = str(metrics_path.parent)
        runs.append(run)
    return runs


def load_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows of one run, numbers as floats (epoch counts as ints)."""
    rows = []
    with open(Path(run_dir) / "history.csv") as f:
        for row in csv.DictReader(f):
            rows.append({k: (v if k == "stage" else int(v) if k in ("epoch", "stage_epoch") else float(v))
                         for k, v in row.items()})
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for a single value: one seed says nothing of the spread)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per experiment: mean +- std over its seeds of the headline numbers."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["name"], []).append(run)
    rows = []
    for name, group in sorted(groups.items()):
        first = group[0]
        acc, acc_std = mean_std([r["test_acc"] for r in group])
        sparsity, sparsity_std = mean_std([r["sparsity"] for r in group])
        flops = mean_std([r["flops_effective"] / r["flops_dense"] for r in group])[0]
        rows.append({
            "name": name, "method": first["method"], "model": first["model"], "dataset": first["dataset"],
            "data": first.get("data_label", first["dataset"]), "profile": first.get("profile", ""),
            "seeds": len(group), "epochs": first["epochs"],
            "test_acc": acc, "test_acc_std": acc_std, "sparsity": sparsity, "sparsity_std": sparsity_std,
            "flops_kept": flops, "params_nonzero": mean_std([r["params_nonzero"] for r in group])[0],
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of ``summarise`` rows for the terminal."""
    header = f"{'experiment':42s} {'method':10s} {'model':10s} {'data':8s} {'seeds':>5s} {'epochs':>6s} " \
             f"{'test acc (%)':>15s} {'sparsity (%)':>13s} {'FLOPs kept':>10s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = f"{100 * r['test_acc']:.2f}" + ("" if math.isnan(r["test_acc_std"]) else f" +- {100 * r['test_acc_std']:.2f}")
        lines.append(f"{r['name'][:42]:42s} {r['method'][:10]:10s} {r['model'][:10]:10s} {r['dataset'][:8]:8s} "
                     f"{r['seeds']:5d} {r['epochs']:6d} {acc:>15s} {100 * r['sparsity']:13.2f} "
                     f"{100 * r['flops_kept']:9.1f}%")
    labels = sorted({r["data"] for r in rows})
    if labels:
        lines.append("data: " + "; ".join(labels))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Tables for the notebooks: one row per run (pandas), labels that tell methods and ablations
# apart, aggregation over seeds, per-epoch and per-layer tables, and the summary table.
# ---------------------------------------------------------------------------------------------

STRUCTURED_METHODS = ("slimming", "l0hc", "dep_l0")
UNSTRUCTURED_METHODS = ("magnitude", "lottery", "random")

# Legend order of the variants `variant_of` can return (others follow alphabetically).
VARIANT_ORDER = (
    "dense",
    "xRDA log-l1", "xRDA plain l1", "magnitude one-shot", "magnitude iterative", "lottery ticket",
    "lottery ticket (random reinit)", "random", "proximal SGD log-l1", "RDA (a=1) log-l1",
    "xRDA log-l1 (kernel)", "xRDA log-l1 (channel)", "xRDA log-l1 (kernel), group prox",
    "xRDA log-l1 (channel), group prox", "network slimming", "L0-HC", "Dep-L0 (forward)",
    "Dep-L0 (backward)", "xRDA plain l1 (kernel)", "xRDA plain l1 (channel)", "proximal SGD plain l1",
    "RDA (a=1) plain l1",
)

# Entries of a run's metrics that are averaged over seeds by `aggregate` (when present).
METRICS = (
    "test_acc", "train_acc", "gap", "test_loss", "train_loss", "sparsity", "sparsity_all", "compression",
    "flops_kept", "params_kept", "params_nonzero", "params_total", "flops_effective", "params_physical",
    "flops_physical", "kernel_sparsity", "channel_sparsity", "channel_ratio_achieved", "wall_time_s",
)

# Columns `runs_frame` always has, so that filters work on an empty results folder too.
FRAME_COLUMNS = (
    "name", "seed", "method", "variant", "family", "point", "label", "optimizer_variant", "lam", "model",
    "dataset", "data_label", "profile", "epochs", "test_acc", "train_acc", "gap", "test_loss", "train_loss",
    "sparsity", "sparsity_all", "compression", "flops_dense", "flops_effective", "flops_kept", "params_dense",
    "params_nonzero", "params_kept", "run_dir", "config", "layers",
)

# Figures reported by the reproduced papers, keyed by experiment name (a config file's stem):
#   {"test_acc": fraction, "sparsity": fraction over the paper's own count, "source": "<paper>, Table N"}.
# Only numbers read from a specific table of a specific paper belong here; an experiment without an
# entry shows blank paper columns in the summary table. No entry has been verified yet.
PAPER_REPORTED: dict[str, dict[str, Any]] = {}


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def optimizer_variant(config: dict[str, Any]) -> str:
    """The averaging of the rda optimizer: "xRDA" (a = 1 - lr / lr_0, "coupled"), "proximal SGD"
    (a = 0), "RDA (a=1)" (classic dual averaging) or "RDA (a=x)"; "" for any other optimizer."""
    opt = _section(config, "optimizer")
    if opt.get("name") != "rda":
        return ""
    avg = opt.get("avg", "coupled")
    if avg == "coupled":
        return "xRDA"
    a = float(avg)
    return "proximal SGD" if a == 0.0 else "RDA (a=1)" if a == 1.0 else f"RDA (a={a:g})"


def variant_of(method: str, config: dict[str, Any]) -> str:
    """What tells a run's method apart from the others, ablations included (see VARIANT_ORDER).

    rda: "<optimizer variant> <log-l1 | plain l1>" plus " (kernel)" / " (channel)" for grouped
    penalties and ", group prox" for the group-lasso proximal step; magnitude: one-shot
    (rounds = 1) or iterative; lottery: with or without random re-initialisation; Dep-L0: the
    direction of its gate chain.
    """
    m = _section(config, "method")
    if method == "rda":
        penalty = "log-l1" if m.get("reweight", "log") == "log" else "plain l1"
        name = f"{optimizer_variant(config) or 'rda'} {penalty}"
        if m.get("group", "none") != "none":
            name += f" ({m['group']})"
        if m.get("prox", "l1") == "group":
            name += ", group prox"
        return name
    if method == "magnitude":
        return "magnitude one-shot" if int(m.get("rounds", 1)) == 1 else "magnitude iterative"
    if method == "lottery":
        return "lottery ticket (random reinit)" if m.get("reinit") else "lottery ticket"
    if method == "dep_l0":
        return f"Dep-L0 ({m.get('direction', 'forward')})"
    return {"slimming": "network slimming", "l0hc": "L0-HC"}.get(method, method)


def family_of(method: str, config: dict[str, Any]) -> str:
    """"dense", "unstructured" (weights), "structured" (kernels / channels) or "other"."""
    if method == "dense":
        return "dense"
    if method == "rda":
        return "unstructured" if _section(config, "method").get("group", "none") == "none" else "structured"
    if method in UNSTRUCTURED_METHODS:
        return "unstructured"
    if method in STRUCTURED_METHODS:
        return "structured"
    return "other"


def operating_point(method: str, config: dict[str, Any]) -> str:
    """The knob that sets a run's sparsity: "lam 1e-05", "target 80%", "30% channels removed"; "" for dense."""
    m = _section(config, "method")
    if method in ("rda", "l0hc", "dep_l0") and "lam" in m:
        return f"lam {float(m['lam']):g}"
    if method in UNSTRUCTURED_METHODS and "sparsity" in m:
        return f"target {100 * float(m['sparsity']):g}%"
    if method == "slimming" and "channel_ratio" in m:
        return f"{100 * float(m['channel_ratio']):g}% channels removed"
    return ""


def label_for(run: dict[str, Any]) -> str:
    """A run's legend label: its variant and operating point, e.g. "xRDA log-l1, lam 1e-05"."""
    config = run.get("config") or {}
    variant, point = variant_of(run["method"], config), operating_point(run["method"], config)
    return f"{variant}, {point}" if point else variant


def _ratio(num: Any, den: Any) -> float:
    return float(num) / float(den) if num is not None and den else math.nan


def runs_frame(results: str | Path) -> pd.DataFrame:
    """One row per finished run: every scalar entry of its metrics.json, plus

    variant / family / point / label (see ``variant_of`` etc.), optimizer_variant, lam,
    gap = train_acc - test_acc (train_acc: the last epoch's running accuracy on augmented batches),
    compression = 1 / (1 - sparsity) (inf when every weight is zero), flops_kept =
    flops_effective / flops_dense, params_kept = params_nonzero / params_dense, and the resolved
    config and per-layer table as Python objects. Always has the columns of FRAME_COLUMNS.
    """
    rows = []
    for run in load_runs(results):
        row: dict[str, Any] = {k: v for k, v in run.items() if v is None or isinstance(v, (bool, int, float, str))}
        config, method = run["config"] or {}, run["method"]
        sparsity = float(run.get("sparsity", math.nan))
        lam = _section(config, "method").get("lam")
        row.update(
            variant=variant_of(method, config), family=family_of(method, config),
            point=operating_point(method, config), label=label_for(run),
            optimizer_variant=optimizer_variant(config), lam=float(lam) if lam is not None else math.nan,
            data_label=run.get("data_label", run.get("dataset", "")),
            gap=float(run.get("train_acc", math.nan)) - float(run.get("test_acc", math.nan)),
            compression=1.0 / (1.0 - sparsity) if sparsity < 1.0 else math.inf,
            flops_kept=_ratio(run.get("flops_effective"), run.get("flops_dense")),
            params_kept=_ratio(run.get("params_nonzero"), run.get("params_dense")),
            config=config, layers=run.get("layers", []),
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in FRAME_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame


def aggregate(frame: pd.DataFrame, keys: tuple[str, ...] = ("name",)) -> pd.DataFrame:
    """One row per group of ``keys`` (default: per experiment, i.e. over its seeds).

    Each metric of METRICS becomes its mean and ``<metric>_std``, the sample standard deviation
    (n - 1 in the denominator; NaN for a single seed, as ``mean_std``); ``seeds`` counts the runs;
    every other column keeps the group's first value.
    """
    metrics = [m for m in METRICS if m in frame and m not in keys]
    rows = []
    for _, group in frame.groupby(list(keys), sort=True, dropna=False):
        row = {c: group[c].iloc[0] for c in frame.columns if c not in metrics and c not in ("seed", "run_dir")}
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce")
            row[m] = values.mean()
            row[f"{m}_std"] = values.std(ddof=1) if values.count() > 1 else math.nan
        row["seeds"] = len(group)
        rows.append(row)
    columns = [c for c in frame.columns if c not in ("seed", "run_dir")] + [f"{m}_std" for m in metrics] + ["seeds"]
    return pd.DataFrame(rows, columns=columns)


def variant_key(variant: str) -> tuple[int, str]:
    """Sort key: VARIANT_ORDER first, then alphabetical."""
    return (VARIANT_ORDER.index(variant), "") if variant in VARIANT_ORDER else (len(VARIANT_ORDER), variant)


def title_line(frame: pd.DataFrame) -> str:
    """What a figure shows, for its caption: "<data label(s)> | profile <p> | <n> seeds per point".

    Works on ``runs_frame`` rows (seeds counted per experiment) and on ``aggregate`` rows (``seeds``).
    """
    if frame.empty:
        return "no runs"
    if "seeds" in frame and "seed" not in frame:
        counts = frame["seeds"].astype(int)
    else:
        counts = frame.groupby("name")["seed"].nunique()
    lo, hi = int(counts.min()), int(counts.max())
    seeds = f"{lo} seed{'s' if hi > 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"
    spread = " (mean ± std)" if hi > 1 else " (no spread from one seed)"
    data = "; ".join(sorted(set(frame["data_label"].astype(str))))
    profiles = ", ".join(sorted(set(frame["profile"].astype(str))))
    return f"{data} | profile {profiles} | {seeds} per point{spread}"


def history_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows (history.csv) of every run of ``frame``, with the run's name, seed,
    method, variant, family, label, lam, model, dataset, data_label and profile. Runs without a
    history.csv are left out."""
    keep = ["name", "seed", "method", "variant", "family", "label", "lam", "model", "dataset", "data_label",
            "profile"]
    parts = []
    for _, run in frame.iterrows():
        path = Path(run["run_dir"]) / "history.csv"
        if path.exists():
            history = pd.read_csv(path)
            parts.append(history.assign(**{k: run[k] for k in keep}))
    if not parts:
        return pd.DataFrame(columns=keep + ["epoch", "stage", "train_acc", "test_acc", "sparsity"])
    return pd.concat(parts, ignore_index=True)


def epoch_mean(history: pd.DataFrame, columns: tuple[str, ...] = ("test_acc", "train_acc", "sparsity")
               ) -> pd.DataFrame:
    """Per experiment and epoch: mean and sample std over seeds of ``columns`` (``<c>_std``; NaN for one
    seed), with the experiment's descriptive columns and ``seeds``."""
    info = [c for c in ("method", "variant", "family", "label", "lam", "model", "dataset", "data_label", "profile")
            if c in history]
    if history.empty:
        return pd.DataFrame(columns=["name", "epoch", *info, *columns, *(f"{c}_std" for c in columns), "seeds"])
    grouped = history.groupby(["name", "epoch"], sort=True)
    out = grouped[list(columns)].mean()
    std = grouped[list(columns)].std(ddof=1).add_suffix("_std")
    out = out.join(std).join(grouped[info].first()).join(grouped["seed"].nunique().rename("seeds"))
    return out.reset_index()


def layers_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and prunable layer (metrics.json ``layers``): layer_index (position in the
    network), layer, type, weights, nonzero, density = nonzero / weights of the dense layer,
    with the run's name, seed, variant, point, sparsity, model, dataset, data_label, profile."""
    keep = ["name", "seed", "variant", "point", "sparsity", "model", "dataset", "data_label", "profile"]
    rows = []
    for _, run in frame.iterrows():
        for index, layer in enumerate(run["layers"] or []):
            rows.append({**{k: run[k] for k in keep}, "layer_index": index, "layer": layer["layer"],
                         "type": layer.get("type", ""), "weights": layer["weights"], "nonzero": layer["nonzero"],
                         "density": layer["density"]})
    return pd.DataFrame(rows, columns=keep + ["layer_index", "layer", "type", "weights", "nonzero", "density"])


def layer_density(layers: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and layer: density mean and sample std over seeds (``density_std``; NaN for one
    seed), the run-level sparsity averaged likewise, and ``seeds``."""
    columns = ["name", "variant", "point", "model", "dataset", "layer_index", "layer", "type", "weights",
               "density", "density_std", "sparsity", "seeds"]
    if layers.empty:
        return pd.DataFrame(columns=columns)
    grouped = layers.groupby(["name", "layer_index"], sort=True)
    out = grouped[["variant", "point", "model", "dataset", "layer", "type", "weights"]].first()
    out["density"] = grouped["density"].mean()
    out["density_std"] = grouped["density"].std(ddof=1)
    out["sparsity"] = grouped["sparsity"].mean()
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()[columns]


def _without(config: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A copy of ``config`` without the key at the dotted path and without what names the run."""
    out = {k: v for k, v in config.items() if k not in ("name", "description", "seed", "seeds", "profiles")}
    head, _, rest = dotted.partition(".")
    if rest:
        out[head] = _without(_section(out, head), rest) if head in out else {}
    else:
        out.pop(head, None)
    return out


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matched(frame: pd.DataFrame, field: str) -> pd.DataFrame:
    """The runs of ``frame`` that form controlled comparisons of one config field.

    Runs whose resolved configs agree on everything except the dotted ``field`` (e.g.
    "optimizer.avg" or "method.reweight") and what names the run (name, description, seed)
    share a ``match`` id; only groups with at least two distinct values of the field are kept.
    ``value`` holds the field's value as text.
    """
    frame = frame.assign(match=[json.dumps(_without(c or {}, field), sort_keys=True, default=str)
                                for c in frame["config"]],
                         value=[str(_lookup(c or {}, field)) for c in frame["config"]])
    kept = frame.groupby("match")["value"].transform("nunique") >= 2
    frame = frame[kept].copy()
    ids = {key: i for i, key in enumerate(sorted(frame["match"].unique()))}
    frame["match"] = frame["match"].map(ids)
    return frame


SUMMARY_COLUMNS = (
    "experiment", "variant", "model", "dataset", "profile", "seeds", "epochs", "test_acc_pct", "test_acc_std_pct",
    "sparsity_pct", "sparsity_std_pct", "compression", "flops_kept_pct", "params_nonzero", "params_kept_pct",
    "paper_test_acc_pct", "paper_sparsity_pct", "paper_source", "data",
)


def summary_frame(frame: pd.DataFrame, reported: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """The summary table, one row per experiment (mean and sample std over seeds), in percent.

    Columns: SUMMARY_COLUMNS. ``paper_*`` come from ``reported`` (default PAPER_REPORTED) keyed by
    experiment name and stay empty (NaN / "") for experiments without a cited figure.
    Rows are sorted by dataset, model, variant (VARIANT_ORDER) and sparsity.
    """
    reported = PAPER_REPORTED if reported is None else reported
    points = aggregate(frame)
    rows = []
    for _, p in points.iterrows():
        paper = reported.get(p["name"], {})
        rows.append({
            "experiment": p["name"], "variant": p["variant"], "model": p["model"], "dataset": p["dataset"],
            "profile": p["profile"], "seeds": int(p["seeds"]), "epochs": p["epochs"],
            "test_acc_pct": 100 * p["test_acc"], "test_acc_std_pct": 100 * p["test_acc_std"],
            "sparsity_pct": 100 * p["sparsity"], "sparsity_std_pct": 100 * p["sparsity_std"],
            "compression": p["compression"], "flops_kept_pct": 100 * p["flops_kept"],
            "params_nonzero": p["params_nonzero"], "params_kept_pct": 100 * p["params_kept"],
            "paper_test_acc_pct": 100 * paper["test_acc"] if "test_acc" in paper else math.nan,
            "paper_sparsity_pct": 100 * paper["sparsity"] if "sparsity" in paper else math.nan,
            "paper_source": paper.get("source", ""), "data": p["data_label"],
        })
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if table.empty:
        return table
    order = table["variant"].map(variant_key)
    table = table.assign(_v=order).sort_values(["dataset", "model", "_v", "sparsity_pct", "experiment"])
    return table.drop(columns="_v").reset_index(drop=True)


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def _mean_pm_std(mean: float, std: float) -> str:
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def summary_markdown(table: pd.DataFrame) -> str:
    """``summary_frame`` as a Markdown table: accuracy and sparsity as "mean ± std" (%; the mean
    alone for one seed), the paper columns blank where no figure is cited; the data labels follow
    as a footnote."""
    header = ["experiment", "method", "model", "dataset", "seeds", "epochs", "test acc (%)", "sparsity (%)",
              "compression", "FLOPs kept (%)", "nonzero params", "paper test acc (%)", "paper sparsity (%)",
              "paper source"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, r in table.iterrows():
        cells = [_cell(r["experiment"], 0), _cell(r["variant"], 0), _cell(r["model"], 0), _cell(r["dataset"], 0),
                 str(int(r["seeds"])), str(int(r["epochs"])),
                 _mean_pm_std(r["test_acc_pct"], r["test_acc_std_pct"]),
                 _mean_pm_std(r["sparsity_pct"], r["sparsity_std_pct"]), _cell(float(r["compression"]), 1),
                 _cell(float(r["flops_kept_pct"]), 1), f"{int(round(r['params_nonzero'])):,}",
                 _cell(float(r["paper_test_acc_pct"]), 2), _cell(float(r["paper_sparsity_pct"]), 2),
                 _cell(r["paper_source"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    labels = sorted(set(table["data"].astype(str)))
    profiles = sorted(set(table["profile"].astype(str)))
    if labels:
        lines += ["", f"Data: {'; '.join(labels)}. Profile: {', '.join(profiles)}. Final-epoch test accuracy; "
                      "sparsity over conv + linear weights; FLOPs kept = nonzero multiply-adds / dense."]
    return "\n".join(lines) + "\n"
