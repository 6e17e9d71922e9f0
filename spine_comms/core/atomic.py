"""Atomic file writes: a temporary file in the same directory, fsync, rename.

A temporary is named `.<name>.<pid>-<random>.tmp`: hidden (readers skip dotfiles), and carrying
its writer's pid, so `sweep_temporaries` can remove what a killed writer left (kill -9 runs no
cleanup) without touching a temporary another process is writing now.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.(\d+)-[^./]*\.tmp\Z", re.S)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644, *, overwrite: bool = True) -> None:
    """Readers see the old file or the whole new one, never a part. With overwrite=False an
    existing file raises FileExistsError and stays as it was (a hard link cannot replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write or fsync names no file; a full disk must say which one
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writer_pid(name: str) -> int | None:
    """The pid in a temporary's name (`.<name>.<pid>-<...>.tmp`), None for any other name."""
    found = _TEMPORARY.match(name)
    return int(found.group(1)) if found else None


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def sweep_temporaries(directory: Path) -> int:
    """Remove the temporaries in `directory` whose writer is no longer running; how many went. A missing
    directory, or a file that another process removed first, is no error."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            pid = writer_pid(entry.name) if entry.name.startswith(".") else None
            if pid is not None and pid != os.getpid() and not running(pid):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
