"""Load what the runner wrote under a results folder into tables (pandas), for notebooks and summaries:
one row per run, aggregation over seeds, per-epoch and per-layer tables, controlled comparisons."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from reporting.labels import color_of, describe
from reporting.stats import interval
from training.record_schema import RecordError, read_config, read_history, read_metrics, skip


class ResultsError(RuntimeError):
    """A results folder that cannot be read at all (it does not exist)."""


class PoolingError(ResultsError):
    """Runs that must not be pooled as one experiment's seeds (other data, a repeated or a
    mislabelled seed); the message names them and says how to separate them."""


UNRECORDED = "unrecorded"  # the code identity of runs recorded before code identities existed


def load_runs(results: str | Path) -> list[dict[str, Any]]:
    """One record per finished run (a folder with metrics.json): metrics plus its resolved config.

    Both are checked (``training.record_schema``): a run whose metrics.json or config.yaml is
    damaged, of a wrong type or out of range, or whose config no longer validates, is named in a
    one-line warning and left out; a results folder that does not exist is an error.
    """
    folder = Path(results)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    runs = []
    for metrics_path in sorted(folder.glob("*/seed*/metrics.json")):
        try:
            run = read_metrics(metrics_path)
            run["config"] = config = read_config(metrics_path.parent / "config.yaml")
            run["variant"], run["point"] = describe(config)
        except RecordError as exc:  # a damaged or foreign record: one warning, not a broken table
            skip(exc)
            continue
        except Exception as exc:  # a config that validates but that no method can describe
            first = str(exc).splitlines()[0] if str(exc) else ""
            skip(RecordError(f"{metrics_path.parent}: {type(exc).__name__}: {first}"))
            continue
        run["run_dir"] = str(metrics_path.parent)
        run["folder_seed"] = _folder_seed(metrics_path.parent.name)
        run["config_seed"] = config.get("seed")
        runs.append(run)
    return runs


def _folder_seed(name: str) -> int | None:
    digits = name.removeprefix("seed")
    return int(digits) if digits.isdigit() else None


# Entries of a run's metrics that are averaged over seeds by `aggregate` (when present).
METRICS = (
    "test_acc",
    "val_acc",
    "train_acc",
    "gap",
    "test_loss",
    "train_loss",
    "sparsity",
    "sparsity_all",
    "compression",
    "flops_kept",
    "params_kept",
    "params_nonzero",
    "params_total",
    "flops_effective",
    "params_physical",
    "flops_physical",
    "kernel_sparsity",
    "channel_sparsity",
    "channel_ratio_achieved",
    "wall_time_s",
)

# Columns `runs_frame` always has, so that filters work on an empty results folder too.
FRAME_COLUMNS = (
    "name",
    "seed",
    "method",
    "variant",
    "family",
    "main",
    "order",
    "color",
    "point",
    "label",
    "lam",
    "point_value",
    "model",
    "dataset",
    "data_label",
    "data_name",
    "profile",
    "epochs",
    "test_acc",
    "train_acc",
    "gap",
    "test_loss",
    "train_loss",
    "sparsity",
    "sparsity_all",
    "compression",
    "flops_dense",
    "flops_effective",
    "flops_kept",
    "params_dense",
    "params_nonzero",
    "params_kept",
    "run_dir",
    "folder_seed",
    "data_fingerprint",
    "code_sha256",
    "config",
    "layers",
)


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float:
    return float(value) if value is not None else math.nan


def _ratio(num: Any, den: Any) -> float:
    return float(num) / float(den) if num is not None and den else math.nan


def runs_frame(results: str | Path) -> pd.DataFrame:
    """One row per finished run: every scalar entry of its metrics.json, plus

    variant (label), family, main, order and color as its method declares them
    (``reporting.labels``), point (the operating point), label ("<variant>, <point>"), lam,
    gap = train_acc - test_acc (train_acc: the last epoch's running accuracy on augmented batches),
    compression = 1 / (1 - sparsity) (inf when every weight is zero), flops_kept =
    flops_effective / flops_dense, params_kept = params_nonzero / params_dense, and the resolved
    config and per-layer table as Python objects, folder_seed (the k of its seed<k> folder) and
    code_sha256 (its code identity, "unrecorded" for runs from before code identities). Always has
    the columns of FRAME_COLUMNS.
    """
    rows = []
    for run in load_runs(results):
        row: dict[str, Any] = {k: v for k, v in run.items() if v is None or isinstance(v, (bool, int, float, str))}
        config = run["config"]
        sparsity = float(run.get("sparsity", math.nan))
        method = _section(config, "method")
        lam = method.get("lam")
        point_value = next((method[k] for k in ("lam", "sparsity", "channel_ratio") if k in method), math.nan)
        variant, point = run["variant"], run["point"]
        row.update(
            variant=variant.label,
            family=variant.family,
            main=variant.main,
            order=variant.order,
            color=color_of(variant),
            point=point,
            label=f"{variant.label}, {point}" if point else variant.label,
            lam=float(lam) if lam is not None else math.nan,
            point_value=float(point_value),
            data_label=run.get("data_label", run.get("dataset", "")),
            data_name=str(run.get("data_label", run.get("dataset", ""))).split(" (")[0].split(",")[0],
            gap=_number(run.get("train_acc")) - _number(run.get("test_acc")),
            compression=1.0 / (1.0 - sparsity) if sparsity < 1.0 else math.inf,
            flops_kept=_ratio(run.get("flops_effective"), run.get("flops_dense")),
            params_kept=_ratio(run.get("params_nonzero"), run.get("params_dense")),
            config=config,
            layers=run.get("layers", []),
            code_sha256=run.get("code_sha256") or UNRECORDED,
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in FRAME_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame


def _seed_label(run_dir: Any, seed: Any) -> str:
    return str(run_dir) if isinstance(run_dir, str) and run_dir else f"seed {seed}"


def pooling_problem(frame: pd.DataFrame, keys: tuple[str, ...] = ("name",)) -> str | None:
    """Why the runs of ``frame`` may not be pooled per group of ``keys`` (None when they may): a run
    whose recorded seed is not its folder's or its config's, two runs of one seed, or runs of one
    group trained on different data. One line, naming the runs and how to separate them."""
    if frame.empty or "seed" not in frame or any(k not in frame for k in keys):
        return None
    dirs = frame["run_dir"] if "run_dir" in frame else pd.Series([""] * len(frame), index=frame.index)
    for column in ("folder_seed", "config_seed"):
        if column not in frame:
            continue
        for run_dir, seed, other in zip(dirs, frame["seed"], frame[column]):
            if other is not None and not pd.isna(other) and int(other) != int(seed):
                where = "its folder's" if column == "folder_seed" else "its config.yaml's"
                return (
                    f"{_seed_label(run_dir, seed)}: records seed {seed}, not {where} {int(other)} (a copied or "
                    "renamed seed folder?): remove it, or rerun that seed with --force"
                )
    for key, group in frame.groupby(list(keys), sort=True, dropna=False):
        label = "/".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        seen: dict[int, str] = {}
        for run_dir, seed in zip(dirs[group.index], group["seed"]):
            here = _seed_label(run_dir, seed)
            if int(seed) in seen:
                return (
                    f"{label}: {seen[int(seed)]} and {here} both hold seed {seed} (a copied folder?): keep one of them"
                )
            seen[int(seed)] = here
        if "data_fingerprint" in group:
            prints = group["data_fingerprint"].fillna("none").astype(str)
            if prints.nunique() > 1:
                parts = "; ".join(
                    f"{fp}: seed {', '.join(str(s) for s in sorted(group.loc[prints == fp, 'seed']))}"
                    for fp in sorted(prints.unique())
                )
                return (
                    f"{label}: its runs were trained on different data (data_fingerprint {parts}): give each "
                    "data set its own results folder (--results), or rerun the odd ones with --force"
                )
    return None


def check_pooling(frame: pd.DataFrame, keys: tuple[str, ...] = ("name",)) -> None:
    """Raise PoolingError when ``pooling_problem`` finds one."""
    problem = pooling_problem(frame, keys)
    if problem is not None:
        raise PoolingError(f"cannot pool {problem}")


def aggregate(frame: pd.DataFrame, keys: tuple[str, ...] = ("name",)) -> pd.DataFrame:
    """One row per group of ``keys`` (default: per experiment, i.e. over its seeds).

    Each metric of METRICS becomes its mean, ``<metric>_std`` (the sample standard deviation, n - 1
    in the denominator) and ``<metric>_ci`` (the half-width of the two-sided 95% Student-t
    interval of the mean), both NaN for a single seed; ``seeds`` counts the runs;
    ``code_identities`` counts the code identities the runs were trained by (runs from before code
    identities count as one, "unrecorded"); every other column keeps the group's first value.
    Runs that may not be pooled (``pooling_problem``) raise PoolingError.
    """
    check_pooling(frame, keys)
    metrics = [m for m in METRICS if m in frame and m not in keys]
    rows = []
    for _, group in frame.groupby(list(keys), sort=True, dropna=False):
        row = {c: group[c].iloc[0] for c in frame.columns if c not in metrics and c not in ("seed", "run_dir")}
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").dropna().tolist()
            row[m], row[f"{m}_std"], row[f"{m}_ci"] = interval(values)
        row["seeds"] = len(group)
        row["code_identities"] = group["code_sha256"].fillna(UNRECORDED).nunique() if "code_sha256" in group else 1
        rows.append(row)
    columns = [c for c in frame.columns if c not in ("seed", "run_dir")]
    columns += [f"{m}_std" for m in metrics] + [f"{m}_ci" for m in metrics] + ["seeds", "code_identities"]
    return pd.DataFrame(rows, columns=columns)


def recipe_key(config: dict[str, Any]) -> str:
    """What a method's result is compared under: model, data, optimizer and initialisation (the
    training length and the method are left out: multi-stage methods split the same steps)."""
    keep = {k: config.get(k) for k in ("model", "data", "optimizer", "bn_weight_init", "profile")}
    return json.dumps(keep, sort_keys=True, default=str)


def matched_controls(frame: pd.DataFrame) -> dict[str, str]:
    """Experiment -> its dense control: the dense experiment trained with the same recipe
    (``recipe_key``) on the same data (``data_fingerprint``); experiments without one are left out."""
    prints = frame["data_fingerprint"] if "data_fingerprint" in frame else [None] * len(frame)
    keys = {name: recipe_key(config) + f"|{fp}" for name, config, fp in zip(frame["name"], frame["config"], prints)}
    dense = {keys[n]: n for n, family in zip(frame["name"], frame["family"]) if family == "dense"}
    return {n: dense[k] for n, k in keys.items() if k in dense and dense[k] != n}


def paired(frame: pd.DataFrame, a: str, b: str, metric: str = "test_acc") -> tuple[int, float, float, float]:
    """``metric`` of experiment ``a`` minus that of ``b``, paired by seed over the seeds both have:
    (pairs, mean, sample std, half-width of the 95% t-interval); NaN where there is no pair (std
    and interval NaN for one pair)."""
    return _paired(values_by_run(frame, metric), a, b)


def values_by_run(frame: pd.DataFrame, metric: str) -> dict[tuple[str, int], float]:
    """(experiment, seed) -> ``metric``, once the runs are checked to pool (``check_pooling``)."""
    check_pooling(frame)  # a repeated seed would otherwise overwrite its twin
    return {(n, s): v for n, s, v in zip(frame["name"], frame["seed"], pd.to_numeric(frame[metric], errors="coerce"))}


def _paired(values: dict[tuple[str, int], float], a: str, b: str) -> tuple[int, float, float, float]:
    seeds = sorted(s for (n, s) in values if n == a and (b, s) in values)
    diffs = [d for d in (values[(a, s)] - values[(b, s)] for s in seeds) if not math.isnan(d)]
    return (len(diffs), *interval(diffs))


def paired_differences(frame: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per experiment with a matched dense control: the mean, std and 95% t-interval of
    ``metric`` (experiment) - ``metric`` (control) over the seeds both have (``paired``)."""
    values = values_by_run(frame, metric)  # once, not once per experiment
    rows = []
    for name, control in sorted(matched_controls(frame).items()):
        pairs, mean, std, ci = _paired(values, name, control)
        rows.append(
            {
                "name": name,
                "control": control,
                "pairs": pairs,
                f"{metric}_diff": mean,
                f"{metric}_diff_std": std,
                f"{metric}_diff_ci": ci,
            }
        )
    columns = ["name", "control", "pairs", f"{metric}_diff", f"{metric}_diff_std", f"{metric}_diff_ci"]
    return pd.DataFrame(rows, columns=columns)


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


