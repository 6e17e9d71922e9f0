"""Durability per batch, not per file: the writes of a batch of messages staged, synced once, placed.

Writing each file as temporary + fsync + rename costs one journal commit per file (five per
message: .eml, .json, item, lane directory, delivery marker). A batch instead writes every
temporary file first, makes them durable together, and only then moves them into place:

    stage(...)            a hidden temporary file (beside its final name, or in a home: below),
                          written, not synced
    sync()                every file system written to so far: one syncfs each (Linux), which
                          flushes the data and the metadata (names, directories) in one commit
    place(...)            rename into place (one that refuses to replace, for names that must
                          never be replaced: items)

A file is visible under its final name only after its bytes were synced; a name is known to
be durable only after the next sync(). Readers (the watcher, a rerun) never see a partial
file, and a crash leaves at most hidden temporaries (the watcher skips dotfiles).

Making a new file is the costly step on some file systems. On the lab machine's ext4, which has no
journal, the kernel skips every free inode deleted in the last 12 hours whose table block is
cached (ext4's recently_deleted, seen with perf), so creating a file took 0.05 to 0.8 ms of kernel
time after a day of tests, against 0.02 ms for a rename or a link. So a writer given `homes` and
told of a backlog (`expect`) has a thread make empty hidden files there ahead of need (`Ahead`),
while the batch is parsed and rendered; the system call runs without Python's lock, on the other
CPU. A file staged anywhere under a home's parent takes one of them and is later renamed to its
final name, which is the same cheap step as before. When none is ready the writer makes its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spine_comms.core.atomic import running

REPLACE = "replace"  # os.replace: the newest version wins (normalized JSON, markers)
SAME = "same"  # content-addressed: an existing file has these very bytes; replacing it changes nothing
NEW = "new"  # an existing file is never replaced (items), and `existed` says so


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


def _renameat2_function():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2_function()
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _place_new(temp: Path, final: Path) -> bool:
    """Move `temp` to `final` unless `final` exists (then `temp` is removed); False when it existed.
    One rename that refuses to replace (Linux renameat2); a link and an unlink where that is missing."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(temp), _AT_FDCWD, os.fsencode(final), _RENAME_NOREPLACE) == 0:
            return True
        error = ctypes.get_errno()
        if error == errno.EEXIST:
            os.unlink(temp)
            return False
        if error not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: a file system that cannot refuse
            raise OSError(error, os.strerror(error), str(final))
    try:
        os.link(temp, final)  # unlike rename, a link never replaces what is there
    except FileExistsError:
        os.unlink(temp)
        return False
    os.unlink(temp)
    return True


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
AHEAD_PREFIX = ".ahead-"
AHEAD_FROM = 30  # messages: fewer (a watch cycle, a small poll) are not worth a thread


class Ahead:
    """Empty hidden files (0600) made by a daemon thread in each home directory, up to `depth` ready
    and `budget` in all per home.

    Named `.ahead-<pid>-<tag>-<n>.tmp`: a later writer removes those of a process that is gone
    (`sweep`), so a killed run leaves nothing behind for long."""

    def __init__(self, homes: Iterable[Path], tag: str, budget: int, most: int = 256) -> None:
        # The depth starts small and doubles whenever the files ready fall below half of it.
        self.depth = 8
        self.most = most
        self._tag = tag
        self._ready: dict[Path, deque[Path]] = {}
        self._left: dict[Path, int] = {}  # what each home may still make: no pile to remove at the end
        for home in homes:
            home.mkdir(parents=True, exist_ok=True)
            self._ready[home] = deque()
            self._left[home] = budget
        self._count = 0
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._fill, name="staging-ahead", daemon=True)
        self._wanted.set()
        self._thread.start()

    def take(self, home: Path) -> Path | None:
        ready = self._ready[home]
        try:
            path = ready.popleft()  # deque operations are atomic: no lock with the filling thread
        except IndexError:
            path = None
        if len(ready) < self.depth // 2:
            self.depth = min(self.most, self.depth * 2)
            self._wanted.set()
        return path

    def _fill(self) -> None:
        while self._wanted.wait() and not self._stopping:
            self._wanted.clear()
            for home, ready in self._ready.items():
                while len(ready) < self.depth and self._left[home] > 0 and not self._stopping:
                    self._left[home] -= 1
                    self._count += 1
                    path = home / f"{AHEAD_PREFIX}{self._tag}{self._count}.tmp"
                    try:
                        os.close(os.open(path, _CREATE, 0o600))
                    except OSError:  # disk full, home removed: the writer makes its own files
                        break
                    ready.append(path)

    def close(self) -> None:
        """Stop the thread, then remove what it made and nobody took."""
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        for ready in self._ready.values():
            while ready:
                ready.popleft().unlink(missing_ok=True)


