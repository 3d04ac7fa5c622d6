"""The training benchmark runs every variant through the real loop and reports what it promises
(no timing is asserted: figures depend on the machine)."""

import functools
import json
from collections.abc import Callable
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
    epochs_in_turns,
    format_train_table,
    operator_table,
    operators_per_step,
    paired_ratio,
    synthetic_cifar,
)


def test_every_variant_and_the_reference_loop_report_positive_throughput() -> None:
    result = bench_train(
        torch.device("cpu"),
        models=("resnet20",),
        batch=8,
        steps=2,
        epochs=1,
        warmup=1,
        workers=0,
        count_operators=False,
    )
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
    for name, row in rows.items():  # one timed round: its ratio is dense's epoch over the variant's
        paired = row.get("paired_ratio_to_dense")
        assert (paired is None) == (name == REFERENCE_LOOP)  # the reference loop does not take turns
        if paired:
            assert paired["rounds"] == [rows[DENSE]["epoch_s_timed"][0] / row["epoch_s_timed"][0]]
    assert result["speedup_over_reference"]["resnet20"] == pytest.approx(
        rows[DENSE]["images_per_s"] / rows[REFERENCE_LOOP]["images_per_s"]
    )
    table = format_train_table(result)
    assert all(name in table for name in rows)


def test_paired_ratios_are_taken_round_by_round() -> None:
    # the machine slows down threefold in round 3; a variant 10% slower than dense in every round
    dense = [1.0, 1.0, 3.0, 1.0, 1.0, 1.0]
    variant = [1.1, 1.1, 3.3, 1.1, 1.1, 1.1]
    paired = paired_ratio(dense, variant)
    assert paired["rounds"] == pytest.approx([1 / 1.1] * 6)
    assert paired["median"] == pytest.approx(1 / 1.1) and paired["interval"] == pytest.approx([1 / 1.1] * 2)
    assert paired["coverage"] == 1 - 2 / 2**6


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
                "--no-operators",
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


class FakeTrainer:
    """Appends (name, epoch) to ``log`` for each of its epochs, calling ``on_epoch`` after each."""

    def __init__(self, name: str, epochs: int, log: list, on_epoch: Callable) -> None:
        self.name, self.epochs, self.log, self.on_epoch = name, epochs, log, on_epoch
        self.history: list[dict] = []

    def run(self) -> None:
        for e in range(self.epochs):
            self.log.append((self.name, e))
            self.history.append({"seconds": float(e)})
            self.on_epoch({})


def test_the_variants_take_turns_epoch_by_epoch() -> None:
    log: list = []
    make = {name: functools.partial(FakeTrainer, name, k, log) for name, k in (("a", 3), ("b", 2), ("c", 3))}
    done = epochs_in_turns(make)
    # round r runs them rotated by r: a b c, b c a, c a (b has finished)
    assert log == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1), ("a", 1), ("c", 2), ("a", 2)]
    assert [s for s, _ in done["a"]] == [0.0, 1.0, 2.0] and len(done["b"]) == 2
    assert all(end > 0 for rows in done.values() for _, end in rows)

    def broken(on_epoch: Callable) -> None:
        raise RuntimeError("no such method")

    with pytest.raises(RuntimeError, match="no such method"):  # an error ends the benchmark, no thread left waiting
        epochs_in_turns({"a": make["a"], "broken": broken})


def test_each_method_s_added_operators_are_counted_per_step() -> None:
    fast = {"channels_last": False, "bf16": False, "compile": False}
    ops = {
        v: operators_per_step("resnet20", v, torch.device("cpu"), **fast)
        for v in (DENSE, "magnitude (masked)", "l0hc", "grasp")  # grasp: scores on a class-balanced batch
    }
    # resnet20: 19 convs and the classifier, each run forward and backward once a step
    assert ops[DENSE]["aten::conv2d"] == ops[DENSE]["aten::convolution_backward"] == 19
    assert ops[DENSE]["aten::linear"] == 1
    table = operator_table(ops)
    assert table[DENSE]["added_operators"] == 0 and table[DENSE]["added_by_operator"] == {}
    # masks: one fused multiply of the 20 masked weights after the step, and a multiply of each gradient
    assert table["magnitude (masked)"]["added_by_operator"] == {"aten::_foreach_mul_": 1, "aten::mul_": 20}
    assert table["magnitude (masked)"]["added_kernel_operators"] == 21
    # grasp: its masks' operators too (the rest is its scoring before the first step, which reads an
    # epoch of 1 or 2 steps and so does not cancel in the difference)
    assert table["magnitude (masked)"]["added_by_operator"].items() <= table["grasp"]["added_by_operator"].items()
    # hard-concrete gates: for all 10 gated layers, one random draw, one pass of each gate operation
    # (sigmoid: the gates and the penalty's P(z != 0)), one fused Adam step; per layer, the multiply
    added = table["l0hc"]["added_by_operator"]
    assert added["aten::rand"] == added["aten::log"] == added["aten::log1p"] == 1
    assert added["aten::sigmoid"] == added["aten::sigmoid_backward"] == 2
    assert added["aten::_fused_adam_"] == 1 and "aten::item" not in added
