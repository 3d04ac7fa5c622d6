import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.run import CONFIG_DIR, main
from tests.conftest import ROOT
from training import config
from training.config import load_config, resolve
from training.schema import ConfigError

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


@pytest.mark.parametrize(
    "edit, message",
    [
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
    ],
)
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
    # 80 and 120 of 160 epochs -> 0.5 and 0.75 of 1: a milestone at the end of the stage cannot act and goes
    assert cfg.train.epochs == 1 and cfg.train.schedule.milestones == []
    assert (cfg.data.max_train, cfg.data.max_test, cfg.seeds, cfg.profile) == (1500, 500, 1, "smoke")


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
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", str(bad), "--results", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: model: required key is missing"
    assert not (tmp_path / "r").exists()


def test_every_shipped_config_loads_for_its_profiles() -> None:
    for path in sorted((ROOT / "experiments" / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        for profile in ["full", *cfg.profiles]:
            resolve(cfg, profile)


def test_load_run_config_reads_back_what_a_run_writes(tmp_path: Path) -> None:
    resolved = config.resolve(config.load_config(CONFIG_DIR / "slimming/subset/r20_slimming_c30.yaml"), "subset")
    path = tmp_path / "config.yaml"
    path.write_text(config.dump_config(dataclasses.replace(resolved, seeds=1)) + "seed: 0\n")  # as run_one writes it
    assert config.load_run_config(path) == dataclasses.replace(resolved, seeds=1)
    path.write_text("model: resnet20\nseed: 0\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"config.yaml: .*bogus"):
        config.load_run_config(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (("lr: 0.1", "lr: 0"), "optimizer.lr: must be > 0, got 0"),
        (("lr: 0.1", "lr: -0.1"), "optimizer.lr: must be > 0"),
        (("lr: 0.1,", "lr: 0.1, momentum: 1.5,"), "optimizer.momentum: must be >= 0 and < 1, got 1.5"),
        (("weight_decay: 1e-4", "weight_decay: -1e-4"), "optimizer.weight_decay: must be >= 0"),
        (("[80, 120]}", "[80, 120], gamma: -1.0}"), "train.schedule.gamma: must be > 0, got -1.0"),
        (("batch_size: 32", "batch_size: 32, max_train: 0"), "data.max_train: must be >= 2, got 0"),
        (("batch_size: 32", "batch_size: 32, max_train: 1"), "data.max_train: must be >= 2, got 1"),
        (("batch_size: 32", "batch_size: 32, max_train: -10"), "data.max_train: must be >= 2, got -10"),
        (("batch_size: 32", "batch_size: 0"), "data.batch_size: must be >= 2, got 0"),
        (("epochs: 160", "epochs: 0"), "train.epochs: must be >= 1, got 0"),
        (("profiles:", "seeds: 0\nprofiles:"), "seeds: must be >= 1, got 0"),
        (("train:\n", "train:\n  label_smoothing: 2\n"), "train.label_smoothing: must be >= 0 and < 1, got 2"),
        (("[80, 120]}", "[80, 200]}"), "train.schedule.milestones: 200 is not inside the train stage's 160 epochs"),
        (("[80, 120]}", "[120, 80]}"), "train.schedule.milestones: must increase, got [120, 80]"),
        (
            ("{name: multistep, milestones: [80, 120]}", "{name: cosine, milestones: [80]}"),
            "train.schedule.milestones: only a multistep schedule has milestones, not cosine",
        ),
        (
            ("weight_decay: 1e-4}", "weight_decay: 1e-4}\nmethod: {name: magnitude, retrain_epochs: -4}"),
            "method.retrain_epochs: must be >= 1, got -4",
        ),
        (
            (
                "{name: sgd, lr: 0.1, weight_decay: 1e-4}",
                "{name: rda, lr: 1.0, momentum_timescale: 0}\nmethod: {name: rda}",
            ),
            "optimizer.momentum_timescale: must be > 0, got 0",
        ),
    ],
)
def test_values_out_of_range_are_refused_at_load_time(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    assert GOOD.replace(*edit) != GOOD
    with pytest.raises(ConfigError) as info:
        load_config(path, profile="full")
    assert str(info.value) == f"{path}: {message}" or str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_cli_range_error_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write(tmp_path, GOOD.replace("lr: 0.1", "lr: 0"), "bad.yaml")
    results = tmp_path / "results"
    assert main([str(bad), "--results", str(results)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}: optimizer.lr: must be > 0, got 0.0"
    assert not results.exists()


def test_an_explicit_override_is_final_under_every_profile(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("profiles: {smoke: {}}", "profiles: {smoke: {}, subset: {epochs: 40}}"))
    smoke = load_config(path, ["train.epochs=3"], profile="smoke")
    assert smoke.train.epochs == 3 and smoke.train.schedule.milestones == [2]  # 80, 120 of 160 -> 1.5, 2.25 of 3
    subset = load_config(path, ["train.epochs=2"], profile="subset")
    assert subset.train.epochs == 2 and subset.train.schedule.milestones == [1]
    fixed = load_config(path, ["train.epochs=3", "train.schedule.milestones=[1]", "data.max_train=64"], profile="smoke")
    assert fixed.train.schedule.milestones == [1] and fixed.data.max_train == 64  # explicit beats the profile's 2000
    one_shot = load_config(
        CONFIG_DIR / "magnitude/resnet56_cifar10_magnitude_oneshot_s80.yaml", ["train.epochs=1"], profile="smoke"
    )
    assert sum(s.epochs for s in config.plan(one_shot)) == 2  # 1 epoch of training, 40 x 1/160 -> 1 of fine-tuning
    with pytest.raises(ConfigError, match=r"--set 'train.epochs=\[': not valid YAML"):
        load_config(path, ["train.epochs=["], profile="smoke")


def test_iteration_counts_move_with_the_profile(tmp_path: Path) -> None:
    lottery = CONFIG_DIR / "lottery/resnet56_cifar10_lottery_s90.yaml"
    full = load_config(lottery, profile="full")
    assert str(full.method.rewind) == "2000it"
    smoke = load_config(lottery, profile="smoke")  # 2000 of 160 x 391 steps: the same fraction of 1 epoch
    assert smoke.method.rewind.unit == "ep" and smoke.method.rewind.value == pytest.approx(2000 / 391 / 160, 1e-5)
    stages = config.plan(smoke)  # it fits: rewinding at step 1 of round 0's 8 steps
    assert len(stages) > 1


@pytest.mark.parametrize("profile", list(config.PROFILES))
def test_every_shipped_config_resolves_and_plans_at_every_profile(profile: str) -> None:
    """Any config can be run at any profile by naming its file, so each must resolve and plan."""
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        cfg = load_config(path, profile=profile)
        assert sum(s.epochs for s in config.plan(cfg)) >= 1


def test_a_huge_value_gives_a_short_error(tmp_path: Path) -> None:
    """A YAML alias bomb (nine levels of nine-fold aliases: 9^9 integers if expanded) in a typed field."""
    levels = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]" for p, c in zip("abcdefgh", "bcdefghi")
    )
    text = (
        "profiles: {"
        + levels
        + "}\n"
        + GOOD.replace("epochs: 160", "epochs: *i").replace("profiles: {smoke: {}}\n", "")
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert len(str(info.value)) < 250 and "train.epochs: expected int, got [[...]" in str(info.value), str(info.value)


def test_a_method_schedule_outside_the_stages_loses_milestones_past_the_train_stage() -> None:
    """The gates' optimizer schedule runs on the train stage's clock: shortened to 1 epoch, its
    milestones at 30 and 60 of 90 round to 0 and 1 of 1; 1 could never act and goes."""
    dep = load_config(CONFIG_DIR / "dep_l0/dep_l0_bwd_resnet50_imagenet.yaml", ["train.epochs=1"], profile="smoke")
    assert dep.method.gate_schedule.milestones == [] or max(dep.method.gate_schedule.milestones) < 1
    assert dep.method.finetune_schedule.milestones == []  # its own stage's rule


@pytest.mark.parametrize("method", ["gmp", "rigl"])
def test_an_end_point_beyond_the_training_is_refused(method: str) -> None:
    path = CONFIG_DIR / f"{method}/subset/r20_{method}_s80.yaml"
    assert load_config(path, ["method.end=15ep"], profile="subset").method.end.value == 15  # the last step: fine
    with pytest.raises(ConfigError, match=r"method\.end: 16ep \(step 6256\) is beyond the training's 5865 steps"):
        load_config(path, ["method.end=16ep"], profile="subset")


def test_only_takes_several_patterns(capsys: pytest.CaptureFixture[str]) -> None:
    names = lambda only: sorted(c.name for c in config.collect_configs([CONFIG_DIR], "subset", [], only))  # noqa: E731
    assert names("r20_dense_sgd") == ["r20_dense_sgd"]
    assert names(["r20_dense_sgd", "r20_snip_s[58]*"]) == ["r20_dense_sgd", "r20_snip_s50", "r20_snip_s80"]
    assert main([str(CONFIG_DIR), "--profile", "subset", "--only", "dense_sgd", "--only", "r20_gmp_s9*", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "r20_dense_sgd" in listed and "r20_gmp_s90" in listed and "r20_gmp_s50" not in listed


@pytest.fixture(scope="module")
def rehearsal_configs() -> list[config.ExperimentConfig]:
    return config.collect_configs([CONFIG_DIR], "rehearsal", [], None)


def test_the_rehearsal_runs_every_full_experiment_every_stage_at_the_fewest_epochs_accepted(
    rehearsal_configs: list[config.ExperimentConfig],
) -> None:
    full = {c.name: c for c in config.collect_configs([CONFIG_DIR], "full", [], None)}
    rehearsal = {c.name: c for c in rehearsal_configs}
    assert rehearsal.keys() == full.keys() and len(full) > 200
    for name, cfg in rehearsal.items():
        stages, full_stages = config.plan(cfg), config.plan(full[name])
        assert [s.name for s in stages] == [s.name for s in full_stages], name
        assert all(s.epochs >= 1 for s in stages) and cfg.seeds == 1, name
        assert cfg.data.max_train == 128 and cfg.data.max_test == 64 and cfg.data.batch_size <= 16, name
        # at 128 images in batches of 16 every shipped config accepts one main-stage epoch (a budget
        # that needs more is found by the method's own check: the lottery test below)
        assert cfg.train.epochs == 1, name
        if hasattr(cfg.method, "latency_batch_sizes"):
            assert cfg.method.latency_batch_sizes == [1], name


def test_the_fewest_epochs_keep_a_lottery_rewind_point_inside_round_0(tmp_path: Path) -> None:
    """In batches of 128 of 128 images an epoch is one step: the rewind point (step 1) lies inside
    round 0 only from 2 epochs on, so the rehearsal trains 2 epochs a round, found from the method's
    own check, not from a list."""
    text = (CONFIG_DIR / "lottery/resnet56_cifar10_lottery_s90.yaml").read_text()
    path = write(tmp_path, text + "profiles: {rehearsal: {batch_size: 128}}\n")
    cfg = load_config(path, profile="rehearsal")
    assert cfg.data.batch_size == 128 and config.reference_steps_per_epoch(cfg) == 1
    assert cfg.train.epochs == 2 and all(s.epochs == 2 for s in config.plan(cfg))
    with pytest.raises(ConfigError, match="rewind: .* is not inside round 0's 1 steps"):
        config.plan(load_config(path, ["train.epochs=1"], profile="rehearsal"))


def test_the_rehearsal_bounds_batch_and_loader_processes_and_leaves_subset_only_configs_out() -> None:
    cfg = load_config(CONFIG_DIR / "l0hc/l0hc_resnet50_imagenet.yaml", profile="rehearsal")
    assert cfg.data.batch_size == 16 and cfg.data.workers == 1 and cfg.method.latency_batch_sizes == [1]
    assert load_config(CONFIG_DIR / "l0hc/l0hc_resnet50_imagenet.yaml", profile="full").data.workers == 8
    subset_only = load_config(CONFIG_DIR / "rda/subset/r20_rda_s80.yaml")
    assert not subset_only.full and not config.in_profile(subset_only, "rehearsal")


def test_a_stratified_sample_takes_one_experiment_per_method_model_and_data_set(
    rehearsal_configs: list[config.ExperimentConfig],
) -> None:
    configs = rehearsal_configs
    sample = config.stratified_sample(configs)
    groups = {(c.method.name, c.model, c.data.dataset) for c in configs}
    assert len(sample) == len(groups) and {(c.method.name, c.model, c.data.dataset) for c in sample} == groups


def test_a_config_may_ask_a_profile_for_its_fewest_epochs_by_name(tmp_path: Path) -> None:
    text = GOOD.replace("profiles: {smoke: {}}", "profiles: {smoke: {epochs: minimum}}")
    assert "epochs: minimum" in text
    cfg = load_config(write(tmp_path, text), profile="smoke")
    assert cfg.train.epochs == 1 and all(s.epochs == 1 for s in config.plan(cfg))
    wrong = "profiles.smoke.epochs: expected int | 'minimum' | null, got 'most'"
    with pytest.raises(ConfigError, match=re.escape(wrong)):
        load_config(write(tmp_path, text.replace("minimum", "most")), profile="smoke")


@pytest.mark.parametrize("key", ["synthetic: true", "experiments_of: full"])
def test_what_a_profile_is_cannot_be_set_by_one_config(tmp_path: Path, key: str) -> None:
    """A profile's own properties (generated data, whose experiments it runs) were accepted in a YAML's
    profiles entry and silently ignored: now a config error naming the key."""
    text = GOOD.replace("profiles: {smoke: {}}", f"profiles: {{smoke: {{{key}}}}}")
    with pytest.raises(ConfigError, match=f"profiles.smoke.{key.split(':')[0]}: a property of the built-in profile"):
        load_config(write(tmp_path, text), profile="smoke")


@pytest.mark.parametrize("value", ["1e400ep", "1e13it", 10**400, "1" + "0" * 200 + "it"])
def test_durations_beyond_any_training_are_config_errors(value: object) -> None:
    from pruning.base import Duration

    with pytest.raises(ValueError, match="expected a duration"):
        Duration.parse(value)
