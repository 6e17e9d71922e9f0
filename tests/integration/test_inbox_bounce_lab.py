"""DSN bounces through the inbox pipeline reach the outbox (issue 8's bounce handling, the inbox side).

Once a batch's items are placed and synced, and before its delivery markers are written, every
message classified `bounce` is handed to
spine_comms.outbox.bounces.note_bounce with the mailroom state directory and its normalized
form; the poll reports `bounces: {noted, matched, errors}`. A failure inside the outbox never
stops the intake: the message stays delivered, the failure is counted and logged.

1. End to end: a send from alerts@ to gone@spine.test is accepted by the lab's Postfix, then
   refused by Dovecot (no such user), so Postfix mails a real DSN back to alerts@. Polling
   alerts@ with --enqueue delivers the DSN and the outbox marks the send bounced.
2. In-process, note_bounce made to fail: the DSN is still enqueued exactly once.
3. In-process, the markers made to fail after note_bounce: the rerun notes the DSN again.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.inbox_lab import capability, in_process, items, make_root, run
from tests.integration.test_outbox_support import own_root, records
from tests.mailbox_fill import delete_folder, fill_imap

pytestmark = pytest.mark.lab

INBOX_CONTRACT = """version: 1
mailboxes:
  - id: alerts
    folders: [INBOX]
    after_enqueue: {{action: none}}
policy:
  trusted_authserv_id: {authserv}
