"""The calendar sync's memory: which event went where, with which ETag and hash, and the lock.

The state file is JSON with the spine's fields per event (calendar.sync.contract.yaml
state.fields_required) plus the collection's sync token, written atomically. A run records
each write the moment it is done, as one fsynced line appended to a journal beside the state
(`<state>.journal`): rewriting the whole state after every write would cost O(events) per
write, the journal costs one short append. Loading reads the state, then replays the
journal; the end of a run folds the journal into the state and removes it. A line torn by a
kill is ignored (and cut off before the next append), so a killed run loses at most the one
write it had not recorded yet, which the next run recognises by content. The lock is an
flock on its own file, taken without waiting: a second run finds it held and stops with the
spine's error code `sync_lock_held`.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from spine_comms.core.atomic import write_atomic
from spine_comms.core.errors import ContractError, Problem

SCHEMA_VERSION = "1.0"
PROVIDER = "caldav"
LOCK_HELD = "sync_lock_held"
MAX_STATE_BYTES = 64 * 1024 * 1024
JOURNAL_SUFFIX = ".journal"


@dataclass
class Mapping:
    """One event of the source and its resource on the server."""

    canonical_key: str
    layer: str
    event_id: str
    remote_calendar_id: str  # the collection href
    remote_event_id: str  # the resource href
    remote_etag: str | None
    last_desired_hash: str | None
    last_synced_at: str
    tombstone: bool = False
    provider: str = PROVIDER
    uid: str | None = None
    # The ETag last seen on the server when it differed from ours (a conflict left for the
    # operator): a sync-collection delta will not mention the resource again.
    seen_etag: str | None = None
    # The server's version won a conflict (server_wins): never written again.
    unmanaged: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> Mapping:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class SyncState:
    calendar: str | None = None  # the collection href the mappings live in
    account: str | None = None
    sync_token: str | None = None
    events: dict[str, Mapping] = field(default_factory=dict)
    updated_at: str | None = None
    # When the whole calendar was last listed: a delta is trusted only so long (sync_remote).
    full_listing_at: str | None = None

    def live(self, key: str) -> Mapping | None:
        """The mapping of this key, unless it was deleted (tombstone)."""
        found = self.events.get(key)
        return found if found and not found.tombstone else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "provider": PROVIDER,
                "account": self.account,
                "calendar": self.calendar,
                "sync_token": self.sync_token,
                "updated_at": self.updated_at,
                "full_listing_at": self.full_listing_at,
                "events": {k: asdict(v) for k, v in sorted(self.events.items())},
            },
            indent=1,
            sort_keys=False,
        )


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + JOURNAL_SUFFIX)


def load_state(path: Path) -> SyncState:
    """The state at `path` with its journal replayed; an empty one when neither exists. A damaged
    file is an input error (exit 2): guessing would re-create or orphan events."""
    state = _load_file(path) if path.exists() else SyncState()
    journal = journal_path(path)
    if journal.exists():
        _replay(journal, state)
    return state


def _damaged(path: Path, message: str, line: int | None = None) -> ContractError:
    return ContractError(
        f"sync state {path}{f':{line}' if line else ''}: {message}",
        problems=[Problem(str(path), line, "", message)],
        hint="restore it from a backup, or move it aside to start over (events it knew are then left alone)",
    )


def _load_file(path: Path) -> SyncState:
    def bad(message: str) -> ContractError:
        return _damaged(path, message)

    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise bad(f"larger than {MAX_STATE_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise bad(f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("events", {}), dict):
        raise bad("expected an object with an `events` object")
    if str(data.get("schema_version", SCHEMA_VERSION)) != SCHEMA_VERSION:
        raise bad(f"schema_version {data.get('schema_version')!r}, this version reads {SCHEMA_VERSION}")
    events = {}
    for key, entry in data.get("events", {}).items():
        try:
            events[key] = Mapping.from_dict(entry)
        except TypeError as exc:
            raise bad(f"event {key}: {exc}") from None
    return SyncState(data.get("calendar"), data.get("account"), data.get("sync_token"), events, data.get("updated_at"),
                     data.get("full_listing_at"))  # fmt: skip


def _replay(journal: Path, state: SyncState) -> None:
    """Apply each whole journal line in order. Only the last line may be torn (a kill mid-append):
    it is ignored. A bad line before it is damage, not a kill."""
    try:
        if journal.stat().st_size > MAX_STATE_BYTES:
            raise _damaged(journal, f"larger than {MAX_STATE_BYTES} bytes")
        raw = journal.read_bytes()
    except OSError as exc:
        raise _damaged(journal, f"cannot read: {exc.strerror or exc}") from None
    whole = raw.split(b"\n")[:-1]  # what follows the last newline is empty, or a torn append
    for number, line in enumerate(whole, 1):
        try:
            entry = json.loads(line)
            key, mapping = entry["key"], Mapping.from_dict(entry["mapping"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise _damaged(journal, f"unreadable journal line ({exc.__class__.__name__})", number) from None
        state.events[key] = mapping
        state.calendar = entry.get("calendar") or state.calendar
        state.account = entry.get("account") or state.account


class StateJournal:
    """Appends one line per recorded write to `<state>.journal`, each fsynced before the next write."""

    def __init__(self, state_path: Path):
        self.path = journal_path(state_path)
        self._fd: int | None = None

    def append(self, key: str, mapping: Mapping, state: SyncState) -> None:
        line = json.dumps(
            {"key": key, "calendar": state.calendar, "account": state.account, "mapping": asdict(mapping)},
            separators=(",", ":"),
        )
        if self._fd is None:
            self._fd = self._open()
        os.write(self._fd, line.encode() + b"\n")
        os.fsync(self._fd)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        size = os.fstat(fd).st_size
        if size:
            # A line torn by a kill: cut back to the last whole line, so ours does not glue onto it.
            data = os.pread(fd, size, 0)
            if not data.endswith(b"\n"):
                os.ftruncate(fd, data.rfind(b"\n") + 1)
        return fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """After the state file holds every line: the journal is no longer needed."""
        self.close()
        self.path.unlink(missing_ok=True)


def save_state(path: Path, state: SyncState) -> None:
    """The whole state, atomically; the caller removes the journal afterwards (replaying it on
    top of this state again would change nothing)."""
    write_atomic(path, state.to_json() + "\n", 0o600)


class SyncLock:
    """An exclusive, non-blocking flock on `path`; `acquire()` returns False when another run holds it."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for the operator
        self._fd = fd
        return True

    def holder(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except OSError:
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SyncLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
