"""mail/reply_forward.py: subjects, References (RFC 5322 §3.6.4) and the recipients of replies."""

from __future__ import annotations

import pytest

from spine_comms.mail.message import Address, NormalizedMessage
from spine_comms.mail.reply_forward import (
    MAX_REFERENCES,
    forward_subject,
    quote_reply,
    references_for,
    reply_recipients,
    reply_subject,
)


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("report", "Re: report"),
        ("Re: report", "Re: report"),
        ("RE: Re: re:report", "Re: report"),
        ("AW: SV: Re[2]: report", "Re: report"),
        ("Re(3): report", "Re: report"),
        ("Fwd: report", "Re: Fwd: report"),
        ("  Re:   two   spaces ", "Re: two spaces"),
        ("", "Re:"),
        ("Regarding: report", "Re: Regarding: report"),  # a word that starts like Re is not a prefix
        ("Area: report", "Re: Area: report"),
    ],
)
def test_reply_subject_has_one_re(subject, expected):
    assert reply_subject(subject) == expected


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("report", "Fwd: report"),
        ("FW: report", "Fwd: report"),
        ("Fwd: Fwd: WG: report", "Fwd: report"),
        ("Re: report", "Fwd: Re: report"),
        ("Fwdx: report", "Fwd: Fwdx: report"),
    ],
)
def test_forward_subject_has_one_fwd(subject, expected):
    assert forward_subject(subject) == expected


def test_references_follow_rfc5322():
    assert references_for("<c@x>", ["<a@x>", "<b@x>"], "<b@x>") == ["<a@x>", "<b@x>", "<c@x>"]
    assert references_for("<c@x>", [], "<b@x>") == ["<b@x>", "<c@x>"]  # no References: the single In-Reply-To
    assert references_for("<c@x>", [], "<a@x> <b@x>") == ["<c@x>"]  # several In-Reply-To ids: none is the parent
    assert references_for("<c@x>", [], None) == ["<c@x>"]
    assert references_for("<c@x>", ["<c@x>"], None) == ["<c@x>"]  # a loop is written once


def test_long_references_keep_the_root_and_the_latest():
    chain = [f"<{i}@x>" for i in range(50)]
    got = references_for("<new@x>", chain, None)
    assert len(got) == MAX_REFERENCES and got[0] == "<0@x>" and got[-1] == "<new@x>" and got[-2] == "<49@x>"


def _message(**fields) -> NormalizedMessage:
    people = {k: [Address("", a) for a in v] for k, v in fields.items()}
    return NormalizedMessage(message_id="<m@x>", **people)


def test_reply_goes_to_reply_to_else_from():
    assert reply_recipients(_message(from_=["a@x"], to=["me@x"]), {"me@x"}, reply_all=False).to == ["a@x"]
    got = reply_recipients(_message(from_=["a@x"], reply_to=["list@x"], to=["me@x"]), {"me@x"}, reply_all=False)
    assert got.to == ["list@x"] and got.cc == []


def test_reply_all_drops_ourselves_and_duplicates_without_case():
    parent = _message(from_=["A@x"], to=["me@x", "b@x", "a@x"], cc=["B@X", "c@x", "ME@X"])
    got = reply_recipients(parent, {"me@x"}, reply_all=True)
    assert got.to == ["A@x"] and got.cc == ["b@x", "c@x"]
    assert sorted(a.lower() for a in got.left_out) == ["a@x", "b@x", "me@x", "me@x"]


def test_a_reply_to_our_own_message_goes_to_its_recipients():
    got = reply_recipients(_message(from_=["me@x"], to=["b@x"], cc=["c@x"]), {"ME@x"}, reply_all=True)
    assert got.to == ["b@x"] and got.cc == ["c@x"]


def test_quote_marks_every_line():
    parent = _message(from_=["a@x"])
    parent.date_utc = "2026-12-05T09:00:00Z"
    assert quote_reply(parent, "one\n\ntwo") == "On 2026-12-05T09:00:00Z, a@x wrote:\n> one\n>\n> two\n"
