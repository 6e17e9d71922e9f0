"""The item's From line: a display name that shows another address is called out (display-name spoofing)."""

from __future__ import annotations

import pytest

from spine_comms.inbox.normalize import _sender
from spine_comms.mail.message import parse_message


def sender_line(from_field: str) -> str:
    return _sender(parse_message(f"From: {from_field}\r\nTo: ops@spine.test\r\nSubject: s\r\n\r\nhi\r\n".encode()))


@pytest.mark.parametrize(
    "from_field",
    [
        '"ceo@spine.test" <x@evil.example>',
        "CEO (ceo@spine.test) <x@evil.example>",
        "=?utf-8?q?ceo=40spine=2Etest?= <x@evil.example>",  # the name hidden in an encoded word
        '"CEO via ceo@spine.test, ops@spine.test" <x@evil.example>',
    ],
)
def test_a_name_showing_another_address_says_which_address_sent_it(from_field):
    line = sender_line(from_field)
    assert "ceo@spine.test" in line and line.endswith("but the address is x@evil.example]"), line


@pytest.mark.parametrize(
    "from_field, shown",
    [
        ("Ops <ops@spine.test>", "Ops <ops@spine.test>"),
        ('"OPS@Spine.test" <ops@spine.test>', "OPS@Spine.test <ops@spine.test>"),  # its own address, other case
        ("x@evil.example", "x@evil.example"),
    ],
)
def test_an_honest_name_is_shown_as_it_is(from_field, shown):
    assert sender_line(from_field) == shown
