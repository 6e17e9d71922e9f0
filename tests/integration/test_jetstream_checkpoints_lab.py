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


def test_two_hosts_poll_one_mailbox_one_holds_the_lease_and_the_other_starts_from_its_checkpoint(
    lab, lab_root, tmp_path
) -> None:
    import json
    import subprocess

    from tests.cli_process import SPINE_COMMS, clean_env, run_capability
    from tests.integration.inbox_lab import folder_result, run
    from tests.integration.nats_lab import make_js_root, stream_message_ids
    from tests.mailbox_fill import fill_maildir, folder_uids, make_messages

    folder, n, tag = f"F{uuid.uuid4().hex[:10]}", 60, uuid.uuid4().hex[:6]
    fill_maildir(lab, "sink", folder, make_messages(n, seed=4, tag=f"hosts{tag}", max_bytes=8 * 1024))
    shared = settings(lab, checkpoints="kv", lease_seconds=5, checkpoint_bucket=f"c{tag}", lease_bucket=f"l{tag}")
    roots = {
        host: make_js_root(
            tmp_path / host, lab, lab_root, shared.model_copy(update={"poller_id": host}), folders=[folder]
        )
        for host in ("host-a", "host-b")
    }  # two state directories: nothing shared but the cluster
    with connect(lab, shared) as connection:  # the stream and buckets made once, as a first deployment would
        KvCheckpointStore(connection, shared.checkpoint_bucket, "sink")
        MailboxLease(connection, shared.lease_bucket, "sink", shared.lease_seconds)
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
