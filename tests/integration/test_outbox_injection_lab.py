"""Header injection through RFC 2047 encoded words, against the lab's Postfix and Dovecot: refused before
anything is written, and an honest encoded subject is delivered with no header the toolkit did not set."""

from __future__ import annotations

import email
import uuid
from email import policy

import pytest

from tests.integration.test_outbox_support import log_lines, own_root, records, run

pytestmark = pytest.mark.lab
SEND = "communications.mail.send"


@pytest.mark.parametrize("execute", [True, False])
def test_an_encoded_crlf_in_the_subject_is_refused_by_the_send_and_its_dry_run(lab, tmp_path, read_mailbox, execute):
    root, env = own_root(lab, tmp_path)
    tag = uuid.uuid4().hex[:10]
    subject = f"=?utf-8?q?hi_{tag}=0D=0AReply-To:_evil@spine.test=0D=0AX-Injected:_1=0D=0ABcc:_alerts@spine.test?="
    code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", subject, "--body", "x",
                         *(["--execute"] if execute else []), env=env)  # fmt: skip
    assert code == 2 and "header injection" in err, (out, err)
    assert "X-Injected" not in str(out) and records(tmp_path) == {} and log_lines(tmp_path) == []
    assert not any(tag.encode() in m for m in read_mailbox("sink") + read_mailbox("alerts"))


def test_an_honest_encoded_subject_arrives_with_only_the_headers_set(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    tag = uuid.uuid4().hex[:10]
    code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", f"=?utf-8?q?caf=C3=A9_{tag}?= ✓",
                         "--body", "x\n", "--execute", env=env)  # fmt: skip
    assert code == 0, err
    mid = out["data"]["message_id"]
    raw = next(m for m in read_mailbox("sink", wait_for=mid) if mid.encode() in m)
    message = email.message_from_bytes(raw, policy=policy.default)
    assert str(message["Subject"]) == f"café {tag} ✓"
    assert message["Reply-To"] is None and message["Bcc"] is None and message["X-Injected"] is None
    # Trace and authentication fields the servers add, and exactly what the toolkit set, once each.
    added = {"return-path", "delivered-to", "received", "authentication-results", "dkim-signature"}
    mine = [k for k, _ in message.items() if k.lower() not in added]
    assert mine == ["From", "To", "Subject", "Date", "Message-ID", "X-Spine-Agent", "Content-Type",
                    "Content-Transfer-Encoding", "MIME-Version"]  # fmt: skip
