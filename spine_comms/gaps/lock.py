"""The spine's git lock (ops/lib/git-lock.sh), taken the same way so both tools exclude each other.

`mkdir <repo>/mailroom/state/locks/git.<type>.lock` is the acquisition (atomic on
every file system); inside it go `pid` and `created_at_epoch`. A lock is reclaimed
only when its owner is dead, or when it has no pid and is older than 300 s (an
owner killed between mkdir and writing its pid). The lock lives under the root's
own mailroom/state, not the runtime mailroom: that is where git-lock.sh looks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from types import TracebackType

from spine_comms.core.errors import CouldNotEvaluate

STALE_WITHOUT_PID_SECONDS = 300  # git-lock.sh's GIT_LOCK_TTL
POLL_SECONDS = 0.05


class LockHeld(CouldNotEvaluate):
    reference = "lock-held"


def lock_dir(root: Path, lock_type: str) -> Path:
    return root / "mailroom" / "state" / "locks" / f"git.{lock_type}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class GitLock:
    """Held across read, allocate and write. `wait_seconds` bounds the wait for another holder."""

    def __init__(self, root: Path, lock_type: str, wait_seconds: float, clock=time.time, on_wait=None):
        self.path = lock_dir(root, lock_type)
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.on_wait = on_wait  # told once, with the holder, when the lock is busy
        self.reclaimed: list[str] = []  # what was taken over from a dead owner, for the result

    def __enter__(self) -> GitLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(self.wait_seconds, 0)
        told = False
        while True:
            try:
                self.path.mkdir()
            except FileExistsError:
                if self._reclaim_if_stale():
                    continue
                if not told and self.on_wait is not None and self.wait_seconds > 0:
                    self.on_wait(self._holder())
                    told = True
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"the gaps lock {self.path} is held ({self._holder()})",
                        hint="wait and run again, or raise --wait-seconds; a lock whose owner died is "
                        "taken over by itself",
                    ) from None
                time.sleep(POLL_SECONDS)
                continue
            (self.path / "pid").write_text(f"{os.getpid()}\n")
            (self.path / "created_at_epoch").write_text(f"{int(self.clock())}\n")
            return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _read_pid(self, where: Path) -> int | None:
        try:
            return int((where / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _age(self, where: Path | None = None) -> float:
        where = where or self.path
        try:
            created = float((where / "created_at_epoch").read_text().strip())
        except (OSError, ValueError):
            try:
                created = where.stat().st_mtime
            except OSError:
                return 0.0
        return self.clock() - created

    def _holder(self) -> str:
        pid = self._read_pid(self.path)
        return f"pid {pid}, {int(self._age())} s old" if pid else f"no pid yet, {int(self._age())} s old"

    def _reclaim_if_stale(self) -> bool:
        """Take a dead owner's lock aside by renaming it (atomic), then make sure what moved was
        really that dead lock: a live one taken by mistake in a race is put back."""
        pid = self._read_pid(self.path)
        if pid is not None and _pid_alive(pid):
            return False
        if pid is None and self._age() <= STALE_WITHOUT_PID_SECONDS:
            return False
        aside = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            self.path.rename(aside)
        except OSError:
            return False  # someone else moved or released it: just try again
        if self._read_pid(aside) != pid or (pid is None and self._age(aside) <= STALE_WITHOUT_PID_SECONDS):
            # A fresh lock slipped in between our look and the rename: it is not ours to remove.
            with contextlib.suppress(OSError):
                aside.rename(self.path)
            return False
        shutil.rmtree(aside, ignore_errors=True)
        self.reclaimed.append(f"pid {pid}" if pid else "no pid")
        return True
