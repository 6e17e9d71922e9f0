"""The mailroom on the lab's three-node NATS JetStream cluster (TLS, R3): exactly once into the stream,
exactly once out of it into queued/, whatever is killed when. Issue 20's first slice."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from spine_comms.mailroom.drain import drain
from tests.cli_process import SPINE_COMMS, clean_env
from tests.integration.inbox_lab import assert_exactly_once, capability, checkpoint, folder_result, items, run
from tests.integration.nats_lab import connect, make_js_root, settings, stream_message_ids
from tests.mailbox_fill import fill_maildir, folder_uids, make_messages

pytestmark = pytest.mark.lab


def _folder() -> str:
    return f"F{uuid.uuid4().hex[:10]}"


def _ids(tag: str, n: int) -> set[str]:
    return {f"<{tag}.{i}@example.org>" for i in range(n)}


def _forget_local_state(root) -> None:
    """As a poller on another host, or after a restore: no checkpoint, no delivery marker."""
    shutil.rmtree(root / "mailroom" / "state" / "communications" / "inbox")


def test_poll_publishes_each_message_once_and_every_replay_is_recognised(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 12
    fill_maildir(lab, "sink", folder, make_messages(n, seed=3, tag="once", max_bytes=16 * 1024))
    js = settings(lab)
    root = make_js_root(tmp_path, lab, lab_root, js, folders=[folder])
    with connect(lab, js) as connection:
        code, env, _ = run(root, "--enqueue")
        assert code == 0, env["summary"]
        assert folder_result(env)["enqueued"] == n
        assert checkpoint(root, "sink", folder)["last_uid"] == max(folder_uids(lab, "sink", folder))
        assert sorted(stream_message_ids(connection)) == sorted(_ids("once", n))
        assert items(root)["queued"] == []  # nothing went to the file mailroom

        # Replay 1: local state lost; the dedup bucket knows every run id, so nothing is published.
        _forget_local_state(root)
        code, env, _ = run(root, "--enqueue")
        assert code == 0, env["summary"]
        assert folder_result(env)["enqueued"] == 0
        assert folder_result(env)["duplicates"] == n
        assert connection.status_now()["last_seq"] == n

        # Replay 2: the dedup records gone too (a bucket restored from an old backup): the stream's own
        # copy on the item's subject is found, and the record is written again.
        connection.call(connection.js.delete_key_value(js.dedup_bucket))
        _forget_local_state(root)
        code, env, _ = run(root, "--enqueue")
        assert code == 0, env["summary"]
        assert folder_result(env)["duplicates"] == n
        assert connection.status_now()["messages"] == n

        # Replay 3: the stream's copies removed (purged after the drain) but the records kept: still nothing.
        connection.call(connection.js.purge_stream(js.stream))
        _forget_local_state(root)
        code, env, _ = run(root, "--enqueue")
        assert code == 0, env["summary"]
        assert folder_result(env)["duplicates"] == n
        assert connection.status_now()["messages"] == 0


def test_drain_killed_between_write_and_ack_writes_no_second_file(lab, lab_root, tmp_path) -> None:
    js = settings(lab)
    inbox = tmp_path / "mailroom" / "inbox"
    with connect(lab, js) as connection:
        for i in range(6):
            connection.publish_item(f"prompt {i}\n", source="prompt", slug="task", run_id=f"R{i:04d}",
                                    session_id="S20261206-000000")  # fmt: skip

        class Killed(Exception):
            pass

        placed = []

        def die_after_third(path) -> None:
            placed.append(path)
            if len(placed) == 3:
                raise Killed  # the file is written, its message not acknowledged

        with pytest.raises(Killed):
            drain(connection, inbox, consumer=js.drain_consumer, wait=1, placed=die_after_third)
        assert len(list((inbox / "queued").glob("*.md"))) == 3
        # The watcher takes one of them meanwhile: a redelivery must find it in running/, not rewrite it.
        (inbox / "running").mkdir()
        taken = placed[2]
        taken.rename(inbox / "running" / taken.name)

    with connect(lab, js) as connection:
        time.sleep(js.ack_wait_seconds + 0.5)  # the unacknowledged message comes back after the ack wait
        outcome = drain(connection, inbox, consumer=js.drain_consumer, wait=2)
        assert outcome.redelivered >= 1
        assert str(inbox / "running" / taken.name) in outcome.already
        status = connection.status_now()
    files = sorted(p.name for p in inbox.rglob("*.md"))
    assert files == sorted(f"S20261206-000000__task__R{i:04d}.md" for i in range(6))
    assert (inbox / "running" / taken.name).read_text() == "prompt 2\n"
    drained = next(c for c in status["consumers"] if c["name"] == js.drain_consumer)
    assert drained["pending"] == 0 and drained["ack_pending"] == 0


def test_kill_9_of_the_poller_at_random_instants_then_drain_gives_each_message_once(lab, lab_root, tmp_path) -> None:
    # Small by default so the suite stays fast; JS_KILL_MESSAGES=500 JS_KILL_TRIALS=20 is the size.
    n, trials = int(os.environ.get("JS_KILL_MESSAGES", "150")), int(os.environ.get("JS_KILL_TRIALS", "6"))
    folder = _folder()
    fill_maildir(lab, "sink", folder, make_messages(n, seed=5, tag="js-kill", max_bytes=32 * 1024))
    js = settings(lab)
    root = make_js_root(tmp_path, lab, lab_root, js, folders=[folder])
    rng = random.Random(int(os.environ.get("KILL_SEED", "20261206")))
    with connect(lab, js) as connection:
        published = []
        for _ in range(trials):
            child = subprocess.Popen(
                [SPINE_COMMS, "communications.inbox.poll", "--root", str(root), "--json", "--enqueue"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
            )  # fmt: skip
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.2, 2.0))  # startup, login, connect, the first fetch...
            else:  # mid-publish: once the stream has grown by a few, then a little later
                _wait_until_grown(connection, child, rng.randint(1, 20))
                time.sleep(rng.uniform(0, 0.15))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            ids = stream_message_ids(connection)
            assert len(ids) == len(set(ids)), "a killed poll published a message twice"
            published.append(len(ids))
        assert published[-1] > 0, f"the kills all landed before any publish: {published}"
        print(f"stream size after each of {trials} kills: {published}")
        code, env, _ = run(root, "--enqueue")
        assert code == 0, env["summary"]
        ids = stream_message_ids(connection)
        assert sorted(ids) == sorted(_ids("js-kill", n)), "the stream does not hold each message exactly once"
        outcome = drain(connection, root / "mailroom" / "inbox", consumer=js.drain_consumer, wait=1)
        assert len(outcome.written) == n
    assert_exactly_once(root, _ids("js-kill", n))
    assert checkpoint(root, "sink", folder)["last_uid"] == max(folder_uids(lab, "sink", folder))


def _wait_until_grown(connection, child: subprocess.Popen, by: int, timeout: float = 20) -> None:
    start = connection.status_now()["messages"]
    deadline = time.monotonic() + timeout
    while connection.status_now()["messages"] < start + by and child.poll() is None:
        assert time.monotonic() < deadline, "the poll published nothing in time"
        time.sleep(0.02)


def test_enqueue_via_jetstream_once_per_run_id_and_status_reads_the_consumer(lab, lab_root, tmp_path) -> None:
    js = settings(lab)
    root = make_js_root(tmp_path, lab, lab_root, js, folders=["INBOX"])
    args = ("--via", "jetstream", "--run-id", "R-once", "--session-id", "S1", "--slug", "ask")
    code, env, _ = capability(root, "mailroom.enqueue", "--text", "please summarise", *args)
    assert code == 0, env["summary"]
    assert env["data"]["already_enqueued"] is False
    code, env, _ = capability(root, "mailroom.enqueue", "--text", "please summarise", *args)
    assert code == 0 and env["data"]["already_enqueued"] is True, env
    code, env, _ = capability(root, "mailroom.enqueue", "--text", "something else", *args)
    assert code == 1, env  # the same run id with other content is a conflict, never a second item
    code, env, _ = capability(root, "mailroom.status")
    assert env["data"]["jetstream"]["messages"] == 1
    assert any(c["id"] == "mailroom.jetstream.drain" and c["status"] == "warn" for c in env["checks"])
    code, env, _ = capability(root, "mailroom.drain")  # a dry run by default: nothing taken
    assert code == 0 and env["data"]["would_drain"] == 1, env["summary"]
    assert not (root / "mailroom" / "inbox" / "queued").exists()
    code, env, _ = capability(root, "mailroom.drain", "--execute", "--wait", "0.5")
    assert code == 0, env["summary"]
    assert env["data"]["written"] == 1
    assert (root / "mailroom" / "inbox" / "queued" / "S1__ask__R-once.md").read_text() == "please summarise\n"
    code, env, _ = capability(root, "mailroom.status")
    consumer = env["data"]["jetstream"]["consumers"][0]
    assert (consumer["name"], consumer["pending"], consumer["ack_pending"]) == (js.drain_consumer, 0, 0)


def test_an_unreachable_cluster_is_exit_3_and_the_checkpoint_stays(lab, lab_root, tmp_path) -> None:
    folder = _folder()
    fill_maildir(lab, "sink", folder, make_messages(3, seed=9, tag="down", max_bytes=4096))
    js = settings(lab, servers=["tls://127.0.0.1:1"], timeout_seconds=1)
    root = make_js_root(tmp_path, lab, lab_root, js, folders=[folder])
    code, env, stderr = run(root, "--enqueue")
    assert code == 3, (env["summary"], stderr)
    assert checkpoint(root, "sink", folder) is None
    assert "127.0.0.1:1" in " ".join(env["summary"]) + stderr
    for cap, args in (("mailroom.drain", ["--execute"]), ("mailroom.status", [])):
        code, env, stderr = capability(root, cap, *args)
        assert code == 3, (cap, env["summary"], stderr)


def _restart_node(lab: dict, name: str) -> None:
    """SIGKILL one nats-server of the lab, then start it again on its store; pids.json keeps track."""
    from pathlib import Path

    from lab import nats, process
    from lab.layout import Lab

    where = Lab(Path(lab["lab_dir"]), lab["port_base"])
    runs = process.load(where)
    victim = next(r for r in runs if r.name == name)
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.is_alive(victim):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield_point = time.monotonic()
    yield yield_point  # the node is down: the caller's poll runs on the other two
    daemon = next(d for d in nats.daemons(where) if d.name == name)
    again = process.spawn(where, daemon)
    process.save(where, [again if r.name == name else r for r in runs])
    while not process.port_accepts(where.port(name)):
        assert time.monotonic() < deadline + 30
        time.sleep(0.05)


@pytest.mark.stops_lab_daemons
def test_one_nats_node_killed_mid_poll_and_brought_back_every_message_once(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 120
    fill_maildir(lab, "sink", folder, make_messages(n, seed=8, tag="js-node", max_bytes=16 * 1024))
    js = settings(lab)  # R3: two of three nodes keep the quorum
    root = make_js_root(tmp_path, lab, lab_root, js, folders=[folder])
    with connect(lab, js) as connection:
        child = subprocess.Popen(
            [SPINE_COMMS, "communications.inbox.poll", "--root", str(root), "--json", "--enqueue"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        )  # fmt: skip
        _wait_until_grown(connection, child, 15)
    outage = _restart_node(lab, "nats-2")
    next(outage)  # nats-2 is dead now, mid-poll
    out, _ = child.communicate(timeout=120)
    # Done on the two others (0), or stopped at a publish that timed out during the failover, with
    # what it placed counted and its checkpoint behind (1 partial, 3 nothing placed): never a traceback.
    assert child.returncode in (0, 1, 3), (child.returncode, out[-2000:])
    envelope = json.loads(out)
    if child.returncode:
        assert "NATS JetStream" in json.dumps(envelope["data"]), envelope["summary"]
    print("poll during the outage:", child.returncode, envelope["summary"])
    with connect(lab, js) as connection:  # the surviving two still serve the stream
        during = stream_message_ids(connection)
        assert len(during) == len(set(during))
    next(outage, None)  # nats-2 back on its store
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    with connect(lab, js) as connection:
        assert sorted(stream_message_ids(connection)) == sorted(_ids("js-node", n))
        outcome = drain(connection, root / "mailroom" / "inbox", consumer=js.drain_consumer, wait=1)
    assert len(outcome.written) == n
    assert_exactly_once(root, _ids("js-node", n))
