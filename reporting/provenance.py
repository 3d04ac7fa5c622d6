"""Where and from which code the runs of a results folder came, read from each run's env.json.

``environments(frame)`` gives one row per run: its environment (the CPU as env.json names it, the
platform string, cores, threads, torch), code revision and wall time. ``machines_markdown`` groups the
runs by environment for the README: which seeds ran where, at what speed, from which revisions, and
what a ``-dirty`` revision did and did not change (the resolved config, the data), as far as the
records can tell. What a record does not hold is said to be unknown, never guessed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from training.record_schema import RecordError, read_env

COLUMNS = ("name", "seed", "environment", "cpu", "cpu_flags", "revision", "wall_time_s", "config", "fingerprint")


def _env(run_dir: str) -> dict[str, Any]:
    try:
        return read_env(Path(run_dir) / "env.json")
    except RecordError:  # a missing or bad env.json: its machine is unknown
        return {}


def environments(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``frame``: ``environment`` (CPU name, platform, cores, threads, torch, as
    recorded), ``cpu`` (the model name, with family/model/stepping where recorded), ``cpu_flags``
    (how many instruction-set flags were recorded; 0 for runs made before they were), ``revision``,
    ``wall_time_s``, its resolved config (without the seed, as JSON) and data fingerprint."""
    rows = []
    for _, run in frame.iterrows():
        env = _env(str(run["run_dir"]))
        cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
        model = cpu.get("model_name") or env.get("device_name") or "unknown"
        ident = "/".join(str(cpu[k]) for k in ("family", "model", "stepping") if k in cpu)
        rows.append(
            {
                "name": run["name"],
                "seed": int(run["seed"]),
                "environment": (
                    f"{env.get('device_name', 'unknown')}; {env.get('platform', 'platform unknown')}; "
                    f"{env.get('cpu_count', '?')} cores, {env.get('torch_threads', '?')} thread(s) a run; "
                    f"torch {env.get('torch', '?')}"
                ),
                "cpu": model + (f" (family/model/stepping {ident})" if ident else ""),
                "cpu_flags": len(cpu.get("flags") or []),
                "revision": str(env.get("git_revision", run.get("git_revision", "unknown"))),
                "wall_time_s": float(run.get("wall_time_s", float("nan"))),
                "config": json.dumps({k: v for k, v in run["config"].items() if k != "seed"}, sort_keys=True),
                "fingerprint": run.get("data_fingerprint", ""),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _seeds(seeds: pd.Series) -> str:
    return ", ".join(f"seed {s}: {n}" for s, n in sorted(Counter(seeds).items()))


def machines_markdown(frame: pd.DataFrame) -> str:
    """The README's note on machines and revisions, from the runs' records."""
    runs = environments(frame)
    if runs.empty:
        return "No finished runs.\n"
    lines = []
    groups = list(runs.groupby("environment", sort=True))
    for k, (environment, group) in enumerate(groups, start=1):
        wall = group["wall_time_s"]
        revisions = ", ".join(
            f"`{r[:7]}{'-dirty' if r.endswith('-dirty') else ''}` ({n})"
            for r, n in Counter(group["revision"]).most_common()
        )
        flags = group["cpu_flags"]
        cpu = "; ".join(sorted(set(group["cpu"])))
        flag_text = (
            f"its instruction-set flags recorded ({int(flags.min())}-{int(flags.max())})"
            if flags.min() > 0
            else "no instruction-set flags recorded"
            if flags.max() == 0
            else "instruction-set flags recorded for some runs only"
        )
        lines.append(
            f"- **Environment {k}** ({len(group)} runs; {_seeds(group['seed'])}): {environment}. CPU: {cpu}, "
            f"{flag_text}. Wall time a run: median {wall.median():.0f} s ({wall.min():.0f}-{wall.max():.0f}). "
            f"Revisions: {revisions}."
        )
    dirty = runs[runs["revision"].str.endswith("-dirty")]
    if not dirty.empty:
        clean = runs[~runs["revision"].str.endswith("-dirty")]
        configs = clean.groupby("name")["config"].agg(set).to_dict()  # per experiment: its clean runs'
        prints = clean.groupby("name")["fingerprint"].agg(set).to_dict()
        same_config = sum(c in configs.get(n, set()) for n, c in zip(dirty["name"], dirty["config"]))
        same_data = sum(f in prints.get(n, set()) for n, f in zip(dirty["name"], dirty["fingerprint"]))
        lines.append(
            f"- **`-dirty` revisions.** {len(dirty)} runs ({_seeds(dirty['seed'])}) record a revision ending in "
            "`-dirty`: when they started, tracked files of the working tree differed from that commit, and the "
            "records do not say which files or how. What the records can check: "
            f"{same_config} of the {len(dirty)} have a resolved config identical, but for the seed, to a clean "
            f"run of the same experiment, and {same_data} read data with the same fingerprint as the clean runs of "
            "their experiment."
        )
    places = runs.groupby("seed")["environment"].nunique()
    split = [int(s) for s, n in places.items() if n > 1]
    if split:
        lines.append(
            f"- **Pairs across environments.** Seed(s) {', '.join(map(str, split))} ran in more than one "
            "environment, so a paired difference at such a seed may compare two runs from different environments."
        )
    bare = runs[runs["cpu_flags"] == 0]  # env.json without the CPU's model and flags (older records)
    bare_cpus = sorted(set(bare["cpu"]))
    if bare.empty:
        known = "env.json's `cpu` names the model and flags of each run's CPU."
    elif len(bare) == len(runs) and len(bare_cpus) == 1:
        known = (
            f"The records name the CPU only as {bare_cpus[0]} in every environment, without model number or flags, "
            "so whether the environments above are one CPU type is unknown; their wall times differ. Runs recorded "
            "from now on carry the model and its flags in env.json (`cpu`)."
        )
    else:
        known = (
            f"{len(bare)} of the {len(runs)} runs name their CPU only as {' or '.join(bare_cpus)}, without model "
            "number or instruction-set flags, so whether they ran on one CPU type is unknown; the other "
            f"{len(runs) - len(bare)} record both in env.json (`cpu`)."
        )
    lines.append(
        "- **Reproducibility.** A run is bit-reproducible only on the same CPU type (model and instruction-set "
        "flags decide which vectorised kernels run, and so the order of floating-point sums), with the same "
        "torch and thread count. " + known
    )
    return "\n".join(lines) + "\n"


def code_changes_markdown(path: Path) -> str:
    """The README's list of ``experiments.code_change`` outcomes recorded in ``path``: which
    experiment's config was trained at which two codes, for how long, where, and whether the
    checkpoints were equal bit for bit."""
    if not path.exists():
        return "No comparison recorded yet.\n"
    lines = []
    for entry in json.loads(path.read_text())["comparisons"]:
        checkout = entry["checkout"]
        cpu = entry["environment"]["cpu"]
        outcome = (
            "**equal bit for bit**"
            if entry["equal"]
            else "**different** ("
            + "; ".join(entry["differences"][:3])
            + (", ..." if len(entry["differences"]) > 3 else "")
            + ")"
        )
        final = entry.get("final") or {}
        if not entry["equal"] and final.get("then") and final.get("now"):
            outcome += (
                f"; final test accuracy {100 * final['then']['test_acc']:.2f}% at `{entry['revision'][:7]}`, "
                f"{100 * final['now']['test_acc']:.2f}% now"
            )
        kernel = (
            f"; the optimizers' kernel choice differed ({'; '.join(entry['kernel_choices'])})"
            if entry["kernel_choices"]
            else ""
        )
        lines.append(
            f"- `{entry['experiment']}` (its recorded config, seed 0, {entry['epochs']} epochs): "
            f"`{entry['revision'][:7]}` against `{checkout[:7]}{'-dirty' if checkout.endswith('-dirty') else ''}`, "
            f"side by side on {cpu['model_name']} ({cpu['family']}/{cpu['model']}/{cpu['stepping']}), "
            f"{entry['threads']} thread(s) each, {entry['date']}: {outcome}{kernel}."
        )
    return "\n".join(lines) + "\n"
