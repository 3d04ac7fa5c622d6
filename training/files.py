"""Reading a file a user can point anywhere (a config, a data batch): a regular file only, and never
more than a bound, so that a link to /dev/zero, a pipe or a huge file ends in one clear error
instead of a hang or an exhausted memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileRefused(ValueError):
    """The file is not a regular file, or larger than its bound; the message names it."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a pipe"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path`` (links followed), if it is a regular file of at most ``limit`` bytes.

    Raises FileNotFoundError when it is missing, ``FileRefused`` when it is something else than a
    regular file or grows past ``limit`` (checked on the open file, then by reading at most
    ``limit + 1`` bytes, so that a file that lies about its size cannot pass either)."""
    # O_NONBLOCK: opening a pipe for reading would otherwise wait for a writer.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except ValueError:  # a NUL byte in the name
        raise FileRefused(f"{str(path)!r}: not a valid path (a NUL byte)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path}: {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileRefused(f"{path}: {info.st_size} bytes, more than the {limit} such a file can hold")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileRefused(f"{path}: more than the {limit} bytes such a file can hold")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text_bounded(path: str | Path, limit: int) -> str:
    """``read_bounded`` decoded as UTF-8 (``UnicodeDecodeError`` when it is not text)."""
    return read_bounded(path, limit).decode("utf-8")


def describe_failure(exc: BaseException) -> str:
    """A failure in one line: a file system error names its path (e.g. a results folder that is a
    file or on read-only media, a name too long), any other error its type and first line."""
    if isinstance(exc, FileRefused):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        name = str(exc.filename)
        return f"{name if len(name) <= 200 else name[:200] + '...'}: {exc.strerror or type(exc).__name__}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
