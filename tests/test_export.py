"""Compressed export of sparse models: exact round trip, smaller than dense, sizes as counted by hand."""

import json
from pathlib import Path

import pytest
import torch

from experiments import export as export_cli
from models import build_model
from training import export


def sparse_resnet20(sparsity: float, seed: int = 0) -> torch.nn.Module:
    """ResNet-20 with ``sparsity`` of every conv / linear weight set to zero at random, non-trivial BN buffers."""
    torch.manual_seed(seed)
    model = build_model("resnet20", 10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.mul_(torch.rand_like(p) >= sparsity)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(17)
    return model


def test_bits_pack_as_counted_by_hand() -> None:
    mask = torch.tensor([1, 0, 1, 0, 0, 0, 0, 0, 1], dtype=torch.bool)
    packed = export.pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.tolist() == [0b10100000, 0b10000000]
    assert export.unpack_bits(packed, 9).tolist() == mask.tolist()


def test_tiny_tensors_take_the_encoding_and_size_counted_by_hand() -> None:
    # 4 x 5 float32, 3 nonzeros: dense 80 bytes, bitmask ceil(20 / 8) + 3 * 4 = 15, index 3 * (4 + 4) = 24.
    t = torch.zeros(4, 5)
    t[0, 1], t[2, 3], t[3, 4] = 1.5, -2.0, 3.25
    entry = export.encode_tensor(t)
    assert entry["encoding"] == "bitmask" and export.payload_bytes(entry) == 15
    assert export.encoding_sizes(20, 3, 4) == {"dense": 80, "bitmask": 15, "index": 24}
    assert entry["values"].tolist() == [1.5, -2.0, 3.25]  # row-major order
    assert export.unpack_bits(entry["mask"], 20).nonzero().squeeze(1).tolist() == [1, 13, 19]
    # 1000 entries, 5 nonzeros: bitmask 125 + 20 = 145, index 5 * 8 = 40.
    u = torch.zeros(1000)
    u[[3, 10, 500, 501, 999]] = 1.0
    entry = export.encode_tensor(u)
    assert (
        entry["encoding"] == "index"
        and export.payload_bytes(entry) == 40
        and entry["index"].tolist() == [3, 10, 500, 501, 999]
    )
    # No zeros: dense, 10 * 4 bytes (a bitmask would add 2 bytes); integer tensors stay dense.
    assert export.encode_tensor(torch.ones(10))["encoding"] == "dense"
    assert export.encode_tensor(torch.zeros(10, dtype=torch.long))["encoding"] == "dense"
    for x in (t, u, torch.ones(10), torch.zeros(7), torch.zeros(0)):
        assert torch.equal(export.decode_tensor(export.encode_tensor(x)), x)


def test_round_trip_restores_the_model_exactly(tmp_path: Path) -> None:
    model = sparse_resnet20(0.9)
    path = tmp_path / "model.sparse.pt"
    report = export.export_model(model, path)
    state = export.load(path)
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for name, t in expected.items():
        assert state[name].dtype == t.dtype and state[name].shape == t.shape and torch.equal(state[name], t), name
    fresh = build_model("resnet20", 10)
    fresh.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    model.eval(), fresh.eval()
    assert torch.equal(fresh(x), model(x))
    # Measured in memory; a file on disk differs only by its name, stored in each zip record.
    assert report["file_bytes_export"] == pytest.approx(path.stat().st_size, rel=0.01)


def test_a_90_percent_sparse_model_is_several_times_smaller() -> None:
    model = sparse_resnet20(0.9)
    report = export.export_model(model)
    state = model.state_dict()
    assert report["dense_bytes"] == sum(t.numel() * t.element_size() for t in state.values())
    # Conv / linear weights: 1/8 byte of mask + 4 bytes for each of about 10% survivors, about 0.53 of 4 bytes.
    assert 5.0 < report["ratio"] < 8.0
    assert report["file_bytes_export"] < report["file_bytes_dense"] / 4
    dense_report = export.export_model(build_model("resnet20", 10))
    # Without pruning only the zero-initialised BN biases and running means shrink (to nothing: no positions).
    zero_bytes = sum(
        t.numel() * 4
        for n, t in build_model("resnet20", 10).state_dict().items()
        if n.endswith(("bn1.bias", "bn2.bias", "running_mean"))
    )
    assert dense_report["export_bytes"] == dense_report["dense_bytes"] - zero_bytes


def test_cli_reads_a_run_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"model": sparse_resnet20(0.95).state_dict(), "history": []}, run_dir / "checkpoint.pt")
    assert export_cli.main([str(run_dir), "-o", str(tmp_path / "out.pt"), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ratio"] > 5 and (tmp_path / "out.pt").is_file()
    assert "smaller" in capsys.readouterr().out
    assert export_cli.main([str(tmp_path / "missing")]) == 1