mailroom: {{via: filesystem}}
"""


def test_a_real_dsn_polled_with_enqueue_marks_the_send_bounced(lab, tmp_path) -> None:
    root, env = own_root(lab, tmp_path)
    (root / "bindings" / "communications.inbox.contract.yaml").write_text(
        INBOX_CONTRACT.format(authserv=lab["authserv_id"])
    )
    title = f"inbox bounce {uuid.uuid4().hex[:10]}"
    code, sent, _ = capability(root, "communications.mail.send", "--from", "alerts", "--to", "gone@spine.test",
                               "--subject", title, "--body", "to nobody\n", "--execute", env=env)  # fmt: skip
    assert code == 0, sent["summary"]
    send_id, message_id = sent["data"]["send_id"], sent["data"]["message_id"]

    # Poll until the DSN has come back and was matched (Postfix mails it within a second or two).
    noted = matched = errors = 0
    deadline = time.monotonic() + 90
    while True:
        code, env_poll, _ = run(root, "--enqueue", "--mailbox", "alerts", env=env)
        assert code == 0, env_poll["summary"]
        bounces = env_poll["data"]["bounces"]
        noted, matched, errors = noted + bounces["noted"], matched + bounces["matched"], errors + bounces["errors"]
        if matched or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert matched >= 1 and noted >= matched and errors == 0, env_poll["data"]["bounces"]
    assert env_poll["data"]["mailboxes"][0]["bounces"] == bounces  # the total is the sum over mailboxes
    record = records(tmp_path)[send_id]
    assert record["status"] == "bounced" and record["bounced_recipients"] == ["gone@spine.test"]
    # Postfix took our ENVID (it offers DSN) and quoted it in the DSN: the match needs nothing else.
    assert record["attempts"][-1]["envelope_id"] is True
    assert [(d["correlated_by"], d["verified"]) for d in record["dsn"]] == [("envelope_id", True)], record["dsn"]
    # The DSN itself is an item like any other mail, classified as a bounce of our message. (alerts@
    # may hold other tests' DSNs too; the outbox adds a notice item of its own, `mail-bounce`.)
    ours = []
    for path in items(tmp_path)["queued"]:
        text = path.read_text()
        if "__email_received__" not in path.name or "**Classification:** bounce" not in text:
            continue
        stored = re.search(r"^- Normalized message \(\.json\): (.+)$", text, re.M).group(1)
        details = json.loads(Path(stored).read_text())["classification"]["details"]
        if details.get("original_message_id") == message_id:
            ours.append(path)
    assert len(ours) == 1, f"the DSN was enqueued {len(ours)} times"
    assert any("__mail-bounce__" in p.name for p in items(tmp_path)["queued"])


def _dsn(original_id: str, recipient: str) -> bytes:
    boundary = "dsn-boundary-1"
    return (
        "From: MAILER-DAEMON@mail.spine.test (Mail Delivery System)\r\n"
        "To: sink@spine.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn.{uuid.uuid4().hex}@mail.spine.test>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mail.spine.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: sink@spine.test\r\nTo: {recipient}\r\nMessage-ID: {original_id}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _dsn_folder(lab, lab_root, tmp_path) -> tuple[str, str, Path]:
    """A new folder of sink@ holding one DSN, and a root that polls it: (folder, the original's id, root)."""
    folder = f"Bounce{uuid.uuid4().hex[:8]}"
    original = f"<orig.{uuid.uuid4().hex[:8]}@spine.test>"
    fill_imap(lab, "sink", folder, [_dsn(original, "nobody@example.org")], connections=1)
    return folder, original, make_root(tmp_path, lab, lab_root, folders=[folder])


def test_a_failing_outbox_never_stops_the_intake(lab, lab_root, tmp_path, monkeypatch) -> None:
    from spine_comms.inbox.pipeline import process_new
    from spine_comms.outbox import bounces as outbox_bounces
    from spine_comms.protocols.imap import session

    folder, original, root = _dsn_folder(lab, lab_root, tmp_path)
    calls: list[dict] = []

    def broken(state_root: Path, normalized: dict, *, now):
        details = normalized["classification"]["details"]
        calls.append({"state": state_root, "kind": normalized["classification"]["kind"], "tz": now.tzinfo,
                      "original": details.get("original_message_id")})  # fmt: skip
        raise RuntimeError("the outbox is broken")

    monkeypatch.setattr(outbox_bounces, "note_bounce", broken)
    try:
        ctx, contract, mailbox = in_process(root, monkeypatch)
        with session(mailbox.imap) as imap:
            outcome = process_new(ctx, contract, mailbox, imap)
        assert outcome.error is None and outcome.total("enqueued") == 1
        assert outcome.bounces() == {"noted": 0, "matched": 0, "errors": 1}
        assert calls == [{"state": ctx.mailroom.state, "kind": "bounce", "tz": calls[0]["tz"], "original": original}]
        assert calls[0]["tz"] is not None  # timezone-aware, as the outbox expects
        # Committed all the same: a second poll finds nothing new and does not call the outbox again.
        with session(mailbox.imap) as imap:
            again = process_new(ctx, contract, mailbox, imap)
        assert again.total("new") == 0 and len(calls) == 1
        (item,) = items(root)["queued"]
        assert "**Classification:** bounce" in item.read_text()
    finally:
        delete_folder(lab, "sink", folder)


def test_a_dsn_is_noted_before_its_marker_so_a_rerun_after_a_failed_marker_notes_it_again(
    lab, lab_root, tmp_path, monkeypatch
) -> None:
    """The gap a kill between the markers and note_bounce used to open, made observable: the markers
    fail (as if the process died there); the DSN was noted already, with its item placed and no marker;
    the rerun finds the item ("already in the mailroom"), notes the DSN again and only then marks it."""
    import errno

    from spine_comms.inbox.pipeline import inbox_state_dir, process_new
    from spine_comms.inbox.store import DeliveryIndex
    from spine_comms.outbox import bounces as outbox_bounces
    from spine_comms.protocols.imap import session

    folder, original, root = _dsn_folder(lab, lab_root, tmp_path)
    calls: list[dict] = []

    def seen(state_root: Path, normalized: dict, *, now):
        identity = normalized["spine_comms"]["identity"]
        calls.append({"original": normalized["classification"]["details"].get("original_message_id"),
                      "items": sum(len(v) for v in items(root).values()),
                      "marked": DeliveryIndex(state_dir, "sink").get(identity) is not None})  # fmt: skip
        return None

    real_link = DeliveryIndex.link

    def no_room(self, identity, normalized):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path(identity)))

    monkeypatch.setattr(outbox_bounces, "note_bounce", seen)
    monkeypatch.setattr(DeliveryIndex, "link", no_room)
    try:
        ctx, contract, mailbox = in_process(root, monkeypatch)
        state_dir = inbox_state_dir(ctx, contract)
        with session(mailbox.imap) as imap:
            first = process_new(ctx, contract, mailbox, imap)
        # The markers failed, the item is in the mailroom: the report counts it, and says it is not marked yet.
        assert first.error is not None and first.total("enqueued") == 1
        assert first.error.get("disk_full") and "without their delivery markers" in first.error["error"]
        assert calls == [{"original": original, "items": 1, "marked": False}]  # noted, item placed, no marker

        monkeypatch.setattr(DeliveryIndex, "link", real_link)
        with session(mailbox.imap) as imap:
            again = process_new(ctx, contract, mailbox, imap)
        assert again.error is None and again.total("duplicates") == 1 and again.bounces()["noted"] == 1
        assert calls[1:] == [{"original": original, "items": 1, "marked": False}]  # noted again, then marked
        with session(mailbox.imap) as imap:
            third = process_new(ctx, contract, mailbox, imap)
        assert third.total("new") == 0 and len(calls) == 2  # marked now: never noted a third time
        assert len(items(root)["queued"]) == 1
    finally:
        delete_folder(lab, "sink", folder)
