"""The speed benchmark runs and reports what it promises (no timing is asserted)."""

import json
from pathlib import Path

import pytest
import torch

from experiments.bench.__main__ import main
from experiments.bench.export import bench_export, format_export_table
from experiments.bench.optimizer import RDA_VARIANTS, REFERENCE, SGD, bench_optimizer, format_table
from models import build_model
from tests.helpers import run_config, run_dir
from tests.test_run import CONFIG as DENSE
from tests.test_run import SLIMMING


def test_optimizer_bench_reports_every_variant() -> None:
    result = bench_optimizer(torch.device("cpu"), repeats=2, warmup=1, model="resnet20")
    assert result["benchmark"] == "optimizer" and result["model"] == "resnet20" and result["repeats"] == 2
    model = build_model("resnet20", 10)
    assert result["tensors"] == 19 * 3 + 2  # 19 convolutions, 19 BN (scale and shift), fc weight and bias
    assert result["parameters"] == sum(p.numel() for p in model.parameters())
    assert set(result["results"]) == {SGD, *RDA_VARIANTS} and result["reference"] == REFERENCE
    for row in result["results"].values():
        assert set(row) == {"median_ms", "min_ms", "ratio_to_sgd", "ratio_min_to_sgd"}
        assert 0 < row["min_ms"] <= row["median_ms"]
    assert result["results"][SGD]["ratio_to_sgd"] == 1.0
    assert result["ratio"] == result["results"][REFERENCE]["ratio_to_sgd"]
    assert result["ratio_min"] == result["results"][REFERENCE]["ratio_min_to_sgd"]
    table = format_table(result)
    assert all(name in table for name in result["results"])


def test_cli_prints_a_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "out" / "bench.json"
    assert main(["optimizer", "--repeats", "2", "--warmup", "1", "--model", "resnet20", "--json", str(path)]) == 0
    written = json.loads(path.read_text())
    assert set(written) >= {"device", "torch", "threads", "results", "ratio", "ratio_min", "parameters"}
    assert REFERENCE in capsys.readouterr().out


def test_cli_refuses_an_unknown_subcommand() -> None:
    with pytest.raises(SystemExit):
        main(["inference"])


def test_latency_times_channel_pruned_runs_and_skips_the_rest(
    tmp_path: Path, tiny_cifar: Path, capsys: pytest.CaptureFixture
) -> None:
    for name, text in (("slimming", SLIMMING), ("dense", DENSE)):
        (tmp_path / name).mkdir()
        assert run_config(tmp_path / name, tiny_cifar, text) == 0
    path = tmp_path / "latency.json"
    runs = [str(run_dir(tmp_path / "slimming")), str(run_dir(tmp_path / "dense"))]
    assert (
        main(["latency", *runs, "--batch-sizes", "1", "2", "--warmup", "0", "--repeats", "2", "--json", str(path)]) == 0
    )
    result = json.loads(path.read_text())
    assert [r["name"] for r in result["runs"]] == ["tiny"] and result["skipped"] == [runs[1]]
    timing = result["runs"][0]["latency"]
    assert {"cpu_batch1", "cpu_batch2"} <= set(timing) and timing["cpu_batch2"]["pruned"]["repeats"] == 2
    assert "tiny" in capsys.readouterr().out
    # A results folder stands for its runs that measured a latency (the dense run did not).
    assert (
        main(
            [
                "latency",
                str(tmp_path / "slimming" / "results"),
                "--batch-sizes",
                "1",
                "--warmup",
                "0",
                "--repeats",
                "1",
                "--json",
                str(path),
            ]
        )
        == 0
    )
    assert [r["run"] for r in json.loads(path.read_text())["runs"]] == [runs[0]]


def test_export_bench_prunes_to_each_sparsity_and_measures_the_files() -> None:
    result = bench_export(("resnet20",), (0.5, 0.9))
    low, high = result["results"]
    assert (low["model"], low["sparsity"], high["sparsity"]) == ("resnet20", 0.5, 0.9)
    # zeros among all floats (BN scales and biases are not pruned), so a little under the sparsity
    assert 0.85 < high["float_zero_fraction"] < 0.9 and 0.45 < low["float_zero_fraction"] < 0.5
    assert 1 < low["file_ratio"] < high["file_ratio"]
    assert "resnet20" in format_export_table(result)


def test_json_records_where_a_figure_came_from(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    assert main(["export", "--models", "resnet20", "--sparsity", "0.9", "--json", str(path)]) == 0
    record = json.loads(path.read_text())["provenance"]
    assert record["command"] == f"python -m experiments.bench export --models resnet20 --sparsity 0.9 --json {path}"
    assert record["date"].endswith("+00:00") and len(record["load_average"]) == 3
    assert {"git_revision", "device_name", "torch", "torch_threads"} <= set(record)
