"""The drain names an item's file from its message's headers: one value each, or the message is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spine_comms.mailroom.drain import _place
from spine_comms.mailroom.filesystem import Mailroom
from spine_comms.mailroom.jetstream import RUN_ID_HEADER, SESSION_HEADER, SLUG_HEADER

GOOD = {SESSION_HEADER: "S20261206-050000", SLUG_HEADER: "email_received", RUN_ID_HEADER: "Rabc123def456"}


def message(headers):
    return SimpleNamespace(headers=headers, data=b"---\nkind: test\n---\nhello\n")


def test_single_values_place_the_item(tmp_path):
    path, existed, refused = _place(Mailroom(tmp_path), message(GOOD))
    assert refused is None and not existed and path.name.endswith("__Rabc123def456.md")


def test_a_value_given_twice_alike_is_that_value(tmp_path):
    # nats-py hands a header sent more than once as a list of its values.
    headers = {**GOOD, SLUG_HEADER: ["email_received", "email_received"]}
    path, _, refused = _place(Mailroom(tmp_path), message(headers))
    assert refused is None and "email_received" in path.name


@pytest.mark.parametrize("name", [SESSION_HEADER, SLUG_HEADER, RUN_ID_HEADER])
def test_two_different_values_are_refused_never_guessed(tmp_path, name):
    headers = {**GOOD, name: [GOOD[name], "Rother999"]}
    path, _, refused = _place(Mailroom(tmp_path), message(headers))
    assert path is None and "repeated" in refused
    assert not any(tmp_path.rglob("*.md"))
