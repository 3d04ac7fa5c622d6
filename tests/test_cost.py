"""The cost model behind ``--list``: images per run, FLOPs, measured throughput before the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.run import main
from training import cost
from training.config import ExperimentConfig, load_config
from training.schema import to_dict, validate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"


def config(**data: object) -> ExperimentConfig:
    base = to_dict(load_config(CONFIG_DIR / "dense/resnet20_cifar10.yaml", profile="full"))
    base["data"].update(data)
    base["train"]["epochs"], base["train"]["schedule"] = 2, {"name": "constant"}
    return validate(ExperimentConfig, base)


def test_images_count_training_and_evaluation_passes() -> None:
    assert cost.images(config()) == (2 * 50_000, 2 * 10_000)  # the test set after every epoch
    assert cost.images(config(validation=5000)) == (2 * 45_000, 2 * 5000 + 2 * 10_000)


def test_forward_flops_of_resnet20_are_its_known_multiply_adds() -> None:
    assert cost.forward_flops("resnet20", "cifar10") == pytest.approx(2 * 40.55e6, rel=0.02)  # 40.55M MACs


def test_without_a_measured_table_the_estimate_is_flops_at_the_stated_utilisation(tmp_path: Path) -> None:
    got = cost.gpu_hours(config(), tmp_path / "none.json")
    flops = 3 * cost.forward_flops("resnet20", "cifar10") * (2 * 50_000 + 2 * 10_000 / 3)
    assert got.source == "estimate"
    assert got.gpu_hours == pytest.approx(flops / (cost.PEAK_FLOPS * cost.UTILISATION) / 3600)


def test_a_measured_table_wins_for_its_models(tmp_path: Path) -> None:
    table = tmp_path / "gpu_train.json"
    rows = {"dense sgd": {"images_per_s": 2000.0}, "rda": {"images_per_s": 1000.0}}
    table.write_text(json.dumps({"results": {"resnet20": rows}, "provenance": {"device_name": "NVIDIA H200"}}))
    dense = cost.gpu_hours(config(), table)
    assert dense == cost.Cost((2 * 50_000 + 2 * 10_000 / 3) / 2000 / 3600, "measured on NVIDIA H200")
    rda = to_dict(config())
    rda["optimizer"] = {"name": "rda", "lr": 0.1}
    rda["method"] = {"name": "rda", "lam": 1e-6}
    assert cost.gpu_hours(validate(ExperimentConfig, rda), table).gpu_hours == pytest.approx(2 * dense.gpu_hours)
    vgg = to_dict(config())
    vgg["model"] = "vgg16"
    assert cost.gpu_hours(validate(ExperimentConfig, vgg), table).source == "estimate"  # not in the table


def test_list_prints_gpu_hours_per_experiment_and_in_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(CONFIG_DIR / "dense/resnet20_cifar10.yaml"), "--list", "--profile", "full"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("resnet20_cifar10") and out[0].endswith("GPU-h (estimate)")
    assert out[2].endswith("GPU-hours on one GPU in all (estimate)") and out[3].startswith("estimate: 3x forward")
