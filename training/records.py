"""What a run leaves on disk, written atomically, and the environment it ran in."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

HISTORY_FIELDS = [
    "epoch",
    "stage",
    "stage_epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "sparsity",
    "seconds",
]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; results are files like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON: a NaN or an infinity is an error (ValueError), never written."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete what an atomic write killed half-way left in ``folder`` (call it holding the folder's lock):
    files only, and a link itself, never what it points to."""
    stale = sorted(p for p in Path(folder).glob(".*.tmp") if p.is_symlink() or p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of a model's state dict (names, dtypes, shapes and every byte of every tensor): equal
    exactly when the parameters and buffers are bit for bit the same."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def history_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else "" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def git_revision(cwd: str | Path | None = None) -> str:
    """HEAD's commit, with '-dirty' when tracked files differ from it; 'unknown' outside git."""
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


CPUINFO = Path("/proc/cpuinfo")
CPU_KEYS = {
    "vendor_id": "vendor",
    "model name": "model_name",
    "cpu family": "family",
    "model": "model",
    "stepping": "stepping",
}


def cpu_info(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's identity as the first processor of ``cpuinfo`` gives it: vendor, model name, family,
    model, stepping and its instruction-set flags (sorted). Bit-identical float results hold only
    on the same CPU type: the flags decide which kernels (AVX2, AVX-512, AMX) the libraries run.
    Where there is no such file, the model name from ``platform`` and no flags."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {"model_name": platform.processor() or platform.machine(), "flags": []}
    info: dict[str, Any] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in CPU_KEYS:
            info[CPU_KEYS[key]] = value
        elif key in ("flags", "Features"):  # x86, ARM
            info["flags"] = sorted(value.split())
    info.setdefault("model_name", platform.processor() or platform.machine())
    info.setdefault("flags", [])
    return info


def device_name(device: torch.device) -> str:
    """The processor a run computes on: the GPU's name, or the CPU model."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_info()["model_name"]


def environment(device: torch.device) -> dict[str, Any]:
    import numpy

    info: dict[str, Any] = {
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "cpu": cpu_info(),  # the CPU type, also beside a GPU: the host side computes too
    }
    info["device_name"] = info["cpu"]["model_name"] if device.type == "cpu" else device_name(device)
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info
