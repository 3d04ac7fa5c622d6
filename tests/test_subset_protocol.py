"""The subset protocol's configs (experiments/configs/*/subset/): one recipe per optimizer family, the same
data, batch and number of optimizer steps for every method, a matched dense control for each, the
same targets for every unstructured method, and a test set read only at the end."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pytest

from experiments.run import CONFIG_DIR
from reporting.budgets import pending
from training import config

PATHS = sorted(CONFIG_DIR.rglob("subset/*.yaml"))
CONFIGS = {p.stem: config.load_config(p, profile="subset") for p in PATHS}
DENSE_CONTROLS = ("r20_dense_sgd", "r20_dense_l0recipe", "r20_rda_lam0")
SUBSET_TRAIN = 5170 - 500  # the subset's training images less the validation split


def steps(cfg: config.ExperimentConfig) -> int:
    return sum(s.epochs for s in config.plan(cfg)) * math.ceil(SUBSET_TRAIN / cfg.data.batch_size)


def final_steps(cfg: config.ExperimentConfig) -> int:
    return config.plan(cfg)[-1].epochs * math.ceil(SUBSET_TRAIN / cfg.data.batch_size)


def without_method(cfg: config.ExperimentConfig) -> dict:
    return {k: v for k, v in config.to_dict(cfg).items() if k not in ("name", "description", "method", "seeds")}


def test_every_config_is_the_same_budget_on_the_same_data() -> None:
    assert len(CONFIGS) == 42
    for name, cfg in CONFIGS.items():
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
        headline = "_s80" in name or name in DENSE_CONTROLS  # each method's 80% point, and what it is compared with
        assert cfg.seeds == (5 if headline else 3), name
        assert not config.load_config(PATHS[list(CONFIGS).index(name)]).full  # not part of the full profile


def test_each_method_has_its_matched_dense_control() -> None:
    dense = {name: cfg for name, cfg in CONFIGS.items() if name in DENSE_CONTROLS}
    assert len(dense) == 3
    for name, cfg in CONFIGS.items():
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


@pytest.mark.parametrize(
    "method", ["rda", "magnitude", "lottery", "random_ticket", "random_finetune", "snip", "gmp", "rigl"]
)
def test_every_unstructured_method_aims_at_the_same_targets(method: str) -> None:
    targets = {
        name.rsplit("_s", 1)[1]
        for name, cfg in CONFIGS.items()
        if cfg.method.name == method
        and cfg.optimizer.__dict__.get("avg", "coupled") == "coupled"
        and "reinit" not in name
        and "last_round" not in name
        and "plain" not in name
        and "channel" not in name
        and "lam0" not in name
    }
    assert targets == {"50", "80", "90"}
    for name, cfg in CONFIGS.items():
        if cfg.method.name == method and hasattr(cfg.method, "sparsity"):
            assert cfg.method.sparsity == int(name.rsplit("_s", 1)[1][:2]) / 100, name


def test_structured_methods_at_two_budgets() -> None:
    budgets = defaultdict(set)
    for name in CONFIGS:
        if name.endswith(("_w30", "_w50", "_c30", "_c50")):
            budgets[name.rsplit("_", 1)[0]].add(name[-2:])
    assert budgets == {
        k: {"30", "50"} for k in ("r20_slimming", "r20_rda_channel", "r20_l0hc", "r20_dep_l0_fwd", "r20_dep_l0_bwd")
    }


def test_the_smoke_profile_runs_one_of_each_method() -> None:
    smoke = {cfg.method.name for p, cfg in zip(PATHS, CONFIGS.values()) if "smoke" in config.load_config(p).profiles}
    assert smoke == {
        "dense",
        "rda",
        "magnitude",
        "lottery",
        "random_ticket",
        "slimming",
        "l0hc",
        "dep_l0",
        "snip",
        "gmp",
        "rigl",
    }


def test_the_committed_results_hold_every_run_the_configs_ask_for() -> None:
    # results/subset is the benchmark the README reports: each config's every seed, all on the same
    # data (one fingerprint) with the same validation split, and nothing else beside them.
    results = CONFIG_DIR.parents[1] / "results" / "subset"
    waiting = pending(results)  # configs whose runs are explicitly pending (results/subset/pending.txt)
    assert set(waiting) <= set(CONFIGS)
    expected = {(name, seed) for name, cfg in CONFIGS.items() for seed in range(cfg.seeds) if name not in waiting}
    found = {}
    for path in results.glob("r20_*/seed*/metrics.json"):
        metrics = json.loads(path.read_text())
        found[(metrics["name"], metrics["seed"])] = metrics
        assert path.parent == results / metrics["name"] / f"seed{metrics['seed']}", path
    assert set(found) == expected
    assert not [name for name in waiting if (results / name).exists()]  # a run came: unlist it
    assert len({m["data_fingerprint"] for m in found.values()}) == 1  # every run read the same images
    assert all(m["validation_size"] == 500 and m["profile"] == "subset" for m in found.values())
