"""The training benchmark runs every variant through the real loop and reports what it promises
(no timing is asserted: figures depend on the machine)."""

import json
from pathlib import Path

import pytest
import torch

from experiments.bench.__main__ import main
from experiments.bench.jobs import combine_jobs, overlap
from experiments.bench.train import (
    DENSE,
    REFERENCE_LOOP,
    TRAIN_VARIANTS,
    PerImageAugment,
    bench_train,
    format_train_table,
    synthetic_cifar,
)


def test_every_variant_and_the_reference_loop_report_positive_throughput() -> None:
    result = bench_train(torch.device("cpu"), models=("resnet20",), batch=8, steps=2, epochs=1, warmup=1, workers=0)
    assert result["benchmark"] == "train" and result["images_per_epoch"] == 16
    assert result["fast_path"] == {"channels_last": False, "bf16": False, "compile": False}  # CUDA only
    rows = result["results"]["resnet20"]
    assert set(rows) == {*TRAIN_VARIANTS, REFERENCE_LOOP}
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["epoch_s"] > 0
        assert len(row["epoch_s_timed"]) == 1 and len(row["epoch_s_warmup"]) == 1
        assert row["images_per_s"] == pytest.approx(16 / row["epoch_s"])
        assert row["ratio_to_dense"] == pytest.approx(row["images_per_s"] / rows[DENSE]["images_per_s"])
    assert rows[DENSE]["ratio_to_dense"] == 1.0
    assert result["speedup_over_reference"]["resnet20"] == pytest.approx(
        rows[DENSE]["images_per_s"] / rows[REFERENCE_LOOP]["images_per_s"]
    )
    table = format_train_table(result)
    assert all(name in table for name in rows)


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown variant 'sgd'"):
        bench_train(torch.device("cpu"), models=("resnet20",), variants=("sgd",))


def test_reference_transform_is_a_padded_crop_maybe_flipped_then_normalised() -> None:
    split = synthetic_cifar(3, seed=1)
    data = PerImageAugment(split, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.manual_seed(0)
    for i in range(3):
        x, y = data[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == split.labels[i]
        pixels = (x * 0.25 + 0.5) * 255
        padded = torch.nn.functional.pad(split.images[i].float(), (4, 4, 4, 4))
        windows = [
            w
            for t in range(9)
            for left in range(9)
            for w in (padded[:, t : t + 32, left : left + 32], padded[:, t : t + 32, left : left + 32].flip(2))
        ]
        assert any(torch.allclose(pixels, w, atol=1e-3) for w in windows)


def test_jobs_total_and_overlap() -> None:
    def run(ips: float, span: list[float]) -> dict:
        return {"results": {"resnet20": {DENSE: {"images_per_s": ips, "wall_clock": span}}}}

    combined = combine_jobs([run(100.0, [0.0, 10.0]), run(80.0, [2.0, 12.0])], "resnet20")
    assert combined == {
        "processes": 2,
        "images_per_s": 180.0,
        "per_process": [100.0, 80.0],
        "overlap": pytest.approx(8.0 / 12.0),
    }
    assert overlap([[0.0, 1.0], [2.0, 3.0]]) == 0.0 and overlap([[1.0, 2.0]]) == 1.0


def test_cli_prints_a_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "train.json"
    assert (
        main(
            [
                "train",
                "--device",
                "cpu",
                "--models",
                "resnet20",
                "--variants",
                DENSE,
                "--batch",
                "8",
                "--steps",
                "1",
                "--epochs",
                "1",
                "--warmup",
                "0",
                "--workers",
                "0",
                "--json",
                str(path),
            ]
        )
        == 0
    )
    written = json.loads(path.read_text())
    assert set(written) >= {"device", "torch", "threads", "batch", "fast_path", "results", "speedup_over_reference"}
    assert set(written["results"]["resnet20"]) == {DENSE, REFERENCE_LOOP}
    assert "reference loop" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the device must be named
        main(["train"])
