"""Compressed export of unstructured-sparse models, and its size against the dense checkpoint.

Used by ``python -m experiments.export RUN_DIR|CHECKPOINT [-o OUT] [--json PATH]``, which reads the
model of a run's ``checkpoint.pt`` (for the unstructured methods, rda / magnitude / lottery / random, its
weights are the final ones: masks are applied, zeros are exact), encodes it, checks that decoding
gives back every tensor exactly, prints the sizes and writes OUT if asked.

Every tensor of the state_dict is stored in the smallest of three exact encodings; with n
entries, k of them nonzero, s bytes per value (4 for float32), the payload is

- ``dense``:   n s bytes, the tensor as it is;
- ``bitmask``: ceil(n / 8) bytes of one bit per entry (1 = nonzero; row-major order, first entry
  in the highest bit of the first byte) + k s bytes of the nonzero values in that order;
- ``index``:   k b bytes of positions in the flattened tensor (int32, b = 4; int64 past 2^31 - 1)
  + k s bytes of values.

Only floating-point tensors are encoded sparsely; integer buffers stay dense. For float32 a
bitmask beats dense once more than 1/32 of the entries are zero, and positions beat the bitmask
once fewer than 1/32 are nonzero (k 4 < n / 8). Decoding restores every value exactly, except
that a zero's sign is not kept (-0.0 comes back as +0.0, which compares and computes as equal).
The encoded parts are concatenated into one flat tensor per dtype (``compress``), and the file is
a ``torch.save`` of those and plain containers, so ``torch.load(weights_only=True)`` reads it.
Sizes are reported twice: payload bytes (the counts above, summed) and file bytes (what
``torch.save`` writes, container overhead included, measured in memory: a file on disk also
holds its own name in every record), each against the dense state_dict's.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "sparse-state-dict/1"
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """uint8 tensor of ceil(n / 8) bytes: entry i of the flattened mask is bit 7 - i % 8 of byte i // 8."""
    flat = mask.flatten().to(torch.int32)
    flat = torch.nn.functional.pad(flat, (0, -flat.numel() % 8))
    return (flat.view(-1, 8) * _BIT_WEIGHTS.to(flat.device)).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` bits of ``pack_bits``' output, as a flat bool tensor."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.int32)
    return ((packed.to(torch.int32).unsqueeze(1) >> shifts) & 1).flatten()[:n].bool()


def index_dtype(numel: int) -> torch.dtype:
    return torch.int32 if numel <= torch.iinfo(torch.int32).max else torch.int64


def encoding_sizes(numel: int, nonzero: int, itemsize: int) -> dict[str, int]:
    """Payload bytes of each encoding (module docstring)."""
    index_bytes = torch.empty((), dtype=index_dtype(numel)).element_size()
    return {
        "dense": numel * itemsize,
        "bitmask": math.ceil(numel / 8) + nonzero * itemsize,
        "index": nonzero * (index_bytes + itemsize),
    }


def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """The smallest exact encoding of ``t`` (ties go to dense, then bitmask)."""
    t = t.detach().cpu()
    if not t.is_floating_point() or t.numel() == 0:
        return {"encoding": "dense", "data": t.clone()}
    flat = t.flatten()
    keep = flat != 0
    nonzero = int(keep.sum())
    sizes = encoding_sizes(flat.numel(), nonzero, t.element_size())
    best = min(("dense", "bitmask", "index"), key=lambda k: sizes[k])  # min keeps the first of equals
    if best == "dense":
        return {"encoding": "dense", "data": t.clone()}
    entry = {"encoding": best, "shape": list(t.shape), "values": flat[keep].clone()}
    if best == "bitmask":
        entry["mask"] = pack_bits(keep)
    else:
        entry["index"] = keep.nonzero().squeeze(1).to(index_dtype(flat.numel()))
    return entry


def decode_tensor(entry: dict[str, Any]) -> torch.Tensor:
    if entry["encoding"] == "dense":
        return entry["data"].clone()
    values = entry["values"]
    n = math.prod(entry["shape"])
    out = torch.zeros(n, dtype=values.dtype)
    if entry["encoding"] == "bitmask":
        out[unpack_bits(entry["mask"], n)] = values
    elif entry["encoding"] == "index":
        out[entry["index"].long()] = values
    else:
        raise ValueError(f"unknown encoding {entry['encoding']!r}")
    return out.view(entry["shape"])


def payload_bytes(entry: dict[str, Any]) -> int:
    """Bytes of the tensors an encoded entry holds (what ``encoding_sizes`` counts)."""
    return sum(v.numel() * v.element_size() for v in entry.values() if isinstance(v, torch.Tensor))


def compress(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A state_dict in the export format: every tensor encoded, the encoded parts concatenated.

    One flat tensor per dtype holds the parts of every tensor (values, masks, positions, dense
    data) back to back; ``tensors`` says, per name, the encoding and where each part lies
    (dtype, offset, length). A file then holds a handful of records instead of several per
    tensor, so its size stays close to the payload.
    """
    blobs: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}
    tensors = {}
    for name, t in state.items():
        entry = encode_tensor(t)
        meta: dict[str, Any] = {"encoding": entry["encoding"], "shape": list(t.shape)}
        for part, value in entry.items():
            if isinstance(value, torch.Tensor):
                key = str(value.dtype).removeprefix("torch.")
                meta[part] = [key, sizes.get(key, 0), value.numel()]
                blobs.setdefault(key, []).append(value.flatten())
                sizes[key] = sizes.get(key, 0) + value.numel()
        tensors[name] = meta
    return {"format": FORMAT, "tensors": tensors, "blobs": {k: torch.cat(v) for k, v in blobs.items()}}


def entries(exported: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-tensor encodings of an export (the inverse of ``compress``'s packing)."""
    if exported.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} export (format {exported.get('format')!r})")
    out = {}
    for name, meta in exported["tensors"].items():
        entry: dict[str, Any] = {"encoding": meta["encoding"], "shape": meta["shape"]}
        for part in ("data", "values", "mask", "index"):
            if part in meta:
                key, offset, length = meta[part]
                entry[part] = exported["blobs"][key][offset : offset + length]
        if "data" in entry:
            entry["data"] = entry["data"].view(meta["shape"])
        out[name] = entry
    return out


def decompress(exported: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The dense state_dict back, every tensor equal to the one exported."""
    return {name: decode_tensor(entry) for name, entry in entries(exported).items()}


def save(exported: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(exported, path)


def load(path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state_dict of an export file (``model.load_state_dict(load(path))``)."""
    return decompress(torch.load(path, map_location="cpu", weights_only=True))


def _file_bytes(obj: Any) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def size_report(state: dict[str, torch.Tensor], exported: dict[str, Any] | None = None) -> dict[str, Any]:
    """Payload and file bytes of the export against the dense state_dict, and how tensors were encoded."""
    exported = exported if exported is not None else compress(state)
    dense = sum(t.numel() * t.element_size() for t in state.values())
    payload = sum(v.numel() * v.element_size() for v in exported["blobs"].values())
    counts: dict[str, int] = {}
    for entry in exported["tensors"].values():
        counts[entry["encoding"]] = counts.get(entry["encoding"], 0) + 1
    floats = [t for t in state.values() if t.is_floating_point()]
    zeros = sum(int((t == 0).sum()) for t in floats)
    file_dense = _file_bytes({k: v.detach().cpu() for k, v in state.items()})
    file_export = _file_bytes(exported)
    return {
        "dense_bytes": dense,
        "export_bytes": payload,
        "ratio": dense / payload if payload else None,
        "file_bytes_dense": file_dense,
        "file_bytes_export": file_export,
        "file_ratio": file_dense / file_export,
        "float_zero_fraction": zeros / max(sum(t.numel() for t in floats), 1),
        "tensors": len(state),
        "encodings": counts,
    }


def export_model(model: nn.Module | dict[str, torch.Tensor], path: str | Path | None = None) -> dict[str, Any]:
    """Encode a model (or state_dict), check the round trip, write ``path`` if given; returns the size report."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: v.detach().cpu() for k, v in state.items()}
    exported = compress(state)
    restored = decompress(exported)
    for name, t in state.items():
        if not (restored[name].dtype == t.dtype and torch.equal(restored[name], t)):
            raise RuntimeError(f"{name}: the export does not restore the tensor exactly")
    if path is not None:
        save(exported, path)
    return size_report(state, exported)
