"""The subset protocol's configs (experiments/configs/*/subset/): one recipe per optimizer family, the same
data, batch and number of optimizer steps for every method, a matched dense control for each, the
same targets for every unstructured method, and a test set read only at the end. Which methods,
configs and controls there are is read from the registry and the configs, never listed here: a
method whose protocol config is smoke-only (experiments/configs/<method>/smoke/) follows the same
protocol and has no committed results yet."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pytest

from experiments.run import CONFIG_DIR
from pruning.base import Variant
from pruning.registry import METHODS
from reporting.budgets import pending
from training import config

PATHS = sorted(CONFIG_DIR.rglob("subset/*.yaml"))
CONFIGS = {p.stem: config.load_config(p, profile="subset") for p in PATHS}
SMOKE_ONLY_PATHS = sorted(CONFIG_DIR.rglob("smoke/*.yaml"))  # protocol configs awaiting their subset runs
SMOKE_ONLY = {p.stem: config.load_config(p, profile="subset") for p in SMOKE_ONLY_PATHS}  # at the protocol's budget


def variant(cfg: config.ExperimentConfig) -> Variant:
    return METHODS[cfg.method.name].variant(cfg.method, cfg.optimizer)


DENSE_CONTROLS = tuple(name for name, cfg in CONFIGS.items() if variant(cfg).family == "dense")
SUBSET_TRAIN = 5170 - 500  # the subset's training images less the validation split


def steps(cfg: config.ExperimentConfig) -> int:
    return sum(s.epochs for s in config.plan(cfg)) * math.ceil(SUBSET_TRAIN / cfg.data.batch_size)


def final_steps(cfg: config.ExperimentConfig) -> int:
    return config.plan(cfg)[-1].epochs * math.ceil(SUBSET_TRAIN / cfg.data.batch_size)


def without_method(cfg: config.ExperimentConfig) -> dict:
    return {k: v for k, v in config.to_dict(cfg).items() if k not in ("name", "description", "method", "seeds")}


def test_the_subset_profile_is_exactly_the_subset_folders() -> None:
    in_profile = config.collect_configs([CONFIG_DIR], "subset", [], None)
    assert sorted(c.name for c in in_profile) == sorted(CONFIGS)
    assert not set(SMOKE_ONLY) & {c.name for c in in_profile}
    for path in SMOKE_ONLY_PATHS:  # smoke-only: in no other profile
        raw = config.load_config(path)
        assert set(raw.profiles) == {"smoke"} and not raw.full, path
    assert len(DENSE_CONTROLS) == 3  # one per recipe: SGD, the gate methods', xRDA's


def test_every_config_is_the_same_budget_on_the_same_data() -> None:
    for name, cfg in (CONFIGS | SMOKE_ONLY).items():
        assert name.startswith("r20_") and cfg.model == "resnet20", name
        assert (cfg.data.dataset, cfg.data.batch_size, cfg.data.validation, cfg.data.max_train) == (
            "cifar10",
            128,
            500,
            None,
        ), name
        if getattr(cfg.method, "last_round_epochs", 0):  # the lottery ticket whose last round is the budget
            assert final_steps(cfg) == 555 and steps(cfg) > 555, name
        else:
            assert steps(cfg) == 555, name  # 15 epochs of 37 steps, split between the stages
        assert not cfg.train.test_each_epoch, name  # the test set: once, at the end
        assert cfg.seeds == 5, name  # every point (results/subset/pending.txt: the runs still to come)
        path = (PATHS + SMOKE_ONLY_PATHS)[list(CONFIGS | SMOKE_ONLY).index(name)]
        assert not config.load_config(path).full  # not part of the full profile


def test_each_method_has_its_matched_dense_control() -> None:
    dense = {name: cfg for name, cfg in CONFIGS.items() if name in DENSE_CONTROLS}
    for name, cfg in (CONFIGS | SMOKE_ONLY).items():
        if name in dense or name.startswith("r20_rda_s80_avg"):  # the averaging ablations: against r20_rda_s80
            continue
        matched = [
            d
            for d, control in dense.items()
            if without_method(control)
            == {
                **without_method(cfg),
                "train": {
                    **without_method(cfg)["train"],
                    "epochs": control.train.epochs,
                    "schedule": config.to_dict(control.train.schedule),
                },
            }
        ]
        assert len(matched) == 1, name
        control = dense[matched[0]]  # the same optimizer and data: only the method (and its stage split) differs
        assert config.to_dict(cfg.optimizer) == config.to_dict(control.optimizer)
    for avg in ("r20_rda_s80_avg0", "r20_rda_s80_avg1"):  # only the averaging differs from xRDA's
        a, b = config.to_dict(CONFIGS[avg]), config.to_dict(CONFIGS["r20_rda_s80"])
        assert {k: v for k, v in a["optimizer"].items() if k != "avg"} == {
            k: v for k, v in b["optimizer"].items() if k != "avg"
        }
        assert a["method"] == b["method"] and a["optimizer"]["avg"] != "coupled"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_unstructured_method_aims_at_the_same_targets(method: str) -> None:
    # Per variant of the method: its main variant (the one with the most configs) at 50, 80 and 90%,
    # every other variant (an ablation: random reinit, plain l1, another averaging) at 80% alone.
    by_variant = defaultdict(set)
    for name, cfg in CONFIGS.items():
        if cfg.method.name == method and variant(cfg).family == "unstructured":
            by_variant[variant(cfg).label].add(name.rsplit("_s", 1)[1][:2])
            if hasattr(cfg.method, "sparsity"):
                assert cfg.method.sparsity == int(name.rsplit("_s", 1)[1][:2]) / 100, name
    if not by_variant:
        return  # structured, dense, or no subset configs yet (smoke-only)
    main = max(by_variant, key=lambda label: len(by_variant[label]))
    assert by_variant.pop(main) == {"50", "80", "90"}, main
    assert all(targets == {"80"} for targets in by_variant.values()), by_variant


def test_structured_methods_at_two_budgets() -> None:
    budgets = defaultdict(set)
    for name, cfg in CONFIGS.items():
        if variant(cfg).family == "structured":
            assert name.endswith(("_w30", "_w50", "_c30", "_c50")), name
            budgets[variant(cfg).label].add(name[-2:])
    assert budgets and all(b == {"30", "50"} for b in budgets.values()), budgets


def test_the_smoke_profile_runs_one_protocol_config_of_each_method() -> None:
    smoke = config.collect_configs([CONFIG_DIR], "smoke", [], None)
    assert sorted(c.method.name for c in smoke) == sorted(METHODS)  # every registered method, once
    assert {c.name for c in smoke} <= set(CONFIGS) | set(SMOKE_ONLY)


def test_the_committed_results_hold_every_run_the_configs_ask_for() -> None:
    # results/subset is the benchmark the README reports: each config's every seed, all on the same
    # data (one fingerprint) with the same validation split, and nothing else beside them.
    results = CONFIG_DIR.parents[1] / "results" / "subset"
    waiting = pending(results)  # runs explicitly pending (results/subset/pending.txt): all seeds, or some
    assert set(waiting) <= set(CONFIGS)
    every = {(name, seed) for name, cfg in CONFIGS.items() for seed in range(cfg.seeds)}
    awaited = {(name, seed) for name, seed in every if name in waiting and waiting[name].covers(seed)}
    expected = every - awaited
    found = {}
    for path in results.glob("r20_*/seed*/metrics.json"):
        metrics = json.loads(path.read_text())
        found[(metrics["name"], metrics["seed"])] = metrics
        assert path.parent == results / metrics["name"] / f"seed{metrics['seed']}", path
    assert set(found) == expected
    assert not [run for run in awaited if (results / run[0] / f"seed{run[1]}").exists()]  # a run came: unlist it
    assert len({m["data_fingerprint"] for m in found.values()}) == 1  # every run read the same images
    assert all(m["validation_size"] == 500 and m["profile"] == "subset" for m in found.values())
