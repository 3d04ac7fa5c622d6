"""Compressed export of a run's model: ``python -m experiments.export RUN_DIR|CHECKPOINT [-o OUT] [--json PATH]``.

Reads the model of a run's ``checkpoint.pt`` (or of a checkpoint file), encodes every tensor in
its smallest exact encoding (``training.export``), checks that decoding restores it, prints the
sizes against the dense state_dict and writes OUT if asked; ``training.export.load(OUT)`` gives the
dense state_dict back.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from experiments.arguments import one_line_failures
from training.export import export_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.export", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="a run folder (holding checkpoint.pt) or a checkpoint file")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the compressed export here")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the size report as JSON")
    args = p.parse_args(argv)
    path = args.source / "checkpoint.pt" if args.source.is_dir() else args.source
    if not path.is_file():
        print(f"error: {path}: no such checkpoint", file=sys.stderr)
        return 1
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a checkpoint: garbage unpickles in many ways
        print(f"error: {path}: not a readable checkpoint ({type(exc).__name__})", file=sys.stderr)
        return 1
    state = checkpoint["model"] if isinstance(checkpoint, dict) and "model" in checkpoint else checkpoint
    report = export_model(state, args.output)
    print(
        f"{path}: {report['tensors']} tensors, {report['float_zero_fraction']:.4f} of float entries zero; "
        f"encodings {report['encodings']}"
    )
    print(
        f"payload {report['dense_bytes']:,} -> {report['export_bytes']:,} bytes ({report['ratio']:.2f}x smaller); "
        f"file {report['file_bytes_dense']:,} -> {report['file_bytes_export']:,} bytes "
        f"({report['file_ratio']:.2f}x smaller)" + (f"; written to {args.output}" if args.output else "")
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"source": str(path), **report}, indent=2) + "\n")
    return 0


_main = one_line_failures(main)


if __name__ == "__main__":
    sys.exit(_main())