def sweep(home: Path) -> None:
    """Remove the files made ahead by processes that are no longer running (a missing home: nothing)."""
    with contextlib.suppress(OSError), os.scandir(home) as entries:
        for entry in entries:
            if not entry.name.startswith(AHEAD_PREFIX):
                continue
            pid = entry.name[len(AHEAD_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not running(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


JOURNAL_SUFFIX = ".dirs"


def sweep_writers(journal: Path) -> int:
    """Remove what killed writers left: each writer lists, in `<journal>/<pid>-<tag>.dirs`, every
    directory before it makes its first temporary there, and removes the list when it closes. A list
    whose pid is gone names the directories to clean, so the sweep costs what that writer touched,
    not a walk of the whole state. Returns the temporaries removed."""
    removed, lists = 0, []
    with contextlib.suppress(OSError), os.scandir(journal) as entries:
        lists = [e for e in entries if e.name.endswith(JOURNAL_SUFFIX)]
    for entry in lists:
        tag = entry.name.removesuffix(JOURNAL_SUFFIX)
        pid = tag.split("-", 1)[0]
        if not pid.isdigit() or running(int(pid)):
            continue
        try:
            directories = Path(entry.path).read_bytes().split(b"\0")
        except OSError:
            continue
        marker = f".{tag}-"  # in every name the writer made: .<final name>.<pid>-<hex>-<n>.tmp
        for directory in dict.fromkeys(d for d in directories if d):
            with contextlib.suppress(OSError), os.scandir(directory) as found:
                for temp in found:
                    name = os.fsdecode(temp.name)
                    if name.startswith(".") and marker in name and name.endswith(".tmp"):
                        with contextlib.suppress(OSError):
                            os.unlink(temp.path)
                            removed += 1
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    return removed


class BatchWriter:
    """The staged files of a batch. Not thread-safe. Reused batch after batch (`reset`), so the
    directories known to exist and the file systems' descriptors are found once per run, not
    once per batch; closed at the end."""

    def __init__(self, homes: Iterable[Path] = (), journal: Path | None = None) -> None:
        self.staged: list[Staged] = []
        self._unsynced: list[Staged] = []
        # One descriptor per file system, opened before the first write to it: syncfs reports a
        # writeback error that happened after the descriptor was opened, so it must come first.
        self._filesystems: dict[int, int] = {}
        self._directories: set[Path] = set()
        self._tag = f"{os.getpid()}-{secrets.token_hex(3)}-"  # temporaries of two writers never collide
        self._count = 0
        self._homes = list(homes)
        for home in self._homes:
            sweep(home)
        # Where this writer lists its directories (sweep_writers): made at the first stage, so a run that
        # writes nothing makes no file. Without a journal, temporaries beside final names are not swept.
        self._journal = journal
        self._journal_fd: int | None = None
        if journal is not None:
            sweep_writers(journal)
        self._ahead: Ahead | None = None  # made by expect() for a backlog
        self._home_of: dict[Path, Path | None] = {}  # directory -> the home whose files it may take

    def expect(self, messages: int) -> None:
        """`messages` are about to be staged: for a backlog, start making their files ahead (each
        message stages two or three files, in at most two homes)."""
        if self._ahead is None and self._homes and messages >= AHEAD_FROM:
            self._ahead = Ahead(self._homes, self._tag, budget=2 * messages)

    def stage(self, final: Path, data: str | bytes, mode: int = 0o600, how: str = REPLACE) -> Staged:
        directory = final.parent
        if directory not in self._directories:
            directory.mkdir(parents=True, exist_ok=True)
            self._listed(directory)
            self._watch(directory)
            self._directories.add(directory)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        try:
            fd, temp = self._take(directory) or self._create(directory, final.name)
        except FileNotFoundError:  # removed since it was made (by hand, between batches): make it again
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp = self._create(directory, final.name)
        try:
            if mode != 0o600:  # mkstemp made it 0600 already
                os.fchmod(fd, mode)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            os.close(fd)
            os.unlink(temp)  # a half-written temporary (disk full) goes at once
            raise OSError(exc.errno, exc.strerror, str(final)) from exc  # a write names no file: say which
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        staged = Staged(temp, final, how)
        self.staged.append(staged)
        self._unsynced.append(staged)
        return staged

    def _take(self, directory: Path) -> tuple[int, Path] | None:
        """A file made ahead in the home for `directory`, opened for writing; None when there is none."""
        if self._ahead is None:
            return None
        if directory not in self._home_of:
            self._home_of[directory] = self._home_for(directory)
        home = self._home_of[directory]
        temp = self._ahead.take(home) if home is not None else None
        if temp is None:
            return None
        try:
            return os.open(temp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC), temp
        except FileNotFoundError:  # removed by hand since it was made
            return None

    def _home_for(self, directory: Path) -> Path | None:
        """The home with the deepest parent that holds `directory`, on the same file system: a rename
        from there to the final name stays one cheap step."""
        candidates = [home for home in self._homes if directory.is_relative_to(home.parent)]
        if not candidates:
            return None
        home = max(candidates, key=lambda h: len(h.parts))
        return home if os.stat(home).st_dev == os.stat(directory).st_dev else None

    def _create(self, directory: Path, name: str) -> tuple[int, Path]:
        """A new hidden temporary, 0600, never an existing file: what mkstemp does, without its
        Python-level name generation (a writer stages three files per message)."""
        while True:
            self._count += 1
            temp = directory / f".{name}.{self._tag}{self._count}.tmp"
            try:
                return os.open(temp, _CREATE, 0o600), temp
            except FileExistsError:  # left by a killed run that had the same pid: the next number
                continue

    def _listed(self, directory: Path) -> None:
        """`directory` in this writer's journal before its first temporary is made there. A write()
        without fsync: a killed process loses nothing it wrote, and a crash of the machine (which can
        lose the list) loses the temporaries' unsynced names with it."""
        if self._journal is None:
            return
        path = self._journal / f"{self._tag.rstrip('-')}{JOURNAL_SUFFIX}"
        for attempt in (1, 2):  # another writer (a watch thread of another mailbox) may remove the empty directory
            if self._journal_fd is not None:
                break
            self._journal.mkdir(parents=True, exist_ok=True)
            try:
                self._journal_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                if attempt == 2:
                    raise
        os.write(self._journal_fd, os.fsencode(directory) + b"\0")

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
            staged.existed = not _place_new(staged.temp, staged.final)
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
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
        for home in self._homes:  # left empty: gone (another writer still using one: it stays)
            with contextlib.suppress(OSError):
                home.rmdir()
        for fd in self._filesystems.values():
            os.close(fd)
        self._filesystems = {}
        if self._journal_fd is not None:  # everything it listed is placed or removed: the list goes
            os.close(self._journal_fd)
            self._journal_fd = None
            with contextlib.suppress(OSError):
                (self._journal / f"{self._tag.rstrip('-')}{JOURNAL_SUFFIX}").unlink()
            with contextlib.suppress(OSError):  # left empty: gone, like the homes (another writer's list: stays)
                self._journal.rmdir()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
