"""What code a run was trained by: a hash of the source files that determine training.

The ``.py`` files under models/, optim/, pruning/ and training/ are hashed one by one (so that a
refusal can name the files that changed) and together (``code_sha256``). The resolved config is
the run identity's ``config_sha256``; with it, the two say what produced a run's numbers. Files
outside these folders (the command-line entry points, reporting, tests) do not change what a run
computes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRAINING_CODE = ("models", "optim", "pruning", "training")


def source_files(root: Path = ROOT) -> list[Path]:
    """The source files that determine training, sorted by their path relative to ``root``."""
    return sorted((p for folder in TRAINING_CODE for p in (root / folder).rglob("*.py")), key=lambda p: p.as_posix())


def code_identity(root: Path = ROOT) -> dict[str, Any]:
    """``{"code_sha256": <hash of every file's hash>, "code_files": {relative path: sha256}}``."""
    files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in source_files(root)}
    joined = "".join(f"{name}\0{digest}\n" for name, digest in sorted(files.items()))
    return {"code_sha256": hashlib.sha256(joined.encode()).hexdigest(), "code_files": files}


def changed_files(recorded: dict[str, str] | None, current: dict[str, str], limit: int = 4) -> str:
    """The files that differ between two ``code_files`` maps, as a short phrase for one line."""
    if not recorded:
        return "its code identity was not recorded"
    names = sorted(
        [f"{n} changed" for n in current if n in recorded and recorded[n] != current[n]]
        + [f"{n} added" for n in current if n not in recorded]
        + [f"{n} removed" for n in recorded if n not in current]
    )
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
