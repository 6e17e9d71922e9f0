"""The inbox pipeline's JetStream target (mailroom.via: jetstream): a queued item is published
exactly once (spine_comms/mailroom/jetstream.py), at the batch's commit, after its stored message
is synced and before the delivery marker and the checkpoint.

Parked items are files under the state directory (`<state>/<mailbox>/parked/`), as with the
bridge: they are for a person on the polling host, not for agents.
"""

from __future__ import annotations

from pathlib import Path

from spine_comms.core.atomic import write_atomic
from spine_comms.inbox.delivery import PendingItem, Placed
from spine_comms.inbox.staging import NEW, BatchWriter


class JetStreamTarget:
    via = "jetstream"
    staging_homes: tuple[Path, ...] = ()  # parked items go under the state directory, a home of its own

    def __init__(self, connection, source: str, parked_dir: Path, checkpoint_store=None) -> None:
        self.connection = connection  # spine_comms.mailroom.jetstream.Connection
        self.source = source  # the mailbox id: the subject's middle token
        self.parked_dir = parked_dir
        # checkpoints: kv: the pipeline keeps its checkpoints here (compare-and-set, with the lease)
        self.checkpoint_store = checkpoint_store

    def put(self, text: str, *, slug: str, rid: str, session_id: str, lane: str) -> Placed:
        from spine_comms.mailroom.filesystem import clean_slug

        if lane != "queued":
            path = self._parked(slug, rid, session_id)
            if path.exists():
                return Placed(str(path), True)
            write_atomic(path, text, 0o600)
            return Placed(str(path), False)
        if self.checkpoint_store is not None:
            self.checkpoint_store.keep()  # LeaseLost (an OSError): the commit stops here, its checkpoint behind
        published = self.connection.publish_item(text, source=self.source, slug=clean_slug(slug), run_id=rid,
                                                 session_id=session_id)  # fmt: skip
        return Placed(f"{self.connection.settings.stream}:{published.seq}:{published.subject}", published.existed)

    def stage(self, batch: BatchWriter, text: str, *, slug: str, rid: str, session_id: str, lane: str) -> PendingItem:
        if lane != "queued":
            path = self._parked(slug, rid, session_id)
            if path.exists():
                return PendingItem(existing=Placed(str(path), True))
            return PendingItem(staged=batch.stage(path, text, 0o600, NEW))
        return PendingItem(send=lambda: self.put(text, slug=slug, rid=rid, session_id=session_id, lane=lane))

    def _parked(self, slug: str, rid: str, session_id: str) -> Path:
        from spine_comms.mailroom.filesystem import clean_slug

        return self.parked_dir / f"{session_id}__{clean_slug(slug)}__{rid}.md"

    def writable(self) -> tuple[bool, str]:
        return True, f"via jetstream ({', '.join(self.connection.settings.servers)}; not checked from here)"

    def close(self) -> None:
        self.connection.close()


def make_jetstream_target(ctx, settings, mailbox_id: str, state_dir: Path) -> JetStreamTarget:
    """Connected, with the stream and the dedup bucket ensured: a poll that cannot reach the cluster
    stops here (exit 3), before any message is fetched."""
    from spine_comms.mailroom.jetstream import connect

    connection = connect(settings, ctx.secrets.resolve)
    try:
        connection.ensure()
        store = None
        if settings.checkpoints == "kv":
            from spine_comms.inbox.jetstream_checkpoints import KvCheckpointStore, MailboxLease

            lease = MailboxLease(connection, settings.lease_bucket, mailbox_id, settings.lease_seconds,
                                 holder=settings.poller_id)  # fmt: skip
            store = KvCheckpointStore(connection, settings.checkpoint_bucket, mailbox_id, lease=lease)
    except BaseException:
        connection.close()
        raise
    return JetStreamTarget(connection, mailbox_id, state_dir / mailbox_id / "parked", store)


def kv_checkpoint_reader(ctx, settings, mailbox_id: str):
    """The mailbox's checkpoints in the KV bucket, for reading only (inbox.health): no lease is taken, so
    looking never stands a poller by. The connection ends with the process."""
    from spine_comms.inbox.jetstream_checkpoints import KvCheckpointStore
    from spine_comms.mailroom.jetstream import connect

    return KvCheckpointStore(connect(settings, ctx.secrets.resolve), settings.checkpoint_bucket, mailbox_id)
