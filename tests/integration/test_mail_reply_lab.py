"""Reply, reply-all and forward on communications.mail.send, against the lab's Dovecot (the original, read from
ops@'s own folder) and Postfix (the answer, delivered to sink@ and read back there)."""

from __future__ import annotations

import uuid
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from tests.integration.test_outbox_support import own_root, records, run
from tests.mailbox_fill import fill_imap

pytestmark = pytest.mark.lab
SEND = "communications.mail.send"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


def _original(mid: str, *, subject: str, sender="sink@spine.test", to="ops@spine.test", cc=None, reply_to=None,
              references=None, in_reply_to=None, attach=False) -> bytes:  # fmt: skip
    message = EmailMessage()
    message["From"] = f"Sink Person <{sender}>"
    message["To"] = to
    if cc:
        message["Cc"] = cc
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = "Sat, 05 Dec 2026 09:00:00 +0000"
    message["Message-ID"] = mid
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    message.set_content("Can you send the report?\nThanks\n")
    if attach:
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="q3 report.pdf")
    return bytes(message)


@pytest.fixture(scope="module")
def originals(lab):
    t = uuid.uuid4().hex[:10]
    folder = f"Reply{t}"
    ids = {name: f"<{t}.{name}@example.org>" for name in ("plain", "all", "replyto", "attached", "own")}
    chain = f"<{t}.root@example.org> <{t}.mid@x.org>"
    everyone = {"to": "ops@spine.test, alerts@spine.test", "cc": "noreply@spine.test, OPS@spine.test, sink@spine.test"}
    messages = [
        _original(ids["plain"], subject=f"RE: Re: AW: report {t}", references=chain, in_reply_to=f"<{t}.mid@x.org>"),
        _original(ids["all"], subject=f"team {t}", **everyone),
        _original(ids["replyto"], subject=f"list {t}", reply_to="alerts@spine.test", in_reply_to=f"<{t}.p@x.org>"),
        _original(ids["attached"], subject=f"FW: numbers {t}", attach=True),
        _original(ids["own"], subject=f"sent by us {t}", sender="ops@spine.test", to="sink@spine.test"),
    ]
    fill_imap(lab, "ops", folder, messages, connections=1)
    return folder, ids, t


def _received(read_mailbox, sent: dict):
    mid = sent["data"]["message_id"]
    raw = next(m for m in read_mailbox("sink", wait_for=mid) if mid.encode() in m)
    return message_from_bytes(raw, policy=default)


def _headers(envelope: dict) -> dict[str, str]:
    return {h.split(":", 1)[0].lower(): h.split(":", 1)[1].strip() for h in envelope["data"]["headers"]}


def test_reply_threads_under_the_parent_with_one_re_and_goes_to_the_author(lab, tmp_path, originals, read_mailbox):
    folder, ids, t = originals
    root, env = own_root(lab, tmp_path)
    args = ("--reply", ids["plain"], "--original-folder", folder, "--body", "Here it is.\n")
    code, plan, err = run(root, SEND, *args, env=env)
    assert code == 0, err
    head = _headers(plan)
    assert head["to"] == "sink@spine.test" and head["subject"] == f"Re: report {t}"
    assert head["in-reply-to"] == ids["plain"]
    # RFC 5322 §3.6.4: the parent's References, then the parent's Message-ID.
    assert head["references"].split() == [f"<{t}.root@example.org>", f"<{t}.mid@x.org>", ids["plain"]]
    assert plan["data"]["original"]["message_id"] == ids["plain"] and plan["data"]["original"]["folder"] == folder
    code, sent, err = run(root, SEND, *args, "--execute", env=env)
    assert code == 0 and sent["data"]["status"] == "delivered", err
    got = _received(read_mailbox, sent)
    assert got["In-Reply-To"] == ids["plain"] and got["References"].split()[-1] == ids["plain"]
    assert str(got["Subject"]) == f"Re: report {t}"


def test_reply_all_copies_to_and_cc_less_ourselves_each_address_once(lab, tmp_path, originals, read_mailbox):
    folder, ids, t = originals
    root, env = own_root(lab, tmp_path)
    code, sent, err = run(root, SEND, "--reply-all", ids["all"], "--original-folder", folder, "--body", "ok",
                          "--execute", env=env)  # fmt: skip
    assert code == 0 and sent["data"]["status"] == "delivered", err
    assert sent["data"]["to"] == ["sink@spine.test"]
    assert sent["data"]["cc"] == ["alerts@spine.test", "noreply@spine.test"]  # ops twice, sink again: left out
    assert sorted(a.lower() for a in sent["data"]["original"]["left_out"]) == [
        "ops@spine.test", "ops@spine.test", "sink@spine.test"]  # fmt: skip
    got = _received(read_mailbox, sent)
    assert str(got["Cc"]) == "alerts@spine.test, noreply@spine.test" and str(got["Subject"]) == f"Re: team {t}"


