"""Rebuild the CIFAR-10 subset of the committed results: ``python -m experiments.make_subset SOURCE OUT``.

SOURCE is the official ``cifar-10-python.tar.gz`` (or the folder it extracts to); OUT is the data
root to write (``OUT/cifar-10-batches-py``). Every file is checked against the MD5 sums in
``training/subset.py`` before anything is written; then point ``DATA_ROOT`` at OUT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.arguments import one_line_failures
from training.data import DataError
from training.subset import build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.make_subset", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="cifar-10-python.tar.gz, or its extracted cifar-10-batches-py folder")
    p.add_argument("out", type=Path, help="the data root to write")
    args = p.parse_args(argv)
    try:
        sums = build(args.source, args.out)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, digest in sorted(sums.items()):
        print(f"{digest}  {name}")
    print(f"the CIFAR-10 subset (5170 train / 1017 test), every md5 as committed: {args.out / 'cifar-10-batches-py'}")
    return 0


_main = one_line_failures(main)


if __name__ == "__main__":
    sys.exit(_main())
