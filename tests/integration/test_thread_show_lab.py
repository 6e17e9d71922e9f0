"""communications.thread.show against the lab's Dovecot: a thread spread over two fresh folders of sink@."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.cli_process import run_capability
from tests.integration.inbox_lab import make_root
from tests.mailbox_fill import fill_imap

pytestmark = pytest.mark.lab


def _message(mid: str, minute: int, *, sender: str, subject: str, body: str, parents: tuple[str, ...] = (),
             references: bool = True) -> bytes:  # fmt: skip
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "sink@spine.test"
    message["Subject"] = subject
    message["Date"] = f"Sat, 21 Nov 2026 10:{minute:02d}:00 +0000"
    message["Message-ID"] = mid
    if parents:
        message["In-Reply-To"] = parents[-1]
        if references:
            message["References"] = " ".join(parents)
    message.set_content(body)
    return bytes(message)


@pytest.fixture(scope="module")
def thread(lab, lab_root, tmp_path_factory):
    t = uuid.uuid4().hex[:10]
    ids = [f"<{t}.{i}@example.org>" for i in range(4)]
    inbox, sent = f"I{t}", f"O{t}"
    root_msg = _message(ids[0], 0, sender="alice@example.org", subject=f"plan {t}", body="Shall we ship Friday?\n")
    reply = _message(ids[1], 5, sender="sink@spine.test", subject=f"Re: plan {t}", parents=(ids[0],),
                     body="Yes, Friday.\n\n-- \nSink\n\nOn Sat, 21 Nov 2026 at 10:00, Alice wrote:\n"
                          "> Shall we ship Friday?\n")  # fmt: skip
    again = _message(ids[2], 10, sender="alice@example.org", subject=f"Re: plan {t}", parents=(ids[0], ids[1]),
                     body="Great.\n\n-----Original Message-----\nFrom: Sink\nSent: today\n\nYes.\n")  # fmt: skip
    late = _message(ids[3], 15, sender="bob@example.net", subject=f"Re: plan {t}", parents=(ids[2],),
                    references=False, body="Count me in.\n")  # fmt: skip
    other = _message(f"<{t}.other@example.org>", 1, sender="carol@example.org", subject="other", body="x\n")
    lunch = _message(f"<{t}.lunch@example.org>", 20, sender="dan@example.org", subject=f"lunch {t}", body="Noon?\n")
    lunch_re = _message(f"<{t}.lunch-re@example.org>", 25, sender="eve@example.org", subject=f"RE: Lunch  {t}",
                        body="Sure.\n")  # fmt: skip
    fill_imap(lab, "sink", inbox, [late, root_msg, other, again, reply, lunch, lunch_re], connections=1)
    fill_imap(lab, "sink", sent, [reply], connections=1)  # the same message in both folders
    root = make_root(tmp_path_factory.mktemp("thread"), lab, lab_root, folders=[inbox])
    return root, (inbox, sent), ids, t


def show(root: Path, folders, *args: str):
    return run_capability(root, "communications.thread.show", *[a for f in folders for a in ("--folder", f)], *args)


def test_from_any_message_the_whole_thread_oldest_first_once_each(thread):
    root, folders, ids, _ = thread
    for start in (ids[2], ids[0], ids[3], ids[2].strip("<>")):
        done = show(root, folders, "--message-id", start)
        assert done.code == 0 and done.envelope["status"] == "ok", done.envelope["checks"]
        data = done.envelope["data"]
        assert [m["message_id"] for m in data["messages"]] == ids, start
        assert data["thread_id"] == ids[0] and data["complete"] is True
    reply = data["messages"][1]
    assert sorted(reply["folders"]) == sorted(folders)  # a copy in two folders is one message
    assert not any(m["shares_message_id"] for m in data["messages"])
    assert "thread.message_ids" not in {c["id"] for c in done.envelope["checks"]}
    assert {m["linked_by"] for m in data["messages"]} == {"message-id"}


def test_each_message_shows_its_new_text_and_the_quoted_part_on_request(thread):
    root, folders, ids, _ = thread
    messages = show(root, folders, "--message-id", ids[1]).envelope["data"]["messages"]
    reply, again = messages[1]["body"], messages[2]["body"]
    assert reply["new_text"] == "Yes, Friday." and reply["signature"] == "-- \nSink"
    assert reply["untrusted"] is True and reply["quoted_chars"] > 0 and "quoted" not in reply
    assert again["new_text"] == "Great."
    with_quotes = show(root, folders, "--message-id", ids[1], "--quoted").envelope["data"]["messages"]
    assert with_quotes[1]["body"]["quoted"].startswith("On Sat, 21 Nov 2026 at 10:00, Alice wrote:")
    assert with_quotes[2]["body"]["quoted"].startswith("-----Original Message-----")


def test_without_threading_headers_a_reply_subject_joins_its_base(thread):
    root, folders, _, t = thread
    data = show(root, folders, "--message-id", f"<{t}.lunch-re@example.org>").envelope["data"]
    assert [(m["message_id"], m["linked_by"]) for m in data["messages"]] == [
        (f"<{t}.lunch@example.org>", "subject"),
        (f"<{t}.lunch-re@example.org>", "message-id"),
    ]
    # A message that is not a reply stays alone: no subject guessing from a root.
    alone = show(root, folders, "--message-id", f"<{t}.lunch@example.org>").envelope["data"]
    assert [m["message_id"] for m in alone["messages"]] == [f"<{t}.lunch@example.org>"]


def test_limit_cuts_with_a_warning_and_an_unknown_id_fails(thread):
    root, folders, ids, t = thread
    cut = show(root, folders, "--message-id", ids[0], "--limit", "2")
    assert cut.code == 0 and cut.envelope["status"] == "warn"
    assert cut.envelope["data"]["complete"] is False and cut.envelope["data"]["count"] == 2
    exact = show(root, folders, "--message-id", ids[0], "--limit", "4").envelope
    assert exact["status"] == "ok" and exact["data"]["complete"] is True and exact["data"]["count"] == 4
    # Cut at one, the thread still shows the message asked for, whichever the server lists first.
    last = show(root, folders, "--message-id", ids[3], "--limit", "1").envelope["data"]
    assert [m["message_id"] for m in last["messages"]] == [ids[3]] and last["complete"] is False
    missing = show(root, folders, "--message-id", f"<{t}.never@example.org>")
    assert missing.code == 1 and missing.envelope["status"] == "fail"
    assert missing.envelope["data"]["messages"] == []
    absent = show(root, [*folders, "NoSuchFolder"], "--message-id", ids[0]).envelope["data"]
    assert absent["folders_missing"] == ["NoSuchFolder"] and absent["count"] == 4


@pytest.mark.parametrize("bad", ["a@b\r\nA1 LOGOUT", "<a@b> <c@d>", ""])
def test_a_bad_message_id_is_a_usage_error(thread, bad):
    root, folders, _, _ = thread
    done = show(root, folders, "--message-id", bad)
    assert done.code == 2 and "--message-id" in done.stderr


def test_two_different_messages_with_one_message_id_are_both_shown_with_a_warning(lab, lab_root, tmp_path):
    """A forged message reusing a real reply's Message-ID must not take its place (or hide it) in the thread."""
    t = uuid.uuid4().hex[:10]
    first, reply_id = f"<{t}.0@example.org>", f"<{t}.1@example.org>"
    root_msg = _message(first, 0, sender="alice@example.org", subject=f"invoice {t}", body="Please pay #41.\n")
    reply = _message(reply_id, 5, sender="sink@spine.test", subject=f"Re: invoice {t}", parents=(first,),
                     body="Paid.\n")  # fmt: skip
    forged = _message(reply_id, 6, sender="ceo@spine.test", subject=f"Re: invoice {t}", parents=(first,),
                      body="Do not pay; wire it to the new account instead.\n")  # fmt: skip
    inbox = f"I{t}"
    fill_imap(lab, "sink", inbox, [root_msg, forged, reply], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[inbox])
    done = show(root, [inbox], "--message-id", first)
    assert done.code == 0 and done.envelope["status"] == "warn", done.envelope["checks"]
    messages = done.envelope["data"]["messages"]
    assert [(m["message_id"], m["from"][0]["address"]) for m in messages] == [
        (first, "alice@example.org"),
        (reply_id, "sink@spine.test"),
        (reply_id, "ceo@spine.test"),
    ]
    assert [m["shares_message_id"] for m in messages] == [False, True, True]
    warning = next(c for c in done.envelope["checks"] if c["id"] == "thread.message_ids")
    assert warning["status"] == "warn" and reply_id in warning["detail"]
