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
from tests.integration.nats_lab import connect, host_roots, make_buckets, settings

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


def test_two_hosts_poll_one_mailbox_one_holds_the_lease_and_the_other_starts_from_its_checkpoint(
    lab, lab_root, tmp_path
) -> None:
    import json
    import subprocess

    from tests.cli_process import SPINE_COMMS, clean_env, run_capability
    from tests.integration.inbox_lab import folder_result, run
    from tests.integration.nats_lab import stream_message_ids
    from tests.mailbox_fill import fill_maildir, folder_uids, make_messages

    folder, n, tag = f"F{uuid.uuid4().hex[:10]}", 60, uuid.uuid4().hex[:6]
    fill_maildir(lab, "sink", folder, make_messages(n, seed=4, tag=f"hosts{tag}", max_bytes=8 * 1024))
    shared = settings(lab, checkpoints="kv", lease_seconds=5, checkpoint_bucket=f"c{tag}", lease_bucket=f"l{tag}")
    roots = host_roots(tmp_path, lab, lab_root, shared, ("host-a", "host-b"), folders=[folder])
    with connect(lab, shared) as connection:  # the stream and buckets made once, as a first deployment would
        make_buckets(connection, shared)
    polls = {
        host: subprocess.Popen([SPINE_COMMS, "communications.inbox.poll", "--root", str(root), "--json", "--enqueue"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        for host, root in roots.items()
    }  # fmt: skip
    outcomes = {}
    for host, child in polls.items():
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, (host, out[-1500:], err[-1500:])
        outcomes[host] = json.loads(out)["data"]["mailboxes"][0]
    locked = [host for host, o in outcomes.items() if o["locked"]]
    assert len(locked) <= 1, outcomes  # never both stood by
    assert sum(o["enqueued"] for o in outcomes.values()) == n  # and never both published a message
    with connect(lab, shared) as connection:
        assert sorted(stream_message_ids(connection)) == sorted(f"<hosts{tag}.{i}@example.org>" for i in range(n))
    for root in roots.values():  # the checkpoints live in the bucket, not in either state directory
        assert not list((root / "mailroom" / "state").rglob("folders/*.json"))

    # The host that polled holds the lease for lease_seconds after its last renewal; then the other
    # takes over and starts from the shared checkpoint: nothing new, nothing published again.
    worked = next(host for host, o in outcomes.items() if o["enqueued"])
    other = "host-b" if worked == "host-a" else "host-a"
    code, env, _ = run(roots[other], "--enqueue")
    assert code == 0 and env["data"]["mailboxes"][0]["locked"], env["summary"]
    time.sleep(shared.lease_seconds + 0.5)
    code, env, _ = run(roots[other], "--enqueue")
    assert code == 0 and not env["data"]["mailboxes"][0]["locked"], env["summary"]
    result = folder_result(env)
    assert (result["new"], result["enqueued"], result["duplicates"]) == (0, 0, 0), result
    assert result["checkpoint_after"]["last_uid"] == max(folder_uids(lab, "sink", folder))
    # inbox.health reads the shared checkpoint too (no checkpoint file on this host), without taking the lease.
    done = run_capability(roots[worked], "communications.inbox.health")
    checks = [c for c in done.envelope["checks"] if c["id"] == "inbox.health.checkpoint"]
    assert checks and all(c["status"] == "ok" for c in checks), checks
    code, env, _ = run(roots[worked], "--enqueue", "--dry-run")  # the preview reads the shared checkpoint too
    preview = env["data"]["mailboxes"][0]["folders"][0]
    top = max(folder_uids(lab, "sink", folder))
    assert code == 0 and preview["new"] == 0 and preview["checkpoint"]["last_uid"] == top, preview
    code, env, _ = run(roots[other], "--enqueue")  # still this host's lease: health did not take it
    assert code == 0 and not env["data"]["mailboxes"][0]["locked"], env["summary"]


def test_a_batch_longer_than_the_lease_keeps_it_and_commits(lab, lab_root, tmp_path) -> None:
    """A poll renews its lease within a batch, not only between batches: over a link where every
    round trip to the cluster costs 60 ms, the batch of 40 takes longer than the 5 s lease. Renewed
    only at checkpoint saves, the lease lapsed mid-batch and the save at its end failed ("the lease
    ... was lost"): exit 1, the work done again by the next poll."""
    from tests.integration.inbox_lab import folder_result, run
    from tests.integration.nats_lab import SlowLink, make_js_root, stream_message_ids
    from tests.mailbox_fill import fill_maildir, folder_uids, make_messages

    folder, n, tag, lease = f"F{uuid.uuid4().hex[:10]}", 70, uuid.uuid4().hex[:6], 5.0  # batches of 10, 20, 40
    fill_maildir(lab, "sink", folder, make_messages(n, seed=5, tag=f"slow{tag}", max_bytes=4 * 1024))
    shared = settings(lab, checkpoints="kv", lease_seconds=lease, checkpoint_bucket=f"c{tag}", lease_bucket=f"l{tag}")
    with connect(lab, shared) as connection:  # the stream and buckets made once, over the fast link
        make_buckets(connection, shared)
    link = SlowLink(shared.servers[0], delay=0.06)
    try:
        slow = shared.model_copy(update={"servers": [link.url], "poller_id": "far-host"})
        root = make_js_root(tmp_path / "far", lab, lab_root, slow, folders=[folder])
        started = time.monotonic()
        code, env, err = run(root, "--enqueue")
        took = time.monotonic() - started
    finally:
        link.close()
    assert took > 2 * lease, f"the poll took {took:.1f} s: too fast to prove a batch outlived the lease"
    result = folder_result(env)
    assert code == 0, (env["summary"], env["data"]["mailboxes"][0].get("error"), err[-1500:])
    assert (result["new"], result["enqueued"]) == (n, n), result
    assert result["checkpoint_after"]["last_uid"] == max(folder_uids(lab, "sink", folder))
    with connect(lab, shared) as connection:
        assert sorted(stream_message_ids(connection)) == sorted(f"<slow{tag}.{i}@example.org>" for i in range(n))
