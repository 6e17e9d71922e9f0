"""communications.inbox.poll and .health against the lab's Dovecot (and Postfix for real deliveries).

Each test polls its own fresh folder of sink@ (or ops@ INBOX through a fresh root
whose checkpoint starts at zero), so tests do not see each other's state."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.integration.inbox_lab import (
    assert_exactly_once,
    capability,
    checkpoint,
    folder_result,
    items,
    make_root,
    message_ids_in_items,
    run,
)
from tests.mailbox_fill import fill_imap, imap_client, make_message
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab


def _folder() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


def _message(mid: str, *, sender="friend@example.org", subject="hello", body="hello there\n", headers=()) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "sink@spine.test"
    message["Subject"] = subject
    message["Date"] = "Sat, 21 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = mid
    for name, value in headers:
        message[name] = value
    message.set_content(body)
    return bytes(message)


def _flags(lab: dict, user: str, folder: str) -> dict[int, tuple]:
    with imap_client(lab, user) as imap:
        imap.select_folder(folder, readonly=True)
        return {uid: parts[b"FLAGS"] for uid, parts in imap.fetch(imap.search(), ["FLAGS"]).items()}


def test_listing_is_the_spines_poll_read_only_unless_mark_seen(lab, lab_root, tmp_path) -> None:
    folder = _folder()
    long_body = "word " * 1000
    fill_imap(lab, "sink", folder, [_message(f"<list.{i}@example.org>", subject=f"s{i}", body=long_body)
                                    for i in range(3)], connections=1)  # fmt: skip
    root = make_root(tmp_path, lab, lab_root, folders=[folder])
    code, env, _ = run(root, "--mailbox", "sink", "--limit", "2")
    assert code == 0 and env["status"] == "ok"
    data = env["data"]
    assert {"mailbox", "imap_host", "unseen_count", "fetched_count", "limit", "messages"} <= set(data)
    assert (data["mailbox"], data["unseen_count"], data["fetched_count"], data["limit"]) == ("sink@spine.test", 3, 2, 2)
    assert [m["subject"] for m in data["messages"]] == ["s2", "s1"]  # newest first
    first = data["messages"][0]
    assert set(first) >= {"message_id", "from", "subject", "date", "body"}
    assert first["message_id"] == "<list.2@example.org>" and first["date"] == "2026-11-21T10:00:00Z"
    assert first["body"].endswith("\n... [truncated]") and len(first["body"]) == 2000 + len("\n... [truncated]")
    assert all(b"\\Seen" not in f for f in _flags(lab, "sink", folder).values())  # BODY.PEEK: still unseen

    code, env, _ = run(root, "--mailbox", "sink@spine.test", "--dry-run")
    assert code == 0 and env["data"]["dry_run"] is True and env["data"]["unseen_count"] == 3
    assert "messages" not in env["data"]

    code, env, _ = run(root, "--mailbox", "sink", "--limit", "1", "--mark-seen")
    assert code == 0 and env["data"]["fetched_count"] == 1
    flags = _flags(lab, "sink", folder)
    assert [uid for uid, f in sorted(flags.items()) if b"\\Seen" in f] == [max(flags)]  # only the listed one
    assert not items(root)["queued"]  # listing never enqueues
    validate_receipt(Path(env["receipt"]) / "receipt.json")


def test_mail_sent_to_ops_is_enqueued_once_then_flagged_seen(lab, lab_root, tmp_path, send_mail) -> None:
    root = make_root(tmp_path, lab, lab_root, folders=["INBOX"], user="ops", after="{action: seen}")
    mid = send_mail("alerts", "ops", subject="disk almost full on db1", body="92% used on /var\n")
    for _attempt in range(50):
        code, env, _err = run(root, "--enqueue")
        assert code == 0, env["summary"]
        if mid in message_ids_in_items(root):
            break
    mine = [p for p in items(root)["queued"] if mid in p.read_text()]
    assert len(mine) == 1
    text = mine[0].read_text()
    assert text.startswith("AUDIENCE: SUPERVISOR\nMODE: ROUTE\n") and "## Event: email_received" in text
    assert "**Subject:** disk almost full on db1" in text and "dmarc=pass" in text
    eml = Path(text.split("Stored message (.eml): ")[1].split("\n")[0])
    assert mid.encode() in eml.read_bytes()
    uid = int(text.split("- UID: ")[1].split("\n")[0])
    assert b"\\Seen" in _flags(lab, "ops", "INBOX")[uid]  # flagged after the item was written

    before = message_ids_in_items(root)
    code, env, _ = run(root, "--enqueue")
    assert code == 0 and folder_result(env)["new"] == 0 and message_ids_in_items(root) == before
    validate_receipt(Path(env["receipt"]) / "receipt.json")


def test_policy_sends_each_message_to_its_lane(lab, lab_root, tmp_path) -> None:
    folder = _folder()
    big = make_message(1, 300 * 1024, tag="big")
    messages = {
        "<ok@example.org>": _message("<ok@example.org>"),
        "<denied@example.org>": _message("<denied@example.org>", sender="spammer@bad.example"),
        # The receiver's block on top (its A-R, then its Received), as a delivery writes it: RFC 8601 §7.1.
        "<dmarcfail@example.org>": f"Authentication-Results: {lab['authserv_id']}; dmarc=fail (p=reject) "
        "header.from=example.org\r\nReceived: from x.example.org by mx.spine.test; Sat, 21 Nov 2026 10:00:00 "
        "+0000\r\n".encode() + _message("<dmarcfail@example.org>"),
        "<forged@example.org>": _message("<forged@example.org>", headers=[
            ("Authentication-Results", "evil.example; dmarc=fail header.from=example.org")]),
        "<secret@example.org>": _message("<secret@example.org>", body="the api_key = abc123 for you\n"),
        "<big.1@example.org>": big,
    }  # fmt: skip
    fill_imap(lab, "sink", folder, list(messages.values()), connections=1, chunk=1)
    root = make_root(
        tmp_path, lab, lab_root, folders=[folder],
        policy="  max_message_bytes: 200000\n  senders: {deny: ['@bad.example']}\n  dmarc_fail: quarantine",
    )  # fmt: skip
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    result = folder_result(env)
    assert (result["new"], result["enqueued"], result["quarantined"], result["dropped"]) == (6, 2, 3, 1)
    reasons = {p["uid"]: " ".join(p["reasons"]) for p in result["parked"]}
    assert any("dmarc=fail from mail.spine.test" in r for r in reasons.values())
    assert any("over policy.max_message_bytes" in r for r in reasons.values())
    assert any("secret pattern" in r for r in reasons.values())
    assert "denied by policy.senders.deny" in " ".join(result["dropped_messages"][0]["reasons"])
    assert env["status"] == "warn" and any(c["id"] == "inbox.poll.secret_match" for c in env["checks"])
    queued = " ".join(p.read_text() for p in items(root)["queued"])
    assert "<ok@example.org>" in queued and "<forged@example.org>" in queued  # a foreign A-R is ignored
    parked = {p: p.read_text() for p in items(root)["parked"]}
    big_item = next(t for t in parked.values() if "<big.1@example.org>" in t)
    assert "This is big 1" not in big_item  # the body over the cap was never fetched
    assert_exactly_once(root, set(messages), dropped={"<denied@example.org>"})
    # The dropped message is recorded in state only.
    from spine_comms.inbox.store import DeliveryIndex

    index = DeliveryIndex(root / "mailroom/state/communications/inbox", "sink")
    markers = list(index.directory.rglob("*.json"))
    assert len(markers) == len(messages)
    assert sum(index.get(m.stem)["lane"] == "dropped" for m in markers) == 1
    # A marker is a second name of the message's normalized .json, which says how it was delivered.
    dropped = next(m for m in markers if index.get(m.stem)["lane"] == "dropped")
    stored = root / "mailroom/state/communications/inbox/messages" / dropped.stem[:2] / dropped.name
    assert dropped.stat().st_ino == stored.stat().st_ino
    assert json.loads(stored.read_text())["spine_comms"]["delivery"]["message_id"] == "<denied@example.org>"


def test_secret_match_redact_keeps_the_item_in_the_queue(lab, lab_root, tmp_path) -> None:
    folder = _folder()
    fill_imap(lab, "sink", folder, [_message("<red@example.org>", body="password: hunter2\n")], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder], policy="  secret_match: redact")
    code, env, _ = run(root, "--enqueue")
    assert code == 0 and env["status"] == "warn"
    [item] = items(root)["queued"]
    assert "hunter2" not in item.read_text() and "[REDACTED]" in item.read_text()
    assert folder_result(env)["secret_matches"][0]["action"] == "redacted"
    from spine_comms.mailroom.secrets_scan import secret_findings

    assert secret_findings(item.read_text()) == []  # the watcher will not park it


def test_after_enqueue_move_happens_after_the_items(lab, lab_root, tmp_path) -> None:
    folder, done = _folder(), _folder()
    with imap_client(lab, "sink") as imap:
        imap.create_folder(done)
    fill_imap(lab, "sink", folder, [_message(f"<mv.{i}@example.org>") for i in range(5)], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder], after=f"{{action: move, folder: {done}}}")
    code, env, _ = run(root, "--enqueue")
    assert code == 0 and folder_result(env)["post_commit"]["uids"] == 5
    assert_exactly_once(root, {f"<mv.{i}@example.org>" for i in range(5)})
    with imap_client(lab, "sink") as imap:
        assert imap.select_folder(folder)[b"EXISTS"] == 0
        assert imap.select_folder(done)[b"EXISTS"] == 5


def test_login_refused_is_exit_3_naming_the_account_never_the_password(lab, lab_root, tmp_path) -> None:
    sentinel = "sentinel-Pw-" + uuid.uuid4().hex
    root = make_root(tmp_path, lab, lab_root, folders=["INBOX"], password_ref="env:SINK_TEST_PASSWORD")
    for args in (["--enqueue"], []):
        code, env, err = run(root, *args, "--mailbox", "sink", env={"SINK_TEST_PASSWORD": sentinel})
        assert code == 3 and env["status"] == "error"
        assert "sink@spine.test" in json.dumps(env)
        receipt = "\n".join(p.read_text() for p in Path(env["receipt"]).iterdir())
        assert sentinel not in json.dumps(env) + err + receipt
    code, env, _ = run(root, "--mailbox", "sink", env={"STALWART_SINK_PASSWORD": sentinel})
    assert code == 3  # the spine's override variable wins over the contract's reference


def test_health_sees_fresh_stale_and_unprocessed(lab, lab_root, tmp_path) -> None:
    folder = _folder()
    fill_imap(lab, "sink", folder, [_message("<h.0@example.org>")], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder],
                     extra="health: {max_heartbeat_age_seconds: 5, max_unprocessed_minutes: 10}")  # fmt: skip
    code, env, _ = capability(root, "communications.inbox.health")
    assert code == 1 and _status(env, "inbox.health.fresh") == "fail"  # never polled
    code, polled, _ = run(root, "--enqueue")
    assert code == 0
    # Both say which endpoint they reached: contract.endpoints.sync copies it into the stack contract.
    endpoint = {"host": "127.0.0.1", "port": lab["ports"]["imaps"], "security": "tls"}
    assert [m["endpoint"] for m in polled["data"]["mailboxes"]] == [endpoint]
    code, env, _ = capability(root, "communications.inbox.health")
    assert code == 0, env["checks"]
    assert [m["endpoint"] for m in env["data"]["mailboxes"]] == [endpoint]
    assert {c["id"] for c in env["checks"]} >= {
        "inbox.health.login", "inbox.health.checkpoint", "inbox.health.fresh", "inbox.health.unprocessed",
        "inbox.health.mailroom",
    }  # fmt: skip
    # Mail that arrived an hour ago and is still above the checkpoint: the loop is stuck.
    with imap_client(lab, "sink") as imap:
        imap.append(folder, _message("<h.old@example.org>"), msg_time=datetime.now(UTC) - timedelta(hours=1))
    code, env, _ = capability(root, "communications.inbox.health")
    assert code == 1 and _status(env, "inbox.health.unprocessed") == "fail"
    # The heartbeat of a live, connected watch counts as fresh; an old one does not, and neither does a fresh
    # one of a watch that is reconnecting or whose process is gone (once the last poll is past the limit).
    import os
    import subprocess
    import time

    state = root / "mailroom/state/communications/inbox"

    def beat(**fields) -> str:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        (state / "sink.heartbeat.json").write_text(json.dumps({"at": now, "mailbox": "sink", **fields}))
        return _status(capability(root, "communications.inbox.health")[1], "inbox.health.fresh")

    dead = int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout)
    assert beat(pid=os.getpid(), status="idle") == "ok"
    time.sleep(6)
    assert beat(pid=os.getpid(), status="idle") == "ok"  # the poll is old now: the live heartbeat alone
    assert beat(pid=os.getpid(), status="reconnecting", last_error="connect: refused") == "fail"
    assert beat(pid=os.getpid(), status="connecting") == "fail"
    assert beat(pid=dead, status="idle") == "fail"  # SIGKILLed: its last word was idle
    assert beat(pid=os.getpid(), status="stopped") == "fail"
    assert beat(pid=dead, status="idle", host="another-host") == "ok"  # a pid elsewhere is not checked here
    (state / "sink.heartbeat.json").write_text(json.dumps({"at": "2020-01-01T00:00:00Z", "pid": os.getpid(),
                                                           "status": "idle"}))  # fmt: skip
    assert _status(capability(root, "communications.inbox.health")[1], "inbox.health.fresh") == "fail"
    # A checkpoint from another UIDVALIDITY is flagged (the next poll re-baselines).
    path = state / "sink" / "folders"
    [cp_file] = list(path.iterdir())
    data = json.loads(cp_file.read_text())
    data["uidvalidity"] += 1
    cp_file.write_text(json.dumps(data))
    assert _status(capability(root, "communications.inbox.health")[1], "inbox.health.checkpoint") == "warn"
    assert checkpoint(root, "sink", folder)["uidvalidity"] == data["uidvalidity"]


def _status(env: dict, check_id: str) -> str:
    return next(c["status"] for c in env["checks"] if c["id"] == check_id)


def test_hostile_attachment_names_stay_in_the_state_directory(lab, lab_root, tmp_path) -> None:
    folder = _folder()
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "x@example.org", "sink@spine.test", "names"
    message["Message-ID"] = "<names@example.org>"
    message.set_content("see attached\n")
    for name in ["../../../../tmp/escaped-by-mail.txt", "/etc/cron.d/evil", "a\x00b.txt", "..", "C:\\boot.ini"]:
        message.add_attachment(b"payload " + name.encode(), maintype="text", subtype="plain", filename=name)
    fill_imap(lab, "sink", folder, [bytes(message)], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder])
    assert run(root, "--enqueue")[0] == 0
    state = (root / "mailroom" / "state").resolve()
    stored = [p for p in (state / "communications/inbox/attachments").rglob("*") if p.is_file()]
    assert len(stored) == 5 and all(state in p.resolve().parents for p in stored)
    assert not Path("/tmp/escaped-by-mail.txt").exists() and not Path("/etc/cron.d/evil").exists()
    assert_exactly_once(root, {"<names@example.org>"})


def test_imaplibs_protocol_log_is_off_unless_its_logger_would_print_it(lab, lab_credentials) -> None:
    """imapclient sets imaplib's debug level to 5, which formats every response, bodies included."""
    import logging

    from spine_comms.protocols.imap import ImapTarget, session

    target = ImapTarget(lab["host"], lab["ports"]["imaps"], "tls", "mail.spine.test", lab["tls"]["ca_cert"],
                        "sink@spine.test", lab_credentials["sink"])  # fmt: skip
    with session(target) as imap:
        assert imap.client._imap.debug == 0
        assert imap.select("INBOX") >= 0  # the protocol works as before with it off
    logger = logging.getLogger("imapclient.imaplib")
    logger.setLevel(logging.DEBUG)  # someone debugging the protocol: the log stays on
    try:
        with session(target) as imap:
            assert imap.client._imap.debug == 5
    finally:
        logger.setLevel(logging.NOTSET)
