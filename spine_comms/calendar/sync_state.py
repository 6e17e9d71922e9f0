"""The calendar sync's memory: which event went where, with which ETag and hash, and the lock.

The state file is JSON with the spine's fields per event (calendar.sync.contract.yaml
state.fields_required) plus the collection's sync token, written atomically. The lock
is an flock on its own file, taken without waiting: a second run finds it held and
stops with the spine's error code `sync_lock_held`.
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


def load_state(path: Path) -> SyncState:
    """The state at `path`; an empty one when the file does not exist. A damaged file is an
    input error (exit 2): guessing would re-create or orphan events."""
    if not path.exists():
        return SyncState()

    def bad(message: str) -> ContractError:
        return ContractError(
            f"sync state {path}: {message}",
            problems=[Problem(str(path), None, "", message)],
            hint="restore it from a backup, or move it aside to start over (events it knew are then left alone)",
        )

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


def save_state(path: Path, state: SyncState) -> None:
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
