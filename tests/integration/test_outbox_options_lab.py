"""The send's extended options and the outbox's limits against the lab: a reply threaded to a stored
inbound message, HTML with attachments through Postfix, the attachment cap, time to live and
maximum attempts enforced by flush (each giving up with a bounce notice)."""

from __future__ import annotations

import email
import json
import uuid
from email import policy

import pytest

from tests.integration.test_outbox_support import own_root, records, run

pytestmark = pytest.mark.lab
SEND = "communications.mail.send"


def test_reply_threads_to_a_stored_inbound_message(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    stored = tmp_path / "mailroom" / "state" / "communications" / "inbox" / "messages" / "ab"
    stored.mkdir(parents=True)
    original = {"message_id": "<question-1@example.net>", "references": ["<thread-0@example.net>"], "subject": "Q"}
    (stored / f"{'ab' * 32}.json").write_text(json.dumps(original))
    code, _, err = run(root, SEND, "--to", "sink@spine.test", "--subject", "Re: Q", "--body", "x",
                       "--in-reply-to", "<never-seen@example.net>", env=env)  # fmt: skip
    assert code == 2 and "not a stored inbound message" in err
    title = f"Re: Q {uuid.uuid4().hex[:8]}"
    code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", title, "--body", "answer\n",
                         "--in-reply-to", "question-1@example.net", "--execute", env=env)  # fmt: skip
    assert code == 0, err
    found = read_mailbox("sink", wait_for=out["data"]["message_id"])
    raw = next(m for m in found if out["data"]["message_id"].encode() in m)
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["In-Reply-To"] == "<question-1@example.net>"
    assert msg["References"] == "<thread-0@example.net> <question-1@example.net>"


def test_html_and_attachments_arrive_as_sent_and_the_cap_is_enforced(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path, "version: 1\nlimits: {max_attachment_bytes: 2048}\n")
    html = tmp_path / "body.html"
    html.write_text("<p>Report</p>")
    small = tmp_path / "report.csv"
    small.write_text("host,used\ndb1,92\n")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 4096)
    code, _, err = run(root, SEND, "--to", "sink@spine.test", "--subject", "big", "--body", "x", "--attach", str(big),
                       "--execute", env=env)  # fmt: skip
    assert code == 2 and "over the limit" in err and records(tmp_path) == {}
    code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", f"report {uuid.uuid4().hex[:8]}",
                         "--body", "see attached\n", "--html-file", str(html), "--attach", str(small), "--execute",
                         env=env)  # fmt: skip
    assert code == 0, err
    found = read_mailbox("sink", wait_for=out["data"]["message_id"])
    msg = email.message_from_bytes(next(m for m in found if out["data"]["message_id"].encode() in m),
                                   policy=policy.default)  # fmt: skip
    kinds = [part.get_content_type() for part in msg.walk()]
    assert kinds[:4] == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html"]
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "report.csv" and attachment.get_content_type() == "text/csv"
    assert attachment.get_content() == "host,used\ndb1,92\n"


@pytest.mark.parametrize(
    "change, final, why",
    [
        ({"created_at": "2020-01-01T00:00:00Z"}, "expired", "time_to_live_seconds"),
        ({"attempts": [{"n": i, "outcome": "transient"} for i in range(1, 6)]}, "failed", "max_attempts"),
    ],
)
def test_flush_gives_up_past_ttl_or_max_attempts(lab, tmp_path, change, final, why):
    root, env = own_root(lab, tmp_path)
    out = run(root, SEND, "--to", "flaky@spine.test", "--subject", f"limits {uuid.uuid4().hex[:8]}", "--body", "x",
              "--execute", env=env)[1]["data"]  # fmt: skip
    assert out["status"] == "deferred"
    path = tmp_path / "mailroom" / "state" / "outbox" / "sends" / f"{out['send_id']}.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, **change}))
    code, flushed, _ = run(root, "communications.outbox.flush", "--ignore-backoff", env=env)
    assert code == 1
    (entry,) = flushed["data"]["sends"]
    assert entry["status"] == final and why in entry["last_error"]
    assert len(records(tmp_path)[out["send_id"]]["attempts"]) == len(change.get("attempts", record["attempts"]))
    assert len(list((tmp_path / "mailroom" / "inbox" / "queued").glob("*mail-bounce*.md"))) == 1


def test_a_held_send_is_left_alone_by_flush_and_send(lab, tmp_path):
    from spine_comms.outbox.store import OutboxStore

    root, env = own_root(lab, tmp_path)
    args = ("--to", "flaky@spine.test", "--subject", f"held {uuid.uuid4().hex[:8]}", "--body", "x", "--execute")
    out = run(root, SEND, *args, env=env)[1]["data"]
    store = OutboxStore(tmp_path / "mailroom" / "state")
    with store.locked(out["send_id"]) as held:  # as another flush in the middle of an attempt would
        assert held
        flushed = run(root, "communications.outbox.flush", "--ignore-backoff", env=env)[1]
        again = run(root, SEND, *args, env=env)[1]
    assert flushed["data"]["sends"] == [{"send_id": out["send_id"], "status": "deferred", "busy": True}]
    assert again["data"]["in_progress"] is True and again["status"] == "warn"
    assert len(records(tmp_path)[out["send_id"]]["attempts"]) == 1


def test_bcc_is_delivered_but_never_in_the_headers(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    out = run(root, SEND, "--to", "sink@spine.test", "--bcc", "alerts@spine.test", "--subject",
              f"bcc {uuid.uuid4().hex[:8]}", "--body", "x", "--execute", env=env)[1]["data"]  # fmt: skip
    needle = out["message_id"].encode()
    for user in ("sink", "alerts"):
        (copy,) = [m for m in read_mailbox(user, wait_for=needle) if needle in m]
        msg = email.message_from_bytes(copy, policy=policy.default)
        assert msg["Bcc"] is None and msg["To"] == "sink@spine.test" and msg["Cc"] is None
        assert b"alerts@spine.test" not in copy.split(b"\r\n\r\n", 1)[0].split(b"\r\nFrom: ", 1)[1]
