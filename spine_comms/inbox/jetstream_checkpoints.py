"""Checkpoints and a per-mailbox lease in JetStream KV buckets: the ground for pollers on several hosts.

- `KvCheckpointStore` has the interface of checkpoint.CheckpointStore (load, save). Each save is a
  compare-and-set on the revision its load saw. If another poller committed the folder in between,
  the save raises CheckpointConflict and nothing is written. So two pollers never both commit the
  same range: the loser's items are already in the stream, and its next poll starts from the
  winner's checkpoint.
- `MailboxLease` is one key per mailbox in a bucket whose max age is the lease time. One poller
  creates the key and renews it by compare-and-set. The others find it held (LeaseHeld, naming its
  holder) and stand by. A holder that dies stops renewing; its record ages out after the lease time,
  and the next `acquire` takes over. A holder that renews after someone else took over learns it
  (LeaseLost) and must stop.

Not yet wired into the poll and the watch (docs/scale-out.md, "Not yet built"): this module and its
lab tests are the building blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from datetime import UTC, datetime

from spine_comms.inbox.checkpoint import FolderCheckpoint


class CheckpointConflict(Exception):
    """Another poller committed this folder's checkpoint after this one read it."""


class LeaseHeld(Exception):
    def __init__(self, mailbox: str, holder: dict) -> None:
        super().__init__(f"mailbox {mailbox} is polled by {holder.get('holder', '?')} (since {holder.get('at', '?')})")
        self.holder = holder


class LeaseLost(Exception):
    """The lease ran out and another poller took the mailbox: stop polling it."""


def _folder_key(mailbox_id: str, folder: str) -> str:
    # Folder names may hold any character (spaces, '/', '&'): the key is the mailbox and a hash.
    return f"{mailbox_id}.{hashlib.sha256(folder.encode()).hexdigest()[:24]}"


async def _bucket(js, name: str, replicas: int, ttl: float | None):
    from nats.js.api import KeyValueConfig, StorageType
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=name, history=1, replicas=replicas, storage=StorageType.FILE, ttl=ttl)
        )


class KvCheckpointStore:
    """The checkpoints of one mailbox in a KV bucket, saved by compare-and-set."""

    def __init__(self, connection, bucket: str, mailbox_id: str) -> None:
        self.connection = connection  # spine_comms.mailroom.jetstream.Connection
        self.mailbox_id = mailbox_id
        self._kv = connection.call(_bucket(connection.js, bucket, connection.settings.replicas, None))
        self._revisions: dict[str, int] = {}  # folder -> the revision its last load or save saw

    def load(self, folder: str) -> FolderCheckpoint | None:
        from nats.js.errors import KeyNotFoundError

        async def get():
            try:
                return await self._kv.get(_folder_key(self.mailbox_id, folder))
            except KeyNotFoundError:  # also a deleted key
                return None

        entry = self.connection.call(get())
        if entry is None:
            self._revisions.pop(folder, None)
            return None
        self._revisions[folder] = entry.revision
        try:
            data = json.loads(entry.value)
            return FolderCheckpoint(
                folder=str(data["folder"]), uidvalidity=int(data["uidvalidity"]), last_uid=int(data["last_uid"]),
                highestmodseq=int(data["highestmodseq"]) if data.get("highestmodseq") is not None else None,
                last_poll_at=data.get("last_poll_at"), rebaselined_at=data.get("rebaselined_at"),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {self.mailbox_id}/{folder} in the KV bucket is unreadable: {exc}") from None

    def save(self, checkpoint: FolderCheckpoint, *, durable: bool = True) -> None:
        """Compare-and-set on the revision last seen; a save without a load first creates (fails if present).
        `durable` is accepted for CheckpointStore's interface: every KV write is acknowledged once stored."""
        from nats.js.errors import KeyWrongLastSequenceError

        key = _folder_key(self.mailbox_id, checkpoint.folder)
        value = json.dumps(checkpoint.to_dict(), sort_keys=True).encode()
        seen = self._revisions.get(checkpoint.folder)

        async def put():
            try:
                if seen is None:
                    return await self._kv.create(key, value)
                return await self._kv.update(key, value, last=seen)
            except KeyWrongLastSequenceError:
                return None

        revision = self.connection.call(put())
        if revision is None:
            self._revisions.pop(checkpoint.folder, None)  # the next load reads the winner's
            raise CheckpointConflict(
                f"{self.mailbox_id}/{checkpoint.folder}: another poller committed this folder after "
                f"revision {seen or 0}; nothing written"
            )
        self._revisions[checkpoint.folder] = revision


class MailboxLease:
    """Who polls a mailbox: one key in a bucket whose max age is `seconds` (renew well within it)."""

    def __init__(self, connection, bucket: str, mailbox_id: str, seconds: float, holder: str | None = None) -> None:
        self.connection = connection
        self.mailbox_id = mailbox_id
        self.seconds = seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._kv = connection.call(_bucket(connection.js, bucket, connection.settings.replicas, seconds))
        self.revision: int | None = None

    def _record(self) -> bytes:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return json.dumps({"holder": self.holder, "mailbox": self.mailbox_id, "at": stamp}).encode()

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the poller that has it."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        async def take():
            try:
                return await self._kv.create(self.mailbox_id, self._record()), None
            except KeyWrongLastSequenceError:
                try:
                    return None, json.loads((await self._kv.get(self.mailbox_id)).value)
                except KeyNotFoundError:  # it aged out between the two calls: try once more
                    return await self._kv.create(self.mailbox_id, self._record()), None

        revision, holder = self.connection.call(take())
        if revision is None:
            raise LeaseHeld(self.mailbox_id, holder or {})
        self.revision = revision

    def renew(self) -> None:
        """Extend the lease (its record rewritten: the max age counts from now), or raise LeaseLost."""
        from nats.js.errors import KeyWrongLastSequenceError

        async def extend():
            try:
                return await self._kv.update(self.mailbox_id, self._record(), last=self.revision)
            except KeyWrongLastSequenceError:
                return None

        revision = self.connection.call(extend()) if self.revision is not None else None
        if revision is None:
            self.revision = None
            raise LeaseLost(f"the lease on mailbox {self.mailbox_id} was lost; another poller may have it")
        self.revision = revision

    def release(self) -> None:
        """Give the lease up at once (a clean stop), only if it is still ours."""
        from nats.js.errors import KeyWrongLastSequenceError

        async def drop():
            with contextlib.suppress(KeyWrongLastSequenceError):  # no longer ours: nothing to give up
                await self._kv.delete(self.mailbox_id, last=self.revision)

        if self.revision is not None:
            self.connection.call(drop())
            self.revision = None