def test_reply_by_uid_honours_reply_to_and_extra_recipients_join(lab, tmp_path, originals, read_mailbox):
    from tests.mailbox_fill import imap_client

    folder, ids, t = originals
    with imap_client(lab, "ops") as imap:
        imap.select_folder(folder, readonly=True)
        (uid,) = imap.search(["HEADER", "Message-ID", ids["replyto"]])
    root, env = own_root(lab, tmp_path)
    code, plan, err = run(root, SEND, "--reply", str(uid), "--original-folder", folder, "--cc", "noreply@spine.test",
                          "--to", "ALERTS@spine.test", env=env)  # fmt: skip
    assert code == 0, err
    assert plan["data"]["to"] == ["alerts@spine.test"] and plan["data"]["cc"] == ["noreply@spine.test"]
    head = _headers(plan)
    # No References on the parent: its single In-Reply-To stands for them (RFC 5322 §3.6.4).
    assert head["references"].split() == [f"<{t}.p@x.org>", ids["replyto"]]
    assert plan["data"]["original"]["uid"] == uid


def test_replying_to_our_own_message_goes_to_its_recipients(lab, tmp_path, originals):
    folder, ids, _ = originals
    root, env = own_root(lab, tmp_path)
    code, plan, err = run(root, SEND, "--reply", ids["own"], "--original-folder", folder, "--body", "x", env=env)
    assert code == 0 and plan["data"]["to"] == ["sink@spine.test"], err


def test_forward_as_attachment_carries_the_message_whole(lab, tmp_path, originals, read_mailbox):
    folder, ids, t = originals
    root, env = own_root(lab, tmp_path)
    code, sent, err = run(root, SEND, "--forward", ids["attached"], "--original-folder", folder, "--to",
                          "sink@spine.test", "--body", "FYI", "--execute", env=env)  # fmt: skip
    assert code == 0 and sent["data"]["status"] == "delivered", err
    got = _received(read_mailbox, sent)
    assert str(got["Subject"]) == f"Fwd: numbers {t}" and got["In-Reply-To"] is None
    assert got["References"].split() == [ids["attached"]]
    (inner_part,) = [p for p in got.walk() if p.get_content_type() == "message/rfc822"]
    inner = inner_part.get_payload(0)
    assert inner["Message-ID"] == ids["attached"]
    (pdf,) = [p for p in inner.walk() if p.get_content_type() == "application/pdf"]
    assert pdf.get_content() == PDF and pdf.get_filename() == "q3 report.pdf"


def test_forward_inline_quotes_the_text_and_reattaches_the_attachments(lab, tmp_path, originals, read_mailbox):
    folder, ids, _ = originals
    root, env = own_root(lab, tmp_path)
    code, sent, err = run(root, SEND, "--forward", ids["attached"], "--original-folder", folder, "--forward-as",
                          "inline", "--to", "sink@spine.test", "--body", "See below", "--execute", env=env)  # fmt: skip
    assert code == 0 and sent["data"]["status"] == "delivered", err
    got = _received(read_mailbox, sent)
    text = got.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("See below\n\n---------- Forwarded message ---------\nFrom: Sink Person <sink@spine.test>")
    assert "Can you send the report?" in text and not any(p.get_content_type() == "message/rfc822" for p in got.walk())
    (pdf,) = [p for p in got.walk() if p.get_content_type() == "application/pdf"]
    assert pdf.get_content() == PDF


def test_reading_the_original_leaves_it_unread(lab, originals):
    from tests.mailbox_fill import imap_client

    folder, _, _ = originals
    with imap_client(lab, "ops") as imap:
        imap.select_folder(folder, readonly=True)
        assert imap.search(["SEEN"]) == []


