"""Reply extraction: the cases the PyPI candidates were measured on (spine_comms/mail/reply_split.py), and time."""

from __future__ import annotations

import time

import pytest

from spine_comms.mail.reply_split import split_reply

GMAIL = (
    "Sounds good, see you then.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Alice <alice@example.org> wrote:\n> Can we meet?\n"
)
OUTLOOK_HEADERS = "From: Bob <bob@example.net>\nSent: Monday, November 23, 2026 10:00\nTo: ops@spine.test\n"


@pytest.mark.parametrize(
    ("text", "new", "quoted_starts"),
    [
        (GMAIL, "Sounds good, see you then.", "On Mon, Nov 23"),
        (
            "Yes.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Alice Example <\nalice@example.org> wrote:\n\n> Can we?\n",
            "Yes.",
            "On Mon",
        ),
        ("Approved.\n\n-----Original Message-----\n" + OUTLOOK_HEADERS + "\nPlease approve.\n", "Approved.", "-----"),
        ("Approved.\n\n" + OUTLOOK_HEADERS + "Subject: budget\n\nPlease approve.\n", "Approved.", "From: Bob"),
        (
            "Danke, passt.\n\nAm 23.11.2026 um 10:00 schrieb Alice <alice@example.org>:\n> Passt Dienstag?\n",
            "Danke, passt.",
            "Am 23.11",
        ),
        (
            "Merci.\n\nLe lun. 23 nov. 2026 \u00e0 10:00, Alice <alice@example.org> a \u00e9crit :\n> Mardi ?\n",
            "Merci.",
            "Le lun.",
        ),
        ("Gracias.\n\nEl lun, 23 nov 2026 a las 10:00, Alice escribi\u00f3:\n> Martes?\n", "Gracias.", "El lun"),
        ("Just a new message,\nwith two lines.\n", "Just a new message,\nwith two lines.", ""),
        ("Agreed.\n\n> earlier text\n> more earlier text\n", "Agreed.", "> earlier text"),
        (
            "> Can we meet Tuesday?\nYes, at 10.\n> And the budget?\nApproved.\n",
            "> Can we meet Tuesday?\nYes, at 10.\n> And the budget?\nApproved.",
            "",
        ),
        ("Run this:\n>>> print(1)\nthen tell me.\n", "Run this:\n>>> print(1)\nthen tell me.", ""),
        (
            "First point.\n\nSecond point.\n\nOn Tue, 24 Nov 2026, Bob wrote:\n> x\n",
            "First point.\n\nSecond point.",
            "On Tue",
        ),
        (
            "See below.\n\n---------- Forwarded message ---------\nFrom: Carol <c@example.org>\nDate: today\n\nhi\n",
            "See below.",
            "----------",
        ),
        ("On second thought, no.\nLet us wait.\n", "On second thought, no.\nLet us wait.", ""),
    ],
)
def test_new_text_and_quoted_history(text, new, quoted_starts):
    parts = split_reply(text)
    assert parts.new == new
    assert parts.quoted.startswith(quoted_starts) and bool(parts.quoted) == bool(quoted_starts)


def test_signatures_are_separated_from_the_new_text():
    parts = split_reply("Deploy is done.\n\n-- \nCarol\nOps team\n\nOn Mon, Bob wrote:\n> deploy?\n")
    assert (parts.new, parts.signature) == ("Deploy is done.", "-- \nCarol\nOps team")
    assert parts.quoted == "On Mon, Bob wrote:\n> deploy?"
    mobile = split_reply("On my way.\n\nSent from my iPhone\n")
    assert (mobile.new, mobile.signature, mobile.quoted) == ("On my way.", "Sent from my iPhone", "")
    # A dash line inside the text is not a signature; only "-- " (RFC 3676 4.3) or "--" alone is.
    assert split_reply("a\n---\nb\n").new == "a\n---\nb"


@pytest.mark.parametrize(
    "unit",
    [
        "Am 1 schrieb ",
        "On Mon wrote ",
        "On 1, 2, 3 at ",
        "> x\n",
        "From: a\nSent: b\n",
        "Le 1, a \u00e9crit ",
        "-",
        " ",
        "On\n",
        "schrieb schrieb ",
    ],
)
def test_hostile_bodies_take_linear_time(unit):
    for size in (200_000,):
        text = (unit * (size // len(unit) + 1))[:size]
        started = time.monotonic()
        split_reply(text)
        assert time.monotonic() - started < 1.5, (unit, size)
    for line in ("On " + "x " * 200, ("Am 1 schrieb " * 80)[:990], ("Den 1 skrev " * 90)[:990]):
        text = "\n".join([line] * 200)  # 80 to 200 KB of long would-be attributions, line after line
        started = time.monotonic()
        split_reply(text)
        assert time.monotonic() - started < 1.5, line[:20]
