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

The poll uses them when the contract says `mailroom.jetstream.checkpoints: kv` (inbox/jetstream_target.py):
the lease is taken or renewed at every checkpoint load and save, so at every folder and batch, and
within a batch (`keep`, at each message and each publish) once a third of it has passed: a batch can
take longer than the lease (a slow link, a big folder), and a lease that lapses mid-batch lets
another poller take the mailbox while this one still publishes. The watch (inbox/watch_loop.py)
also renews it while it idles, and a stand-by watch tries to take it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time
from datetime import UTC, datetime

from spine_comms.inbox.checkpoint import FolderCheckpoint, LockHeld

RENEW_FRACTION = 3  # the holder renews once lease_seconds / 3 has passed: two renewals may fail before it lapses


class CheckpointConflict(OSError):
    """Another poller committed this folder's checkpoint after this one read it. An OSError, as a
    checkpoint file that cannot be written is: the pipeline stops there with its checkpoint behind."""


class LeaseHeld(LockHeld):
    """Another host polls this mailbox: to the pipeline, the same as another local poll holding the lock."""

    def __init__(self, mailbox: str, holder: dict) -> None:
        who = f"{holder.get('holder', '?')} since {holder.get('at', '?')}"
        super().__init__(f"the lease of mailbox {mailbox}", who)
        self.record = holder


class LeaseLost(CheckpointConflict):
    """The lease ran out and another poller took the mailbox: stop polling it."""


def _folder_key(mailbox_id: str, folder: str) -> str:
    # Folder names may hold any character (spaces, '/', '&'): the key is the mailbox and a hash.
    return f"{mailbox_id}.{hashlib.sha256(folder.encode()).hexdigest()[:24]}"


def _bucket(connection, name: str, ttl: float | None):
    from spine_comms.mailroom.jetstream import ready_bucket

    return connection.call(ready_bucket(connection.js, name, connection.settings.replicas, ttl, connection.timeout))


class KvCheckpointStore:
    """The checkpoints of one mailbox in a KV bucket, saved by compare-and-set."""

    def __init__(self, connection, bucket: str, mailbox_id: str, lease: MailboxLease | None = None) -> None:
        self.connection = connection  # spine_comms.mailroom.jetstream.Connection
        self.mailbox_id = mailbox_id
        self.lease = lease  # held (taken or renewed) at every load and save, so a batch keeps it
        self._kv = _bucket(connection, bucket, None)
        self._revisions: dict[str, int] = {}  # folder -> the revision its last load or save saw

    def _hold(self) -> None:
        if self.lease is None:
            return
        if self.lease.revision is None:
            self.lease.acquire()  # LeaseHeld: the pipeline reports the mailbox locked, does nothing
        else:
            self.lease.renew()  # LeaseLost: the pipeline stops with its checkpoint behind

    def keep(self) -> None:
        """Renew the lease if a third of it has passed (LeaseLost if another poller has it now)."""
        if self.lease is not None and self.lease.revision is not None:
            self.lease.keep()

    def load(self, folder: str) -> FolderCheckpoint | None:
        from nats.js.errors import KeyNotFoundError

        self._hold()

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

        self._hold()
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
        self.holder = holder or socket.gethostname()
        self._kv = _bucket(connection, bucket, seconds)
        self.revision: int | None = None
        self.renewed_at = 0.0  # time.monotonic() of the last acquire or renew: the watch renews from it

    def _record(self) -> bytes:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return json.dumps({"holder": self.holder, "mailbox": self.mailbox_id, "at": stamp}).encode()

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the poller that has it. A lease this holder left
        (its last poll on this host ended) is taken back at once, by compare-and-set."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        async def take():
            try:
                return await self._kv.create(self.mailbox_id, self._record()), None
            except KeyWrongLastSequenceError:
                try:
                    entry = await self._kv.get(self.mailbox_id)
                except KeyNotFoundError:  # it aged out between the two calls: try once more
                    return await self._kv.create(self.mailbox_id, self._record()), None
                record = json.loads(entry.value)
                if record.get("holder") != self.holder:
                    return None, record
                try:
                    return await self._kv.update(self.mailbox_id, self._record(), last=entry.revision), None
                except KeyWrongLastSequenceError:  # someone else took it just now
                    return None, record

        revision, holder = self.connection.call(take())
        if revision is None:
            raise LeaseHeld(self.mailbox_id, holder or {})
        self.revision = revision
        self.renewed_at = time.monotonic()

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
        self.renewed_at = time.monotonic()

    def keep(self) -> None:
        """Renew only when due: a check of the clock per call, a round trip to the cluster every third of the lease."""
        if time.monotonic() - self.renewed_at >= self.seconds / RENEW_FRACTION:
            self.renew()

    def release(self) -> None:
        """Give the lease up at once (a clean stop), only if it is still ours."""
        from nats.js.errors import KeyWrongLastSequenceError

        async def drop():
            with contextlib.suppress(KeyWrongLastSequenceError):  # no longer ours: nothing to give up
                await self._kv.delete(self.mailbox_id, last=self.revision)

        if self.revision is not None:
            self.connection.call(drop())
            self.revision = None