# What describes an experiment beside its numbers, carried along with per-epoch rows.
RUN_INFO = (
    "method",
    "variant",
    "family",
    "color",
    "label",
    "lam",
    "model",
    "dataset",
    "data_label",
    "data_name",
    "profile",
)


def history_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows (history.csv) of every run of ``frame``, with the run's name, seed,
    method, variant, family, color, label, lam, model, dataset, data_label, data_name and profile. Runs without a
    history.csv are left out, and so is one that fails its checks (with a one-line warning)."""
    check_pooling(frame)
    keep = ["name", "seed", *RUN_INFO]
    parts = []
    for _, run in frame.iterrows():
        path = Path(run["run_dir"]) / "history.csv"
        if path.exists():
            try:
                rows = read_history(path)
                if len(rows) != run["epochs"]:  # a finished run's history holds every epoch it trained
                    raise RecordError(f"{path}: {len(rows)} epochs, where metrics.json records {run['epochs']}")
            except RecordError as exc:
                skip(exc)
                continue
            history = pd.DataFrame(rows, dtype=object)
            numeric = [c for c in history.columns if c != "stage"]
            history[numeric] = history[numeric].apply(pd.to_numeric)  # a blank cell: NaN, not measured
            parts.append(history.assign(**{k: run[k] for k in keep}))
    # Runs without a validation split (or without a per-epoch test) lack those columns: NaN there.
    measured = ["epoch", "stage", "train_acc", "val_acc", "test_acc", "sparsity"]
    if not parts:
        return pd.DataFrame(columns=keep + measured)
    history = pd.concat(parts, ignore_index=True)
    return history.reindex(columns=[*history.columns, *(c for c in measured if c not in history)])


def epoch_mean(
    history: pd.DataFrame, columns: tuple[str, ...] = ("val_acc", "test_acc", "train_acc", "sparsity")
) -> pd.DataFrame:
    """Per experiment and epoch: mean and sample std over seeds of ``columns`` (``<c>_std``; NaN for one
    seed), with the experiment's descriptive columns and ``seeds``."""
    info = [c for c in RUN_INFO if c in history]
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
    check_pooling(frame)
    keep = ["name", "seed", "variant", "point", "sparsity", "model", "dataset", "data_label", "profile"]
    rows = []
    for _, run in frame.iterrows():
        for index, layer in enumerate(run["layers"] or []):
            rows.append(
                {
                    **{k: run[k] for k in keep},
                    "layer_index": index,
                    "layer": layer["layer"],
                    "type": layer.get("type", ""),
                    "weights": layer["weights"],
                    "nonzero": layer["nonzero"],
                    "density": layer["density"],
                }
            )
    return pd.DataFrame(rows, columns=keep + ["layer_index", "layer", "type", "weights", "nonzero", "density"])


def layer_density(layers: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and layer: density mean and sample std over seeds (``density_std``; NaN for one
    seed), the run-level sparsity averaged likewise, and ``seeds``."""
    columns = [
        "name",
        "variant",
        "point",
        "model",
        "dataset",
        "layer_index",
        "layer",
        "type",
        "weights",
        "density",
        "density_std",
        "sparsity",
        "seeds",
    ]
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
    frame = frame.assign(
        match=[json.dumps(_without(c or {}, field), sort_keys=True, default=str) for c in frame["config"]],
        value=[str(_lookup(c or {}, field)) for c in frame["config"]],
    )
    kept = frame.groupby("match")["value"].transform("nunique") >= 2
    frame = frame[kept].copy()
    ids = {key: i for i, key in enumerate(sorted(frame["match"].unique()))}
    frame["match"] = frame["match"].map(ids)
    return frame
