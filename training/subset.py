"""The CIFAR-10 subset the committed ``subset`` results were trained on, rebuilt from the official data.

The subset holds the FIRST rows of each official python-format batch, in the official order: 1102
of ``data_batch_1``, 1017 of each of ``data_batch_2`` .. ``data_batch_5`` and of ``test_batch``
(5170 training and 1017 test images). Each file is a dict {batch_label, labels, data} pickled with
protocol 4 (numpy 2, as pinned), so that the bytes, and therefore the MD5 sums below, are the same
wherever it is rebuilt; ``batches.meta`` is the official one, pickled likewise.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from training.data import CIFAR, DataError, _BatchUnpickler, batch_limit
from training.files import FileRefused, read_bounded

ROWS = {
    "data_batch_1": 1102,
    "data_batch_2": 1017,
    "data_batch_3": 1017,
    "data_batch_4": 1017,
    "data_batch_5": 1017,
    "test_batch": 1017,
}
MD5 = {
    "batches.meta": "d511c352badc29e9946038db3b31b4db",
    "data_batch_1": "aa1f8ad40b721ceb3303567b15c4515e",
    "data_batch_2": "5e996da422a68ab3266fb57f27b7e4b6",
    "data_batch_3": "e150ca0a595e3469da0ca75e754a93f4",
    "data_batch_4": "de46ec90739da5078d4133a454aeadca",
    "data_batch_5": "34c59329583c72da8fe45facc1cad048",
    "test_batch": "2358dc1da360c57b488baae6a38846db",
}
OFFICIAL_ROWS = 10_000  # of every official batch
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz, as torchvision checks it
ARCHIVE_BYTES = 170_498_071  # its size: nothing larger is read
FOLDER = CIFAR["cifar10"].folder


def _official_files(source: Path) -> dict[str, bytes]:
    """The official batch files, from the archive (md5-checked) or from an extracted folder."""
    names = [*ROWS, "batches.meta"]
    if source.is_file():
        raw = _read(source, ARCHIVE_BYTES)
        if hashlib.md5(raw).hexdigest() != ARCHIVE_MD5:
            raise DataError(f"{source}: not the official cifar-10-python.tar.gz (md5 differs)")
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            return {name: archive.extractfile(f"{FOLDER}/{name}").read() for name in names}
    folder = source / FOLDER if (source / FOLDER).is_dir() else source
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: no {missing[0]}; give the official archive or its extracted folder")
    return {name: _read(folder / name, batch_limit(OFFICIAL_ROWS)) for name in names}


def _read(path: Path, limit: int) -> bytes:
    try:
        return read_bounded(path, limit)
    except FileRefused as exc:
        raise DataError(f"{exc}: not the official CIFAR-10 data") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def _load(raw: bytes) -> Any:
    return _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()


def subset_files(source: Path, rows: dict[str, int] = ROWS) -> dict[str, bytes]:
    """The subset's files (name -> bytes) from the official data at ``source``."""
    official = _official_files(source)
    files = {"batches.meta": pickle.dumps(_load(official["batches.meta"]), protocol=4)}
    for name, count in rows.items():
        entry = _load(official[name])
        data, labels = np.asarray(entry["data"]), list(entry["labels"])
        if len(data) < count:
            raise DataError(f"{name}: {len(data)} rows, fewer than the {count} the subset takes")
        subset = {
            "batch_label": f"{name} (first {count} of {OFFICIAL_ROWS} rows)",
            "labels": [int(label) for label in labels[:count]],
            "data": np.ascontiguousarray(data[:count], dtype=np.uint8),
        }
        files[name] = pickle.dumps(subset, protocol=4)
    return files


def build(source: Path, out: Path, rows: dict[str, int] = ROWS, md5: dict[str, str] = MD5) -> dict[str, str]:
    """Write the subset under ``out/cifar-10-batches-py`` and check every file against ``md5``;
    returns the sums. Nothing is written unless every sum matches."""
    files = subset_files(source, rows)
    sums = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    wrong = [name for name in sorted(files) if sums[name] != md5.get(name)]
    if wrong:
        raise DataError(
            f"{wrong[0]}: md5 {sums[wrong[0]]}, expected {md5.get(wrong[0])}: not the official rows "
            "(or another numpy pickles them differently)"
        )
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return sums
