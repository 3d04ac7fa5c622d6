"""Whether torchvision loads beside the installed torch, and if not, which build to install.

torchvision is needed only to download CIFAR and to read ImageNet; a wheel built for another
torch (a CUDA torchvision beside a CPU torch fails with ``operator torchvision::nms does not
exist``) breaks those two paths alone. ``python -m training.torchvision_check`` prints nothing
when it loads, else the one line saying which build to install (``scripts/env.sh`` runs it once
per set-up); the data paths raise the same line.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from types import ModuleType


class TorchvisionError(RuntimeError):
    """torchvision cannot be used here; the message is one line saying what to install."""


def matching_version(torch_version: str) -> str:
    """The torchvision release made for a torch release: torch 2.m.p pairs with torchvision 0.(m+15).p."""
    major, minor, patch = (
        int("".join(c for c in part if c.isdigit()) or 0) for part in torch_version.split("+")[0].split(".")[:3]
    )
    return f"0.{minor + 15}.{patch}" if major == 2 else "(the release matching torch " + torch_version + ")"


def install_line(torch_version: str, cuda: str | None) -> str:
    """The pip command installing the torchvision build that matches this torch build."""
    index = "cpu" if cuda is None else "cu" + cuda.replace(".", "")
    return f"pip install torchvision=={matching_version(torch_version)} --index-url https://download.pytorch.org/whl/{index}"


def import_torchvision() -> ModuleType:
    """torchvision, or a TorchvisionError whose message is one line saying which build to install."""
    import torch

    build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    try:
        return importlib.import_module("torchvision")
    except Exception as exc:  # ImportError, or RuntimeError from a wheel built for another torch
        try:
            installed = f"torchvision {importlib.metadata.version('torchvision')} does not load"
        except importlib.metadata.PackageNotFoundError:
            installed = "torchvision is not installed"
        reason = (str(exc).splitlines() or [""])[0]
        raise TorchvisionError(
            f"{installed} beside torch {torch.__version__} ({build}; {type(exc).__name__}: {reason}); "
            f"install the matching build: {install_line(torch.__version__, torch.version.cuda)}"
        ) from None


def main() -> int:
    try:
        import_torchvision()
    except TorchvisionError as exc:
        print(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