@pytest.mark.parametrize(
    "args, says",
    [
        (("--reply", "<nothing-here@example.org>"), "no message <nothing-here@example.org>"),
        (("--reply", "999999"), "no message UID 999999"),
        (("--reply", "not an id"), "give a Message-ID"),
        (("--forward", "{plain}"), "--to: at least one recipient"),
        (("--reply", "{plain}", "--forward", "{plain}", "--to", "sink@spine.test"), "give one of"),
        (("--reply", "{plain}", "--original-folder", "NoSuchFolder"), "has no folder 'NoSuchFolder'"),
        (("--reply-all", "{plain}", "--cc", "someone@elsewhere.org"), "outside the allowed domains"),
    ],
)
def test_bad_references_are_refused_before_anything_is_written(lab, tmp_path, originals, args, says):
    folder, ids, _ = originals
    root, env = own_root(lab, tmp_path)
    args = tuple(a.format(plain=ids["plain"]) for a in args)
    if "--original-folder" not in args:
        args += ("--original-folder", folder)
    code, _, err = run(root, SEND, *args, "--body", "x", "--execute", env=env)
    assert code == 2 and says in err, err
    assert records(tmp_path) == {}


def test_a_reply_to_an_outside_sender_is_refused_naming_it(lab, tmp_path):
    t = uuid.uuid4().hex[:10]
    folder = f"Outside{t}"
    mid = f"<{t}@elsewhere.org>"
    fill_imap(lab, "ops", folder, [_original(mid, subject="hi", sender="stranger@elsewhere.org")], connections=1)
    root, env = own_root(lab, tmp_path)
    code, _, err = run(root, SEND, "--reply", mid, "--original-folder", folder, "--body", "x", "--execute", env=env)
    assert code == 2 and "stranger@elsewhere.org" in err and records(tmp_path) == {}


def test_a_message_without_a_message_id_cannot_be_replied_to_but_can_be_forwarded(lab, tmp_path, read_mailbox):
    from tests.mailbox_fill import imap_client

    t = uuid.uuid4().hex[:10]
    folder = f"NoId{t}"
    raw = _original("<x@y>", subject=f"no id {t}").replace(b"Message-ID: <x@y>\n", b"")
    assert b"Message-ID" not in raw
    fill_imap(lab, "ops", folder, [raw], connections=1)
    with imap_client(lab, "ops") as imap:
        imap.select_folder(folder, readonly=True)
        (uid,) = imap.search(["ALL"])
    root, env = own_root(lab, tmp_path)
    code, _, err = run(root, SEND, "--reply", str(uid), "--original-folder", folder, "--body", "x", env=env)
    assert code == 2 and "no usable Message-ID" in err
    code, sent, err = run(root, SEND, "--forward", str(uid), "--original-folder", folder, "--to", "sink@spine.test",
                          "--execute", env=env)  # fmt: skip
    assert code == 0 and sent["data"]["status"] == "delivered", err
    got = _received(read_mailbox, sent)
    assert got["References"] is None and str(got["Subject"]) == f"Fwd: no id {t}"


def test_a_message_id_two_different_messages_carry_is_refused_and_a_uid_picks_one(lab, tmp_path):
    """A forged message reusing a real one's Message-ID, with a Reply-To of its own, must not decide where
    a reply by Message-ID goes; a double delivery of one message is still fine."""
    from tests.mailbox_fill import imap_client

    t = uuid.uuid4().hex[:10]
    folder, mid, twice = f"Forged{t}", f"<{t}.real@example.org>", f"<{t}.twice@example.org>"
    real = _original(mid, subject=f"pay {t}")
    forged = _original(mid, subject=f"pay {t}", reply_to="alerts@spine.test")  # newer, and steering the answer
    copy = _original(twice, subject=f"twice {t}")
    fill_imap(lab, "ops", folder, [real, forged, copy, copy], connections=1)
    with imap_client(lab, "ops") as imap:
        imap.select_folder(folder, readonly=True)
        real_uid, forged_uid = sorted(imap.search(["HEADER", "Message-ID", mid]))
        copies = sorted(imap.search(["HEADER", "Message-ID", twice]))
    root, env = own_root(lab, tmp_path)
    for option in ("--reply", "--reply-all", "--forward"):
        extra = ("--to", "sink@spine.test") if option == "--forward" else ()
        code, _, err = run(root, SEND, option, mid, "--original-folder", folder, "--body", "x", *extra, env=env)
        assert code == 2 and "2 different messages" in err and f"UIDs {real_uid}, {forged_uid}" in err, err
    assert records(tmp_path) == {}
    code, plan, err = run(root, SEND, "--reply", str(real_uid), "--original-folder", folder, "--body", "x", env=env)
    assert code == 0 and plan["data"]["to"] == ["sink@spine.test"], err
    code, plan, err = run(root, SEND, "--reply", twice, "--original-folder", folder, "--body", "x", env=env)
    assert code == 0 and plan["data"]["original"]["uid"] == copies[-1], err
