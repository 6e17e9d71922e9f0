"""The fast paths of the parser give exactly what the slow, general ones give.

parse_message reads a single-part message by parsing its header section alone and taking
the body as it is; the watcher's secret scan, header lookups and text cleaning have
C-speed paths for ASCII. Each is checked here against the general path it replaces, on
the hostile corpus and on generated messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail import message as message_module
from spine_comms.mail.attachments import strip_controls
from spine_comms.mail.message import parse_message

CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpus" / "hostile").glob("*.eml"))


def slow(raw: bytes, monkeypatch) -> dict:
    with monkeypatch.context() as patched:
        patched.setattr(message_module, "_single_part", lambda raw: None)
        return parse_message(raw).to_dict()


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_hostile_corpus_reads_the_same_either_way(path: Path, monkeypatch) -> None:
    raw = path.read_bytes()
    assert parse_message(raw).to_dict() == slow(raw, monkeypatch)


def test_the_fast_path_is_taken_for_plain_single_part_mail_only() -> None:
    plain = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore\r\n"
    assert message_module._single_part(plain).get_payload() == "body\r\n\r\nmore\r\n"
    multipart = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n'
    assert message_module._single_part(multipart) is None
    assert message_module._single_part(b"Content-Type: message/rfc822\n\nFrom: x\n\nbody") is None
    assert message_module._single_part(b"From: a\rSubject: bare CR\r\n\r\nbody") is None
    assert message_module._single_part(b"From: a\nnot a header line\n\nbody") is None  # a defect: the slow path
    assert message_module._single_part(b"From: a\nSubject: no body") is None


HEADER_LINES = st.sampled_from([
    "From: A <a@example.org>", "To: b@example.org, =?utf-8?q?C=C3=A9?= <c@example.org>", "Subject: =?utf-8?b?w6k=?=",
    "Date: Tue, 1 Jul 2025 10:00:00 +0200", "Message-ID: <x@y>", "Content-Type: text/plain; charset=latin-1",
    "Content-Type: text/html", "Content-Type: multipart/mixed; boundary=zz", "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable", "Auto-Submitted: auto-replied", "List-Id: <l.example.org>",
    " folded continuation", "\tfolded tab", "no colon here", "From nobody Mon Jan 1", "X-8bit: caf\xe9",
    "Content-Type: message/delivery-status", "",
])  # fmt: skip
BODY_PIECES = st.sampled_from(["hello", "=C3=A9", "aGVsbG8=", "<p>hi</p>", "--zz", "--zz--", "\x00", "\x0c", "é", " "])
BREAKS = st.sampled_from(["\r\n", "\n", "\r"])


@settings(max_examples=300, deadline=None)
@given(st.lists(HEADER_LINES, max_size=8), st.lists(st.tuples(BODY_PIECES, BREAKS), max_size=12), BREAKS, BREAKS)
def test_generated_messages_read_the_same_either_way(headers, body, eol, separator) -> None:
    raw = (eol.join(headers) + eol + separator + "".join(p + b for p, b in body)).encode("utf-8", "surrogateescape")
    fast = parse_message(raw).to_dict()
    message_module_single_part = message_module._single_part
    try:
        message_module._single_part = lambda raw: None
        assert fast == parse_message(raw).to_dict()
    finally:
        message_module._single_part = message_module_single_part


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F)), st.sampled_from(["", "\t", "\t\n"]))
def test_strip_controls_ascii_path_matches_the_general_one(text, keep) -> None:
    import unicodedata

    expected = "".join(ch for ch in text if ch in keep or unicodedata.category(ch) != "Cc")
    assert strip_controls(text, keep=keep) == expected
