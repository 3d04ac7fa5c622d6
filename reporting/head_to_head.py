"""Which xRDA config each unstructured config is compared with: the one at its target sparsity.

The subset protocol names each unstructured config after its target weight sparsity
(``r20_gmp_s80``, and the xRDA ablation ``r20_rda_s80_avg0``: 80%). At each target the reproduced
paper's method (``REFERENCE``, xRDA with log-reweighted l1) is the reference every other config at
that target is compared with (``reporting.verdicts``, which computes the comparisons).
"""

from __future__ import annotations

import re

import pandas as pd

REFERENCE = "xRDA log-l1"
TARGET = re.compile(r"_s(\d+)(?:_|$)")


def target_of(name: str) -> int | None:
    """The target weight sparsity (%) in a config's name (``..._s80`` or ``..._s80_avg0`` -> 80);
    None for the structured and dense configs, whose names carry no ``_sNN``."""
    match = TARGET.search(name)
    return int(match[1]) if match else None


def references(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(config, its reference) for every config at a target that has one ``REFERENCE`` config (none,
    or two xRDA configs at one target: nothing to compare with), in target then legend order."""
    pairs: list[tuple[str, str]] = []
    if frame.empty:
        return pairs
    points = frame.assign(target=[target_of(n) for n in frame["name"]]).dropna(subset=["target"])
    for _, group in points.groupby("target", sort=True):
        found = sorted(set(group.loc[group["variant"] == REFERENCE, "name"]))
        if len(found) != 1:
            continue
        ordered = group[group["name"] != found[0]].sort_values(["order", "variant", "name"])
        pairs += [(name, found[0]) for name in dict.fromkeys(ordered["name"])]
    return pairs
