"""Checkpoints by compare-and-set and a per-mailbox lease in JetStream KV, on the lab's cluster: two
pollers (two connections, as two hosts would have) never both commit, and a dead holder's lease passes on."""

from __future__ import annotations

import time
import uuid

import pytest

from spine_comms.inbox.checkpoint import FolderCheckpoint
from spine_comms.inbox.jetstream_checkpoints import (
    CheckpointConflict,
    KvCheckpointStore,
    LeaseHeld,
    LeaseLost,
    MailboxLease,
)
from tests.integration.nats_lab import connect, settings

pytestmark = pytest.mark.lab


def test_two_pollers_never_both_commit_the_same_range(lab) -> None:
    js, bucket = settings(lab), f"c{uuid.uuid4().hex[:10]}"
    with connect(lab, js) as host_a, connect(lab, js) as host_b:
        a, b = KvCheckpointStore(host_a, bucket, "ops"), KvCheckpointStore(host_b, bucket, "ops")
        folder = "Projects/Q&A 2026"  # any folder name: the key is a hash
        assert a.load(folder) is None and b.load(folder) is None
        a.save(FolderCheckpoint(folder, 7, 40))
        with pytest.raises(CheckpointConflict):  # b read "nothing" and would commit 1..40 again
            b.save(FolderCheckpoint(folder, 7, 40))
        assert b.load(folder).last_uid == 40  # b starts from a's checkpoint
        b.save(FolderCheckpoint(folder, 7, 55))
        with pytest.raises(CheckpointConflict):  # a's view (40) is stale now
            a.save(FolderCheckpoint(folder, 7, 60))
        assert a.load(folder) == FolderCheckpoint(folder, 7, 55)
        # Many saves in a row by the one that read last are fine, and other mailboxes are untouched.
        for uid in (56, 57, 58):
            a.save(FolderCheckpoint(folder, 7, uid))
        assert KvCheckpointStore(host_b, bucket, "alerts").load(folder) is None
        assert KvCheckpointStore(host_b, bucket, "ops").load(folder).last_uid == 58


def test_a_lease_is_held_by_one_and_passes_on_when_its_holder_dies(lab) -> None:
    js, bucket, seconds = settings(lab), f"l{uuid.uuid4().hex[:10]}", 1.5
    with connect(lab, js) as host_a, connect(lab, js) as host_b:
        a = MailboxLease(host_a, bucket, "ops", seconds, holder="host-a:1")
        b = MailboxLease(host_b, bucket, "ops", seconds, holder="host-b:2")
        a.acquire()
        with pytest.raises(LeaseHeld, match="host-a:1"):
            b.acquire()
        MailboxLease(host_b, bucket, "alerts", seconds, holder="host-b:2").acquire()  # one lease per mailbox
        for _ in range(3):  # a renews within the lease time: b keeps standing by
            time.sleep(seconds / 3)
            a.renew()
            with pytest.raises(LeaseHeld):
                b.acquire()
        time.sleep(seconds + 1.0)  # a dies (stops renewing); its record ages out
        deadline = time.monotonic() + 10
        while True:
            try:
                b.acquire()
                break
            except LeaseHeld:
                assert time.monotonic() < deadline, "the dead holder's lease never lapsed"
                time.sleep(0.2)
        with pytest.raises(LeaseLost):  # a comes back: it must learn it lost the mailbox
            a.renew()
        b.release()
        a.acquire()  # a clean release hands over at once
