"""The outbox store: one durable record per send, under the mailroom state.

    <state>/outbox/sends/<send id>.json   the record (status, attempts, bounces), rewritten atomically
    <state>/outbox/sends/<send id>.eml    the exact bytes submitted, written once before the record
    <state>/outbox/locks/<send id>.lock   flock'd while anyone attempts or changes the send
    <state>/outbox/by-message-id/<h>.json Message-ID -> send id, for DSN correlation
    <state>/outbox/dsn-pending/<h>.json   bounce notes not yet applied (note_bounce writes first)

The send id is a hash of the idempotency key, so the same key always names the same
file: creating it with a hard link (write_atomic overwrite=False) is the "already
sent?" test, atomic across processes. The location is fixed below the mailroom state
so the inbox pipeline, which only knows that directory, finds it for bounces.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from spine_comms.core.atomic import sweep_temporaries, write_atomic

STORE_DIR = "outbox"
# Record states. `attempting` with nobody holding the lock is a process that died mid-attempt.
QUEUED, ATTEMPTING, DEFERRED, DELIVERED = "queued", "attempting", "deferred", "delivered"
FAILED, BOUNCED, EXPIRED, UNKNOWN, ERROR = "failed", "bounced", "expired", "unknown", "error"
PENDING_STATES = (QUEUED, ATTEMPTING, DEFERRED)  # flush may still act on these
FINAL_FAILURES = (FAILED, BOUNCED, EXPIRED)


def send_id_for(idempotency_key: str) -> str:
    return "snd-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:24]


def envelope_id(record: dict) -> str:
    """The send's RFC 3461 envelope id (ENVID), made once and kept in the record: the send id's hex, which
    finds the record, then 32 random hex digits, so a DSN quoting it was written by an MTA that carried
    this send, not by someone who only saw the message."""
    if not record.get("envelope_id"):
        record["envelope_id"] = record["send_id"].removeprefix("snd-") + secrets.token_hex(16)
    return record["envelope_id"]


def send_id_of_envelope_id(quoted: str) -> str | None:
    """The send id an envelope id names (its first 24 hex digits), or None for anything else."""
    head = quoted[:24]
    return f"snd-{head}" if len(quoted) == 56 and all(c in "0123456789abcdef" for c in quoted) else None


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def normalize_message_id(value: str | None) -> str:
    """`<Id@Host>` and `id@host` compare equal (the local part is case-sensitive in theory; not in practice)."""
    return (value or "").strip().strip("<>").strip().lower()


class OutboxStore:
    def __init__(self, state_root: Path) -> None:
        self.root = Path(state_root) / STORE_DIR
        self.sends = self.root / "sends"
        self.locks = self.root / "locks"
        self.index = self.root / "by-message-id"
        self.pending_dsn = self.root / "dsn-pending"

    def record_path(self, send_id: str) -> Path:
        return self.sends / f"{send_id}.json"

    def raw_path(self, send_id: str) -> Path:
        return self.sends / f"{send_id}.eml"

    def load(self, send_id: str) -> dict | None:
        try:
            data = json.loads(self.record_path(send_id).read_text("utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def raw(self, send_id: str) -> bytes:
        return self.raw_path(send_id).read_bytes()

    def create(self, record: dict, raw: bytes) -> bool:
        """Write the message, its Message-ID index entry, then the record (the commit point).
        False, and nothing changed, when a record with this send id already exists."""
        send_id = record["send_id"]
        if self.record_path(send_id).exists():
            return False
        write_atomic(self.raw_path(send_id), raw, 0o600)  # same key, same bytes: rewriting is harmless
        write_atomic(self.index / f"{_hash(normalize_message_id(record['message_id']))}.json",
                     json.dumps({"send_id": send_id, "message_id": record["message_id"]}) + "\n", 0o600)  # fmt: skip
        try:
            write_atomic(self.record_path(send_id), _dump(record), 0o600, overwrite=False)
        except FileExistsError:
            return False
        return True

    def save(self, record: dict) -> None:
        write_atomic(self.record_path(record["send_id"]), _dump(record), 0o600)

    def sweep(self) -> int:
        """Remove the temporaries killed writers left in the store (their pid is in the name)."""
        return sum(sweep_temporaries(d) for d in (self.sends, self.index, self.pending_dsn))

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.sends)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def records(self) -> list[dict]:
        found = [self.load(send_id) for send_id in self.ids()]
        return sorted((r for r in found if r), key=lambda r: (r.get("created_at", ""), r["send_id"]))

    def by_message_id(self, message_id: str | None) -> str | None:
        key = normalize_message_id(message_id)
        if not key:
            return None
        try:
            data = json.loads((self.index / f"{_hash(key)}.json").read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data.get("send_id") if isinstance(data, dict) else None

    @contextlib.contextmanager
    def locked(self, send_id: str, wait: float = 0.0) -> Iterator[bool]:
        """flock the send; yields False when someone else holds it after `wait` seconds. The kernel
        drops the lock when its holder dies, so a killed attempt never leaves the send stuck."""
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{send_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    # Bounce notes: written before they are applied, so a DSN is never lost to a busy lock.
    def put_pending_dsn(self, note: dict) -> Path:
        path = self.pending_dsn / f"{_hash(json.dumps(note, sort_keys=True, default=str))}.json"
        write_atomic(path, _dump(note), 0o600)
        return path

    def pending_dsns(self) -> list[Path]:
        try:
            return sorted(p for p in self.pending_dsn.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []


def _dump(data: dict) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n"
