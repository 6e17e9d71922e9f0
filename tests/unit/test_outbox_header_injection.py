"""Header injection through what the mail library decodes (RFC 2047 encoded words) and through ids of
received messages: refused before anything is written, and never folded by hand."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest

from spine_comms.core.errors import UsageError
from spine_comms.outbox.compose import Draft, build, check_header, check_message_id

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def _build(**kw) -> bytes:
    return build(Draft(sender="ops@spine.test", to=["a@spine.test"], **kw), message_id="<m@spine.test>", now=NOW)


@pytest.mark.parametrize(
    "subject",
    [
        "=?utf-8?q?hi=0D=0AReply-To:_evil@x.example=0D=0ABcc:_b@x.example?=",
        "=?UTF-8?Q?hi=0AX-Injected:_1?=",
        "=?utf-8?b?aGkNCkJjYzogeEB5Lno=?=",  # base64 of "hi\r\nBcc: x@y.z"
        "ok =?iso-8859-1?q?=0D=0A=0D=0Abody?= tail",  # a blank line would push the real headers into the body
        "=?utf-8?q?a=00b?=",
        "=?utf-8?q?a=E2=80=A8b?=",  # U+2028, a line separator to some readers
        "=?utf-8*en?q?a=0Db?=",  # RFC 2231 language tag
    ],
)
def test_an_encoded_control_character_is_refused(subject):
    with pytest.raises(UsageError, match="header injection"):
        _build(subject=subject)
    with pytest.raises(UsageError, match="header injection"):
        check_header("--subject", subject)


@pytest.mark.parametrize("subject", ["=?utf-8?q?caf=C3=A9?=", "café ✓ " + "long words " * 30, "plain", ""])
def test_an_honest_subject_is_sent_with_no_other_header_and_folded_by_the_library(subject):
    raw = _build(subject=subject)
    head = raw.split(b"\r\n\r\n", 1)[0]
    message = email.message_from_bytes(raw, policy=policy.default)
    assert [k for k, _ in message.items()] == ["From", "To", "Subject", "Date", "Message-ID", "X-Spine-Agent",
                                               "Content-Type", "Content-Transfer-Encoding", "MIME-Version"]  # fmt: skip
    assert str(message["Subject"]) == str(policy.default.header_factory("Subject", subject))
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


@pytest.mark.parametrize(
    "bad", ["<=?utf-8?q?=0D=0ABcc:_x@y?=@a>", "<a b@c>", "<a@b>\r\nBcc: x@y", "a@b", "<a@b> <c@d>"]
)
def test_a_received_message_id_that_is_not_plain_is_refused_as_in_reply_to(bad):
    with pytest.raises(UsageError):
        _build(subject="re", in_reply_to=bad)
    with pytest.raises(UsageError):
        check_message_id("In-Reply-To", bad)


def test_references_of_a_received_message_that_are_not_plain_are_left_out():
    hostile = ["<r1@ex.net>", "<=?utf-8?q?=0D=0A=0D=0A?=@a>", "<x\r\nBcc: v@y>", "<[1.2.3.4]@x>"]
    raw = _build(subject="re", in_reply_to="<orig@ex.net>", references=hostile)
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["References"] == "<r1@ex.net> <orig@ex.net>" and message["Bcc"] is None
    assert check_message_id("In-Reply-To", "<a.b@[192.0.2.1]>") == "<a.b@[192.0.2.1]>"


def test_an_injected_agent_name_from_the_contract_is_refused():
    with pytest.raises(UsageError, match="header injection"):
        build(Draft(sender="ops@spine.test", to=["a@spine.test"], agent="=?utf-8?q?x=0D=0ABcc:_v@y?="),
              message_id="<m@spine.test>", now=NOW)  # fmt: skip
