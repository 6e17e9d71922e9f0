"""Agents anywhere (issue 20): one durable pull consumer per agent group on the lab's JetStream cluster.
Every group receives every item once; the members of one group (each with its own mailroom, as on its
own host) share the group's items, none placed twice; mailroom.status shows each consumer."""

from __future__ import annotations

import threading
import time

import pytest

from spine_comms.mailroom.drain import drain
from tests.integration.inbox_lab import capability
from tests.integration.nats_lab import connect, make_js_root, settings

pytestmark = pytest.mark.lab
SESSION = "S20261206-120000"


def _placed(inbox) -> set[str]:
    return {p.name for p in inbox.rglob("*.md") if not p.name.startswith(".")}


def test_two_agent_groups_each_receive_every_item_once_and_two_members_share_one_group(lab, lab_root, tmp_path) -> None:
    n = 60
    js = settings(lab, agent_groups=["triage", "archive"], ack_wait_seconds=5)
    names = {f"{SESSION}__task__R{i:04d}.md" for i in range(n)}
    with connect(lab, js) as connection:  # ensure(): the stream and both groups' consumers, before any item
        before = {c["name"]: c for c in connection.status_now()["consumers"]}
        assert set(before) == {"triage", "archive"} and all(c["role"] == "agent group" for c in before.values())
        connection.ensure()  # made idempotently: a second ensure (another host starting) changes nothing
        assert {c["name"] for c in connection.status_now()["consumers"]} == {"triage", "archive"}
        for i in range(n):
            connection.publish_item(f"prompt {i}\n", source="prompt", slug="task", run_id=f"R{i:04d}",
                                    session_id=SESSION)  # fmt: skip
        waiting = {c["name"]: c["pending"] for c in connection.status_now()["consumers"]}
        assert waiting == {"triage": n, "archive": n}, waiting

    # Two members of `triage`, each on its own connection and mailroom, drain at once, a few items a
    # fetch, placing each slowly (an agent's host under load): the group's items are shared between them.
    members = {name: tmp_path / name / "inbox" for name in ("member-1", "member-2")}
    outcomes, errors = {}, []

    def member(name: str) -> None:
        try:
            with connect(lab, js) as own:
                outcomes[name] = drain(own, members[name], consumer="triage", wait=2, batch=4,
                                       placed=lambda _path: time.sleep(0.02))  # fmt: skip
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(name,)) for name in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    got = {name: _placed(inbox) for name, inbox in members.items()}
    assert got["member-1"] and got["member-2"], {k: len(v) for k, v in got.items()}  # both did some of the work
    assert not (got["member-1"] & got["member-2"]), "an item went to both members of one group"
    assert got["member-1"] | got["member-2"] == names
    print(f"triage: member-1 took {len(got['member-1'])}, member-2 took {len(got['member-2'])} of {n}")

    # `archive`, the other group, drained on a third host through the CLI: it gets every item as well.
    root = make_js_root(tmp_path / "archive-host", lab, lab_root, js, folders=["INBOX"])
    code, env, _ = capability(root, "mailroom.drain", "--execute", "--group", "archive", "--wait", "1")
    assert code == 0, env["summary"]
    assert (env["data"]["consumer"], env["data"]["written"]) == ("archive", n)
    assert _placed(root / "mailroom" / "inbox") == names
    code, env, _ = capability(root, "mailroom.drain", "--execute", "--group", "archive", "--wait", "0.5")
    assert code == 0 and env["data"]["written"] == 0  # once per group: nothing the second time

    # status: each consumer with its role, nothing pending, nothing waiting; the drain consumer not made yet.
    code, env, _ = capability(root, "mailroom.status")
    consumers = {c["name"]: c for c in env["data"]["jetstream"]["consumers"]}
    assert set(consumers) == {"triage", "archive"}
    for consumer in consumers.values():
        assert (consumer["pending"], consumer["ack_pending"], consumer["oldest_unacked_age_seconds"]) == (0, 0, None)
    assert any(c["id"] == "mailroom.jetstream.drain" and c["status"] == "warn" for c in env["checks"])
    checks = [c for c in env["checks"] if c["id"] == "mailroom.jetstream.consumer"]
    assert sorted(c["subject"] for c in checks) == ["archive (agent group)", "triage (agent group)"]


def test_an_unacknowledged_group_item_waits_in_status_and_goes_to_the_next_member(lab, lab_root, tmp_path) -> None:
    js = settings(lab, agent_groups=["triage"], ack_wait_seconds=1)
    with connect(lab, js) as connection:
        for i in range(3):
            connection.publish_item(f"prompt {i}\n", source="prompt", slug="task", run_id=f"R{i:04d}",
                                    session_id=SESSION)  # fmt: skip
        subscription = connection.pull("triage")
        taken = connection.fetch(subscription, 1, 2)  # a member takes one and dies before acknowledging
        assert len(taken) == 1
        time.sleep(6.5)  # status warns from --max-queued-age 0.1 (minutes) on
        triage = next(c for c in connection.status_now()["consumers"] if c["name"] == "triage")
        assert triage["oldest_unacked_age_seconds"] is not None and triage["oldest_unacked_age_seconds"] >= 6
        assert triage["pending"] + triage["ack_pending"] == 3
    root = make_js_root(tmp_path, lab, lab_root, js, folders=["INBOX"])
    code, env, _ = capability(root, "mailroom.status", "--max-queued-age", "0.1")
    consumer = next(c for c in env["checks"] if c["id"] == "mailroom.jetstream.consumer")
    assert consumer["status"] == "warn" and "is its reader down?" in consumer["detail"], consumer
    code, env, _ = capability(root, "mailroom.drain", "--execute", "--group", "triage", "--wait", "1")
    assert code == 0 and env["data"]["written"] == 3 and env["data"]["redelivered"] >= 1, env["data"]
    code, env, _ = capability(root, "mailroom.drain", "--execute", "--group", "nobody")
    assert code == 2 and "not an agent group" in env["error"]["message"], env
