"""communications.inbox.watch with the JetStream mailroom and checkpoints in KV (issue 20): two watch
processes on one mailbox, as two hosts would run them (separate roots and state directories, nothing
shared but the lab's Dovecot and NATS cluster). One holds the mailbox's lease and renews it while it
idles; the other stands by; kill -9 the holder and the stand-by takes over within the lease time, and
every message is in the stream, and drained into queued/, exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from spine_comms.mailroom.drain import drain
from tests.cli_process import SPINE_COMMS, clean_env
from tests.integration.inbox_lab import assert_exactly_once
from tests.integration.nats_lab import connect, host_roots, make_buckets, make_js_root, settings, stream_message_ids
from tests.mailbox_fill import fill_maildir, make_messages

pytestmark = pytest.mark.lab
LEASE = 6.0  # seconds; the contract's minimum is 5
WATCH = "watch: {heartbeat_seconds: 1, idle_renew_seconds: 60, reconnect_backoff_seconds: [0.2, 0.5]}\n"


def _watch(root: Path, host=None) -> subprocess.Popen:
    argv = [SPINE_COMMS, "communications.inbox.watch", "--root", str(root), "--json", "--execute", "--mailbox", "sink"]
    return subprocess.Popen(host.command(*argv) if host else argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env())  # fmt: skip


def _heartbeat(root: Path) -> dict:
    path = root / "mailroom" / "state" / "communications" / "inbox" / "sink.heartbeat.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _lease(connection, bucket: str) -> tuple[str | None, int | None]:
    """(holder, revision) of sink's lease record; (None, None) when there is none (lapsed or released)."""
    from nats.js.errors import KeyNotFoundError

    async def get():
        kv = await connection.js.key_value(bucket)
        try:
            entry = await kv.get("sink")
        except KeyNotFoundError:
            return None, None
        return json.loads(entry.value)["holder"], entry.revision

    return connection.call(get())


