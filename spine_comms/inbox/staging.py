"""Durability per batch, not per file: the writes of a batch of messages staged, synced once, placed.

Writing each file as temporary + fsync + rename costs one journal commit per file (five per
message: .eml, .json, item, lane directory, delivery marker). A batch instead writes every
temporary file first, makes them durable together, and only then moves them into place:

    stage(...)            a hidden temporary file beside its final name, written, not synced
    sync()                every file system written to so far: one syncfs each (Linux), which
                          flushes the data and the metadata (names, directories) in one commit
    place(...)            rename (or link, for names that must never be replaced) into place

A file is visible under its final name only after its bytes were synced; a name is known to
be durable only after the next sync(). Readers (the watcher, a rerun) never see a partial
file, and a crash leaves at most hidden temporaries (the watcher skips dotfiles).
"""

from __future__ import annotations

import ctypes
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

REPLACE = "replace"  # os.replace: the newest version wins (normalized JSON, markers)
SAME = "same"  # content-addressed: an existing file has these very bytes; replacing it changes nothing
NEW = "new"  # a hard link: an existing file is never replaced (items), and `existed` says so


@dataclass
class Staged:
    temp: Path
    final: Path
    how: str
    placed: bool = False
    existed: bool = False  # NEW only: the final name was already taken (an earlier run's item)


def _syncfs_function():
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):  # not Linux: fsync file by file instead
        return None
    function.argtypes = [ctypes.c_int]
    return function


_SYNCFS = _syncfs_function()


class BatchWriter:
    """The staged files of a batch. Not thread-safe. Reused batch after batch (`reset`), so the
    directories known to exist and the file systems' descriptors are found once per run, not
    once per batch; closed at the end."""

    def __init__(self) -> None:
        self.staged: list[Staged] = []
        self._unsynced: list[Staged] = []
        # One descriptor per file system, opened before the first write to it: syncfs reports a
        # writeback error that happened after the descriptor was opened, so it must come first.
        self._filesystems: dict[int, int] = {}
        self._directories: set[Path] = set()
        self._tag = f"{os.getpid()}-{secrets.token_hex(3)}-"  # temporaries of two writers never collide
        self._count = 0

    def stage(self, final: Path, data: str | bytes, mode: int = 0o600, how: str = REPLACE) -> Staged:
        directory = final.parent
        if directory not in self._directories:
            directory.mkdir(parents=True, exist_ok=True)
            self._watch(directory)
            self._directories.add(directory)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        try:
            fd, temp = self._create(directory, final.name)
        except FileNotFoundError:  # removed since it was made (by hand, between batches): make it again
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp = self._create(directory, final.name)
        try:
            if mode != 0o600:  # mkstemp made it 0600 already
                os.fchmod(fd, mode)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(temp)  # a half-written temporary (disk full) goes at once
            raise
        os.close(fd)
        staged = Staged(temp, final, how)
        self.staged.append(staged)
        self._unsynced.append(staged)
        return staged

    def _create(self, directory: Path, name: str) -> tuple[int, Path]:
        """A new hidden temporary, 0600, never an existing file: what mkstemp does, without its
        Python-level name generation (a writer stages three files per message)."""
        while True:
            self._count += 1
            temp = directory / f".{name}.{self._tag}{self._count}.tmp"
            try:
                return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), temp
            except FileExistsError:  # left by a killed run that had the same pid: the next number
                continue

    def _watch(self, directory: Path) -> None:
        device = os.stat(directory).st_dev
        if device not in self._filesystems:
            self._filesystems[device] = os.open(directory, os.O_RDONLY)

    def sync(self) -> None:
        """Everything written and placed so far is on stable storage."""
        if _SYNCFS is None:
            for staged in self._unsynced:
                _fsync_path(staged.final if staged.placed else staged.temp)
            for directory in self._directories:
                _fsync_path(directory)
        else:
            for fd in self._filesystems.values():
                if _SYNCFS(fd) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"syncfs: {os.strerror(error)}")
        self._unsynced = []

    def place(self, staged: Staged) -> Staged:
        """Move one synced file to its final name. Durable after the next sync()."""
        if staged.how == NEW:
            try:
                os.link(staged.temp, staged.final)  # unlike rename, a link never replaces what is there
            except FileExistsError:
                staged.existed = True
            os.unlink(staged.temp)
        else:
            os.replace(staged.temp, staged.final)
        staged.placed = True
        if _SYNCFS is None:
            self._unsynced.append(staged)
        return staged

    def discard(self) -> None:
        """Remove the temporaries never placed (the batch stopped)."""
        for staged in self.staged:
            if not staged.placed:
                staged.temp.unlink(missing_ok=True)
        self.staged = [s for s in self.staged if s.placed]

    def reset(self) -> None:
        """Ready for the next batch: what was not placed is removed; directories and descriptors stay."""
        self.discard()
        self.staged, self._unsynced = [], []

    def close(self) -> None:
        self.discard()
        for fd in self._filesystems.values():
            os.close(fd)
        self._filesystems = {}


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
