"""Bounces that come back as mail: a real DSN from the lab's Postfix, correlated to its send.

gone@spine.test passes Postfix's recipient check, then Dovecot's LMTP refuses it (no such
user), so Postfix returns a DSN to the sender after the submission was accepted: the
"accepted, then bounced" path. The sender is alerts@ (its INBOX is nobody else's test data).
The DSN is fetched over IMAP, parsed by the inbox pipeline's parser and given to note_bounce
exactly as the pipeline does.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spine_comms.mail.message import parse_message
from spine_comms.outbox.bounces import apply_pending, note_bounce
from tests.integration.test_outbox_support import log_lines, own_root, records, run

pytestmark = pytest.mark.lab


def _dsn_for(read_mailbox, message_id: str) -> bytes:
    found = read_mailbox("alerts", wait_for=lambda msgs: any(message_id.encode() in m and b"delivery-status" in m
                                                             for m in msgs), timeout=60)  # fmt: skip
    return next(m for m in found if message_id.encode() in m and b"delivery-status" in m)


def test_real_dsn_marks_the_send_bounced_and_notifies_the_sender(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    title = f"outbox bounce {uuid.uuid4().hex[:10]}"
    code, out, err = run(root, "communications.mail.send", "--from", "alerts", "--to", "gone@spine.test",
                         "--subject", title, "--body", "to nobody\n", "--execute", env=env)  # fmt: skip
    assert code == 0, err
    send_id, message_id = out["data"]["send_id"], out["data"]["message_id"]
    assert out["data"]["status"] == "delivered"  # accepted: the failure comes later, as mail

    normalized = parse_message(_dsn_for(read_mailbox, message_id)).to_dict()
    assert normalized["classification"]["kind"] == "bounce"
    state = tmp_path / "mailroom" / "state"
    now = datetime.now(UTC)
    assert note_bounce(state, normalized, now=now) == send_id
    record = records(tmp_path)[send_id]
    assert record["status"] == "bounced" and record["bounced_recipients"] == ["gone@spine.test"]
    # Postfix took the send's ENVID (RFC 3461) and quoted it: the DSN is tied to this very transaction.
    assert normalized["classification"]["details"]["original_envelope_id"] == record["envelope_id"]
    assert (record["dsn"][0]["correlated_by"], record["dsn"][0]["verified"]) == ("envelope_id", True)
    assert log_lines(tmp_path)[-1]["status"] == "failed" and log_lines(tmp_path)[-1]["outcome"] == "bounced"
    items = list((tmp_path / "mailroom" / "inbox" / "queued").glob("*mail-bounce*.md"))
    assert len(items) == 1
    text = items[0].read_text()
    assert send_id in text and "```untrusted-bounce" in text and "UNTRUSTED" in text

    # The same DSN again (a re-poll): nothing changes, no second notice.
    assert note_bounce(state, normalized, now=now) == send_id
    assert len(records(tmp_path)[send_id]["dsn"]) == 1
    assert len(list((tmp_path / "mailroom" / "inbox" / "queued").glob("*mail-bounce*.md"))) == 1
    code, status, _ = run(root, "communications.outbox.status", env=env)
    assert code == 1 and status["data"]["counts"] == {"bounced": 1}


def test_a_dsn_without_the_envelope_id_is_recorded_unverified_and_changes_nothing(lab, tmp_path, read_mailbox):
    """What anyone who saw the message (a recipient) can write: a DSN quoting its Message-ID, or only the
    recipient, but not the random ENVID the send gave its MTA (none, or a guess). Postfix took that ENVID,
    so a real DSN quotes it (RFC 3461 4.4); one without it is recorded as unverified and the send stays
    delivered."""
    root, env = own_root(lab, tmp_path)
    title = f"outbox bounce-rt {uuid.uuid4().hex[:10]}"
    out = run(root, "communications.mail.send", "--from", "alerts", "--to", "gone@spine.test", "--subject", title,
              "--body", "x\n", "--execute", env=env)[1]  # fmt: skip
    send_id = out["data"]["send_id"]
    real = parse_message(_dsn_for(read_mailbox, out["data"]["message_id"])).to_dict()
    state = tmp_path / "mailroom" / "state"
    for n, change in enumerate(({"original_message_id": None}, {})):  # quoting no headers, or the Message-ID
        forged = json.loads(json.dumps(real))
        forged["message_id"] = f"<forged-dsn.{n}@example.net>"
        forged["classification"]["details"].update(change, original_envelope_id=None)
        assert note_bounce(state, forged, now=datetime.now(UTC)) == send_id
    wrong = json.loads(json.dumps(real))
    wrong["message_id"] = "<forged-dsn.guess@example.net>"
    wrong["classification"]["details"]["original_envelope_id"] = "0" * 32  # a guess: not this send's
    assert note_bounce(state, wrong, now=datetime.now(UTC)) == send_id
    record = records(tmp_path)[send_id]
    assert record["status"] == "delivered", record
    assert [(d["kind"], d["correlated_by"], d["verified"]) for d in record["dsn"]] == [
        ("unverified", "recipient_time", False), ("unverified", "message_id", False),
        ("unverified", "message_id", False)]  # fmt: skip
    assert not list((tmp_path / "mailroom" / "inbox" / "queued").glob("*mail-bounce*.md"))
    assert apply_pending(state, now=datetime.now(UTC)) == []  # nothing left pending
    code, status, _ = run(root, "communications.outbox.status", env=env)
    assert code == 0 and status["status"] == "warn" and status["data"]["counts"] == {"delivered": 1}
    warned = [c for c in status["checks"] if c["id"] == "outbox.status.send" and c["subject"] == send_id]
    assert warned and "without the envelope id" in warned[0]["detail"], status["checks"]
    # The real DSN still counts.
    assert note_bounce(state, real, now=datetime.now(UTC)) == send_id
    assert records(tmp_path)[send_id]["status"] == "bounced"


def _pipeline_calls_note_bounce() -> bool:
    inbox = Path(__file__).resolve().parents[2] / "spine_comms" / "inbox"
    return any("note_bounce" in p.read_text() for p in inbox.glob("*.py"))


@pytest.mark.skipif(not _pipeline_calls_note_bounce(), reason="the inbox pipeline does not call note_bounce yet")
def test_inbox_poll_correlates_the_dsn_end_to_end(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    title = f"outbox bounce-e2e {uuid.uuid4().hex[:10]}"
    out = run(root, "communications.mail.send", "--from", "alerts", "--to", "gone@spine.test", "--subject", title,
              "--body", "x\n", "--execute", env=env)[1]["data"]  # fmt: skip
    _dsn_for(read_mailbox, out["message_id"])
    code, _, err = run(root, "communications.inbox.poll", "--enqueue", "--mailbox", "alerts", env=env)
    assert code in (0, 1), err
    record = records(tmp_path)[out["send_id"]]
    assert record["status"] == "bounced" and record["dsn"][0]["correlated_by"] == "envelope_id"
    notices = list((tmp_path / "mailroom" / "inbox" / "queued").glob("*mail-bounce*.md"))
    assert len(notices) == 1 and out["send_id"] in notices[0].read_text()