def _until(what: str, check, timeout: float, *children: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        for child in children:
            if child.poll() is not None:
                raise AssertionError(f"a watch ended while waiting for {what}: {child.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_watch_renews_its_lease_while_idle_and_a_stand_by_takes_over_after_kill_9(lab, lab_root, tmp_path) -> None:
    folder, tag = f"F{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:6]
    first, second = 25, 15
    ids = {f"<lease{tag}a.{i}@example.org>" for i in range(first)} | {
        f"<lease{tag}b.{i}@example.org>" for i in range(second)
    }
    fill_maildir(lab, "sink", folder, make_messages(first, seed=7, tag=f"lease{tag}a", max_bytes=8 * 1024))
    shared = settings(lab, checkpoints="kv", lease_seconds=LEASE, checkpoint_bucket=f"c{tag}", lease_bucket=f"l{tag}")
    roots = host_roots(tmp_path, lab, lab_root, shared, ("host-a", "host-b"), folders=[folder], extra=WATCH)
    children: dict[str, subprocess.Popen] = {}
    try:
        with connect(lab, shared) as connection:
            make_buckets(connection, shared)
            children["host-a"] = _watch(roots["host-a"])
            _until("host-a to publish the first messages", lambda: len(stream_message_ids(connection)) == first,
                   60, children["host-a"])  # fmt: skip
            assert _lease(connection, shared.lease_bucket)[0] == "host-a"
            children["host-b"] = _watch(roots["host-b"])
            _until("host-b to stand by", lambda: _heartbeat(roots["host-b"]).get("lease") == "standing by",
                   30, *children.values())  # fmt: skip

            # No mail for three lease times: host-a idles in IMAP IDLE, and renews the lease all the while.
            revisions = []
            for _ in range(int(3 * LEASE)):
                holder, revision = _lease(connection, shared.lease_bucket)
                assert holder == "host-a", "the idle holder let its lease lapse (or host-b took it)"
                revisions.append(revision)
                assert _heartbeat(roots["host-b"]).get("lease") == "standing by"
                time.sleep(1)
            assert len(set(revisions)) >= 5, f"the lease was not renewed while idle: {revisions}"
            assert _heartbeat(roots["host-a"])["status"] == "idle"

            _, last_renewal = _lease(connection, shared.lease_bucket)
            children["host-a"].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            children["host-a"].communicate(timeout=30)
            fill_maildir(lab, "sink", folder, make_messages(second, seed=8, tag=f"lease{tag}b", max_bytes=8 * 1024))
            _until("host-b to take the lease", lambda: _lease(connection, shared.lease_bucket)[0] == "host-b",
                   3 * LEASE, children["host-b"])  # fmt: skip
            took = time.monotonic() - killed
            print(f"lease {LEASE:g} s: host-b took over {took:.1f} s after the kill -9 of host-a")
            # The record lapses at most LEASE after host-a's last renewal (before the kill); host-b tries
            # every LEASE/10; a second for the server's expiry timer and two busy CPUs.
            assert took <= LEASE + LEASE / 10 + 1.5, took
            _until("host-b to publish the new messages", lambda: len(stream_message_ids(connection)) >= first + second,
                   60, children["host-b"])  # fmt: skip
            time.sleep(1)  # anything published twice would show now
            published = stream_message_ids(connection)
            assert sorted(published) == sorted(ids), "the stream does not hold each message exactly once"

            children["host-b"].send_signal(signal.SIGTERM)
            out, err = children["host-b"].communicate(timeout=60)
            assert children["host-b"].returncode == 0, err[-2000:]
            mailbox = json.loads(out)["data"]["mailboxes"][0]
            assert (mailbox["lease"], mailbox["takeovers"], mailbox["enqueued"]) == ("held", 1, second), mailbox
            assert "took the lease over as host-b" in err
            assert _lease(connection, shared.lease_bucket) == (None, None), "a clean stop releases the lease"
            assert last_renewal is not None

            drained = drain(connection, roots["host-b"] / "mailroom" / "inbox", consumer=shared.drain_consumer, wait=1)
            assert len(drained.written) == first + second
        assert_exactly_once(roots["host-b"], ids)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.communicate()


def test_a_holder_frozen_past_its_lease_stands_by_when_it_wakes_and_takes_over_later(lab, lab_root, tmp_path) -> None:
    """SIGSTOP the holding watch longer than the lease (a VM pause): the stand-by takes the mailbox; the
    woken one learns it lost the lease, stands by and publishes nothing; kill -9 the new holder and the
    first takes the mailbox back."""
    folder, tag = f"F{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:6]
    batches = {"a": 10, "b": 10, "c": 10}
    ids = {f"<frz{tag}{k}.{i}@example.org>" for k, n in batches.items() for i in range(n)}
    fill_maildir(lab, "sink", folder, make_messages(batches["a"], seed=21, tag=f"frz{tag}a", max_bytes=4096))
    shared = settings(lab, checkpoints="kv", lease_seconds=LEASE, checkpoint_bucket=f"c{tag}", lease_bucket=f"l{tag}")
    roots = host_roots(tmp_path, lab, lab_root, shared, ("host-a", "host-b"), folders=[folder], extra=WATCH)
    children: dict[str, subprocess.Popen] = {}
    try:
        with connect(lab, shared) as connection:
            make_buckets(connection, shared)
            children["host-a"] = _watch(roots["host-a"])
            _until("host-a to publish", lambda: len(stream_message_ids(connection)) == batches["a"], 60,
                   children["host-a"])  # fmt: skip
            children["host-b"] = _watch(roots["host-b"])
            _until("host-b to stand by", lambda: _heartbeat(roots["host-b"]).get("lease") == "standing by", 30,
                   *children.values())  # fmt: skip

            children["host-a"].send_signal(signal.SIGSTOP)
            _until("host-b to take the lease", lambda: _lease(connection, shared.lease_bucket)[0] == "host-b",
                   3 * LEASE)  # fmt: skip
            fill_maildir(lab, "sink", folder, make_messages(batches["b"], seed=22, tag=f"frz{tag}b", max_bytes=4096))
            _until("host-b to publish", lambda: len(stream_message_ids(connection)) == 20, 60, children["host-b"])
            children["host-a"].send_signal(signal.SIGCONT)
            _until("host-a to stand by", lambda: _heartbeat(roots["host-a"]).get("lease") == "standing by", 30,
                   *children.values())  # fmt: skip
            assert _lease(connection, shared.lease_bucket)[0] == "host-b", "the woken holder took the lease back"

            children["host-b"].send_signal(signal.SIGKILL)
            children["host-b"].communicate(timeout=30)
            fill_maildir(lab, "sink", folder, make_messages(batches["c"], seed=23, tag=f"frz{tag}c", max_bytes=4096))
            _until("host-a to take the mailbox back and publish", lambda: len(stream_message_ids(connection)) >= 30,
                   4 * LEASE + 30, children["host-a"])  # fmt: skip
            time.sleep(1)
            assert sorted(stream_message_ids(connection)) == sorted(ids)

            children["host-a"].send_signal(signal.SIGTERM)
            out, err = children["host-a"].communicate(timeout=60)
            assert children["host-a"].returncode == 0, err[-2000:]
            mailbox = json.loads(out)["data"]["mailboxes"][0]
            assert (mailbox["lease"], mailbox["takeovers"]) == ("held", 1), mailbox
            assert mailbox["enqueued"] == batches["a"] + batches["c"], mailbox  # nothing of host-b's turn
            assert "was lost" in err and "standing by" in err
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGCONT)
                child.kill()
                child.communicate()


def test_the_cluster_cut_off_from_the_watch_is_a_drop_and_the_watch_goes_on_when_it_is_back(
    lab, lab_root, tmp_path
) -> None:
    """The watch in a network namespace of its own whose NATS ports the test cuts for a while (IMAP still
    reachable): the lease renewal gets no answer, the watch drops and reconnects with its backoff (its
    thread does not die), and once the cluster is reachable again it publishes what came meanwhile."""
    from tests.integration import netns_hosts

    why = netns_hosts.unavailable()
    if why:
        pytest.skip(f"no network namespaces here ({why})")
    folder, tag = f"F{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:6]
    ids = {f"<cut{tag}{k}.{i}@example.org>" for k in "ab" for i in range(5)}
    fill_maildir(lab, "sink", folder, make_messages(5, seed=31, tag=f"cut{tag}a", max_bytes=4096))
    shared = settings(lab, checkpoints="kv", lease_seconds=LEASE, checkpoint_bucket=f"c{tag}", lease_bucket=f"l{tag}",
                      timeout_seconds=2)  # fmt: skip
    root = make_js_root(tmp_path, lab, lab_root, shared, folders=[folder], extra=WATCH)
    nats_ports = [lab["ports"][node] for node in ("nats-1", "nats-2", "nats-3")]
    host = netns_hosts.Host(f"spine{tag}w", "127.0.0.4", sorted(set(lab["ports"].values())))
    child = None
    try:
        with connect(lab, shared) as connection:
            make_buckets(connection, shared)
            child = _watch(root, host)
            _until("the first publishes", lambda: len(stream_message_ids(connection)) == 5, 60, child)
            host.cut(nats_ports)
            _until(
                "the watch to drop for the mailroom",
                lambda: str(_heartbeat(root).get("last_error") or "").startswith("mailroom:"),
                6 * LEASE,
                child,
            )
            fill_maildir(lab, "sink", folder, make_messages(5, seed=32, tag=f"cut{tag}b", max_bytes=4096))
            time.sleep(LEASE + 1)  # long enough for the lease to lapse: the watch must take it again
            assert len(stream_message_ids(connection)) == 5
            host.restore(nats_ports)
            _until("the mail that came meanwhile", lambda: len(stream_message_ids(connection)) >= 10, 90, child)
            time.sleep(1)
            assert sorted(stream_message_ids(connection)) == sorted(ids)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err[-2000:]
        mailbox = json.loads(out)["data"]["mailboxes"][0]
        assert mailbox["fatal"] is None and mailbox["status"] == "stopped", mailbox
        assert mailbox["enqueued"] == 10 and mailbox["lease"] == "held", mailbox
        assert any("mailroom: NATS JetStream" in drop for drop in mailbox["drops"]), mailbox["drops"]
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.communicate()
        host.close()
