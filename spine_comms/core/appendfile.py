"""Appending whole lines to a shared log (the ledger, the receipt chain), even on a full disk.

A line goes out in one write(2) on an O_APPEND descriptor, so concurrent writers never interleave
inside a line. A full disk can still cut a write short: the part that got out is truncated away
again (when no other writer appended meanwhile), and a tail left torn by anyone (a crash, another
tool, an earlier full disk) is closed with a newline before the next line, so a torn row stands
alone as a short line instead of gluing onto the next one (measured: a 10-column ledger row).
The torn fragment is kept, not cut: it may be another tool's, and it shows that a write failed.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked_append(path: Path) -> Iterator[int]:
    """An O_APPEND descriptor of `path` (created 0644), held under an exclusive flock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def torn_tail(fd: int) -> bool:
    """True when the file is not empty and its last byte is not a newline."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def append_line(fd: int, path: Path, line: str) -> None:
    """Append `line` (which must end with a newline) in one write; mend a torn tail first."""
    data = (("\n" if torn_tail(fd) else "") + line).encode("utf-8")
    before = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
    except OSError as exc:
        raise OSError(exc.errno, f"{os.strerror(exc.errno or 0)}: could not append to", str(path)) from None
    if written < len(data):
        # A short write means the disk filled up in the middle: take the fragment back out.
        if os.fstat(fd).st_size == before + written:
            os.ftruncate(fd, before)
        raise OSError(errno.ENOSPC, "No space left on device: could not append a whole line to", str(path))
    os.fsync(fd)
