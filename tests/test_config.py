import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from training import config
from training.config import load_config, resolve
from experiments.run import CONFIG_DIR
from experiments.run import main
from training.schema import ConfigError
from tests.conftest import ROOT

GOOD = """\
model: resnet20
data: {dataset: cifar10, batch_size: 32}
train:
  epochs: 160
  schedule: {name: multistep, milestones: [80, 120]}
optimizer: {name: sgd, lr: 0.1, weight_decay: 1e-4}
profiles: {smoke: {}}
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.name == "exp" and cfg.method.name == "dense"
    assert cfg.optimizer.weight_decay == 1e-4 and cfg.optimizer.momentum == 0.9  # "1e-4" read as a float
    assert cfg.train.schedule.milestones == [80, 120]


@pytest.mark.parametrize("edit, message", [
    (("train:", "trian:"), "trian: unknown key"),
    (("batch_size: 32", "batch_size: many"), "data.batch_size: expected int, got 'many'"),
    (("epochs: 160", "epochs: 1.5"), "train.epochs: expected int"),
    (("model: resnet20\n", ""), "model: required key is missing"),
    (("dataset: cifar10", "dataset: mnist"), "data.dataset: expected one of 'cifar10' | 'cifar100' | 'imagenet'"),
    (("name: sgd", "name: adamw"), "optimizer.name: unknown 'adamw'"),
    (("model: resnet20", "model: resnet21"), "model: unknown 'resnet21'"),
    (("{name: multistep", "{name: step"), "train.schedule.name: expected one of"),
    (("weight_decay: 1e-4", "weight_decay: 1e-4, momentom: 0.9"), "optimizer.momentom: unknown key"),
    (("{smoke: {}}", "{quick: {}}"), "profiles: unknown profile 'quick'"),
])
def test_errors_name_the_file_and_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)


def test_method_section_is_validated_by_the_method(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "method: {name: dense, lam: 1}\n")
    with pytest.raises(ConfigError, match="method.lam: unknown key"):
        load_config(path)


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(write(tmp_path, "model: [resnet20\n"))
    assert "\n" not in str(info.value)


def test_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), ["train.epochs=3", "optimizer.lr=1e-3", "data.augment=false"])
    assert (cfg.train.epochs, cfg.optimizer.lr, cfg.data.augment) == (3, 1e-3, False)
    with pytest.raises(ConfigError, match="train.epoch: unknown key"):
        load_config(write(tmp_path, GOOD), ["train.epoch=3"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(write(tmp_path, GOOD), ["train.epochs"])


def test_smoke_profile_scales_every_epoch_count(tmp_path: Path) -> None:
    cfg = resolve(load_config(write(tmp_path, GOOD)), "smoke")
    assert cfg.train.epochs == 2 and cfg.train.schedule.milestones == [1, 2]
    assert (cfg.data.max_train, cfg.data.max_test, cfg.seeds, cfg.profile) == (2000, 1000, 1, "smoke")


def test_profile_values_of_the_experiment_win(tmp_path: Path) -> None:
    text = GOOD.replace("profiles: {smoke: {}}", "profiles: {subset: {epochs: 40, seeds: 2}}")
    cfg = resolve(load_config(write(tmp_path, text)), "subset")
    assert cfg.train.epochs == 40 and cfg.train.schedule.milestones == [20, 30] and cfg.seeds == 2
    full = resolve(load_config(write(tmp_path, text)), "full")
    assert full.train.epochs == 160 and full.data.max_train is None


def test_cli_config_error_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, GOOD.replace("lr: 0.1", "lr: fast"), "bad.yaml")
    results = tmp_path / "results"
    assert main([str(good), str(bad), "--results", str(results), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {bad}: optimizer.lr: expected float, got 'fast'"
    assert not results.exists()


def test_cli_error_has_no_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace("model: resnet20\n", ""))
    proc = subprocess.run([sys.executable, "-m", "experiments.run", str(bad), "--results", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: model: required key is missing"
    assert not (tmp_path / "r").exists()


def test_every_shipped_config_loads_for_its_profiles() -> None:
    for path in sorted((ROOT / "experiments" / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        for profile in ["full", *cfg.profiles]:
            resolve(cfg, profile)


def test_load_run_config_reads_back_what_a_run_writes(tmp_path: Path) -> None:
    resolved = config.resolve(config.load_config(CONFIG_DIR / "slimming/subset/resnet20_cifar10_slimming_c30.yaml"), "subset")
    path = tmp_path / "config.yaml"
    path.write_text(config.dump_config(dataclasses.replace(resolved, seeds=1)) + "seed: 0\n")  # as run_one writes it
    assert config.load_run_config(path) == dataclasses.replace(resolved, seeds=1)
    path.write_text("model: resnet20\nseed: 0\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"config.yaml: .*bogus"):
        config.load_run_config(path)
