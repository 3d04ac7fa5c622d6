"""The README's "Add a method" walk-through works as written: its code blocks (each after a
``<!-- file: PATH -->`` line) are written out, the class is registered, its test passes, its smoke
config runs through the runner and appears in the summary under its label, and the contract checks
hold for it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from experiments import run as runner
from experiments import summary
from pruning.base import METHOD_CLASSES
from pruning.registry import METHODS
from tests.conftest import ROOT, write_cifar10
from tests.test_method_contract import RAW, check_exact_target, check_resume
from training import config

BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w+\n(?P<code>.*?)```", re.S)


def section_files() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Add a method\n") :]
    section = section[: section.index("\n## ", 1)]
    return {m["path"]: m["code"] for m in BLOCK.finditer(section)}


def load_module(name: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_the_worked_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = section_files()
    assert [Path(p).suffix for p in files] == [".py", ".yaml", ".yaml", ".py"], list(files)
    for path, code in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    method_file, full_yaml, smoke_yaml, test_file = (tmp_path / p for p in files)
    try:
        module = load_module("pruning.methods.l1_penalty", method_file, monkeypatch)
        assert METHOD_CLASSES["l1_penalty"] is module.L1Penalty  # defining the class registered it
        monkeypatch.setitem(METHODS, "l1_penalty", module.L1Penalty)  # as pruning.registry would on import

        tests = load_module("test_l1_penalty", test_file, monkeypatch)
        for name in dir(tests):
            if name.startswith("test_"):
                getattr(tests, name)()

        fields = {f.name for f in dataclasses.fields(module.L1PenaltyConfig)}
        for path in (full_yaml, smoke_yaml):
            config.load_config(path)  # loads: every key and range valid
            assert set(yaml.safe_load(path.read_text())["method"]) == fields, path  # every option spelled out
        assert config.load_config(full_yaml).full and not config.load_config(full_yaml).profiles
        smoke = config.load_config(smoke_yaml)
        assert not smoke.full and set(smoke.profiles) == {"smoke"} and smoke_yaml.parent.name == "smoke"

        variant = module.L1Penalty.variant_info
        shipped = {METHODS[c.method.name].variant(c.method, c.optimizer) for c in RAW.values()}
        assert variant.label not in {v.label for v in shipped} and variant.color not in {v.color for v in shipped}
        assert variant.order not in {v.order for v in shipped}

        tiny = config.resolve(smoke, "smoke", epochs=2)
        check_exact_target(tiny)
        check_resume(tiny)

        data = write_cifar10(tmp_path / "data", per_batch=120, test=30)  # 600 train: 500 held out, 100 trained on
        results = tmp_path / "results"
        args = [str(smoke_yaml), "--profile", "smoke", "--data-root", str(data), "--results", str(results)]
        assert runner.main([*args, "--no-progress", "--device", "cpu"]) == 0
        capsys.readouterr()
        assert summary.main([str(results)]) == 0
        assert "SGD + l1" in capsys.readouterr().out
    finally:
        METHOD_CLASSES.pop("l1_penalty", None)
