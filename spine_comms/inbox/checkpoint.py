"""Where a poll left off, per mailbox and folder, and the lock that keeps two pollers apart.

A checkpoint says: in this folder, under this UIDVALIDITY, every UID up to
`last_uid` has been committed (enqueued, parked, dropped or found a duplicate).
It is only ever advanced after the items it covers are durably written, and it
is written atomically, so a crash leaves the old checkpoint or the new one.
Being behind is harmless (the dedup markers catch what is fetched again);
being ahead would lose mail, so nothing here guesses.

Layout, under `<mailroom state>/<contract.state_directory>/`:

    <mailbox>/folders/<safe folder name>-<hash>.json   the checkpoints
    <mailbox>.lock                                     the poll lock (flock)
    <mailbox>.heartbeat.json                           written by the watch loop
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from spine_comms.core.atomic import write_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(name: str) -> str:
    """A file-name part from a mailbox id or folder name: readable, unique (a hash), never a path."""
    readable = _UNSAFE.sub("_", name).strip("._")[:60] or "folder"
    return f"{readable}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


@dataclass
class FolderCheckpoint:
    folder: str
    uidvalidity: int
    last_uid: int
    highestmodseq: int | None = None
    last_poll_at: str | None = None  # the last poll that finished without an error (UTC, Z)
    rebaselined_at: str | None = None  # when a UIDVALIDITY change last reset last_uid

    def to_dict(self) -> dict:
        return asdict(self)


class CheckpointStore:
    """The checkpoints of one mailbox, one small JSON file per folder."""

    def __init__(self, state_dir: Path, mailbox_id: str) -> None:
        self.directory = state_dir / mailbox_id / "folders"

    def path(self, folder: str) -> Path:
        return self.directory / f"{safe_component(folder)}.json"

    def load(self, folder: str) -> FolderCheckpoint | None:
        """The folder's checkpoint; None when there is none yet. A damaged file raises ValueError
        (the caller reports it): silently starting over would re-read the whole folder."""
        path = self.path(folder)
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"checkpoint {path} is unreadable: {exc}") from None
        try:
            return FolderCheckpoint(
                folder=str(data["folder"]),
                uidvalidity=int(data["uidvalidity"]),
                last_uid=int(data["last_uid"]),
                highestmodseq=int(data["highestmodseq"]) if data.get("highestmodseq") is not None else None,
                last_poll_at=data.get("last_poll_at"),
                rebaselined_at=data.get("rebaselined_at"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {path} is not a checkpoint: {exc}") from None

    def keep(self) -> None:
        """Nothing to renew: the poll lock (a flock) is held for the whole poll. The KV store renews its lease here."""

    def save(self, checkpoint: FolderCheckpoint, *, durable: bool = True) -> None:
        """Atomically. `durable=False` skips the fsync: for a poll that only refreshes last_poll_at
        (nothing new), where a crash losing the refresh loses nothing but a timestamp health reads."""
        path = self.path(checkpoint.folder)
        text = json.dumps(checkpoint.to_dict(), indent=2) + "\n"
        if durable:
            write_atomic(path, text)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # One poller per mailbox (the lock says so); named as write_atomic names them, so a sweep finds it.
        temp = path.with_name(f".{path.name}.{os.getpid()}-quick.tmp")
        try:
            temp.write_text(text, "utf-8")
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


class LockHeld(Exception):
    """Another process holds the poll lock of this mailbox."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"another poll holds the lock {path}" + (f" ({holder})" if holder else ""))
        self.path = path
        self.holder = holder


def lock_path(state_dir: Path, mailbox_id: str) -> Path:
    # Mailbox ids are contract-validated ([a-z0-9][a-z0-9_-]*), safe as file names as they are.
    return state_dir / f"{mailbox_id}.lock"


@contextmanager
def poll_lock(state_dir: Path, mailbox_id: str, *, wait: float = 0.0, interval: float = 0.1) -> Iterator[Path]:
    """Hold the mailbox's poll lock (flock, so a killed holder releases it with its last fd).

    Non-blocking, retried until `wait` seconds have passed; then LockHeld. The file
    keeps the holder's pid for the message; it is never deleted (deleting a flock
    file lets two processes hold "the" lock on two different inodes).
    """
    path = lock_path(state_dir, mailbox_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockHeld(path, _holder(fd)) from None
                time.sleep(interval)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk must not stop a poll from holding its lock
            pass
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""


def heartbeat_path(state_dir: Path, mailbox_id: str) -> Path:
    """Where the watch loop writes {at, pid, mailbox}; health reads it."""
    return state_dir / f"{mailbox_id}.heartbeat.json"


def read_heartbeat(state_dir: Path, mailbox_id: str) -> dict | None:
    try:
        data = json.loads(heartbeat_path(state_dir, mailbox_id).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
