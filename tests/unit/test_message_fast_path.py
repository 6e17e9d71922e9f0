"""The fast paths of the parser give exactly what the slow, general ones give.

parse_message reads a single-part message by parsing its header section alone and taking
the body as it is; the watcher's secret scan, header lookups and text cleaning have
C-speed paths for ASCII. Each is checked here against the general path it replaces, on
the hostile corpus and on generated messages.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail import message as message_module
from spine_comms.mail.attachments import strip_controls
from spine_comms.mail.message import parse_message

CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpus" / "hostile").glob("*.eml"))


def slow(raw: bytes) -> dict:
    """parse_message with the fast paths (single part, simple multipart) off: the feed parser reads it all."""
    fast = message_module._fast_tree
    message_module._fast_tree = lambda raw: None
    try:
        return parse_message(raw).to_dict()
    finally:
        message_module._fast_tree = fast


def tree(msg) -> list:
    """Everything of a parsed tree the pipeline could read: headers, payloads, preamble, epilogue, defects."""
    out = [msg.items(), msg.preamble, msg.epilogue, [type(d).__name__ for d in msg.defects]]
    payload = msg.get_payload()
    out.append([tree(p) for p in payload] if isinstance(payload, list) else payload)
    return out


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_hostile_corpus_reads_the_same_either_way(path: Path) -> None:
    raw = path.read_bytes()
    assert parse_message(raw).to_dict() == slow(raw)


def test_the_fast_path_is_taken_for_plain_mail_only() -> None:
    plain = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore\r\n"
    assert message_module._fast_tree(plain).get_payload() == "body\r\n\r\nmore\r\n"
    multipart = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n'
    assert [part.get_payload() for part in message_module._fast_tree(multipart).get_payload()] == ["x"]
    assert message_module._fast_tree(b"Content-Type: message/rfc822\n\nFrom: x\n\nbody") is None
    assert message_module._fast_tree(b"From: a\rSubject: bare CR\r\n\r\nbody") is None
    assert message_module._fast_tree(b"From: a\nnot a header line\n\nbody") is None  # a defect: the slow path
    assert message_module._fast_tree(b"From: a\nSubject: no body") is None


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
    assert parse_message(raw).to_dict() == slow(raw)


PART_HEADERS = st.sampled_from([
    "Content-Type: text/plain; charset=utf-8", "Content-Type: text/html", "Content-Type: application/octet-stream",
    'Content-Disposition: attachment; filename="a.bin"', "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable", "Content-Type: message/rfc822", "Content-Type: multipart/mixed",
    "Content-Type: text/plain; name=x.txt", " folded", "no colon", "X-Other: y", "From nobody", "",
])  # fmt: skip
PART_BODY = st.sampled_from(["hello", "aGVsbG8=", "=C3=A9", "<p>x</p>", "--zz", "--zz--", "--zzz", "-- zz", "--zz x",
                             "--zz  ", "--zz--\t", " --zz", "é", "\x00", ""])  # fmt: skip
PARTS = st.lists(st.tuples(st.lists(PART_HEADERS, max_size=3), st.lists(PART_BODY, max_size=4)), max_size=4)


def multipart(top: list[str], preamble: list[str], parts, closing: str, epilogue: list[str], eol: str) -> bytes:
    lines = [*top, "Content-Type: multipart/mixed; boundary=zz", "", *preamble]
    for headers, body in parts:
        lines += ["--zz", *headers, "", *body]
    lines += [closing, *epilogue]
    return eol.join(lines).encode("utf-8", "surrogateescape")


TOPS = st.one_of(st.just(["From: a@example.org"]), st.lists(HEADER_LINES, max_size=4))


@settings(max_examples=500, deadline=None)
@given(TOPS, st.lists(PART_BODY, max_size=3), PARTS,
       st.sampled_from(["--zz--", "--zz-- ", "--zz--x", "", "--zz"]), st.lists(PART_BODY, max_size=2),
       st.sampled_from(["\r\n", "\n", "\r"]))  # fmt: skip
def test_generated_multipart_mail_reads_the_same_either_way(top, preamble, parts, closing, epilogue, eol) -> None:
    raw = multipart(top, preamble, parts, closing, epilogue, eol)
    assert parse_message(raw).to_dict() == slow(raw)
    fast = message_module._fast_tree(raw)
    if fast is not None:  # taken: the very tree the feed parser builds
        assert tree(fast) == tree(email.message_from_bytes(raw, policy=email.policy.compat32))


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_the_multipart_fast_path_builds_the_feed_parsers_tree_on_the_corpus(path: Path) -> None:
    raw = path.read_bytes()
    fast = message_module._fast_tree(raw)
    if fast is not None:
        assert tree(fast) == tree(email.message_from_bytes(raw, policy=email.policy.compat32))


def test_the_multipart_fast_path_is_taken_for_ordinary_mail_with_attachments() -> None:
    from tests.mailbox_fill import make_messages

    with_attachment = [m for i, m in enumerate(make_messages(70, seed=3)) if i % 7 == 6]
    assert len(with_attachment) == 10
    for raw in with_attachment:
        fast = message_module._fast_tree(raw)
        assert fast is not None and len(fast.get_payload()) == 2
        assert tree(fast) == tree(email.message_from_bytes(raw, policy=email.policy.compat32))
        assert parse_message(raw).to_dict() == slow(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\rContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n',
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n',  # no closing boundary
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\nno start boundary\r\n',
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\n--b--\r\n",  # a DSN: structure inside
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: multipart/alternative; '
        b'boundary="c"\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n',  # nested
        b'Content-Type: multipart/digest; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n',
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nno colon\r\n\r\nx\r\n--b--\r\n',  # a defect
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n--b\r\n\r\nx\r\n--b--\r\n',  # empty part
        b'Content-Type: multipart/mixed; boundary="b"\r\nContent-Transfer-Encoding: base64\r\n\r\n--b\r\n\r\n'
        b"x\r\n--b--\r\n",
        b"Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",  # no boundary parameter
    ],
)
def test_the_multipart_fast_path_leaves_what_is_not_plain_to_the_feed_parser(raw: bytes) -> None:
    assert message_module._fast_tree(raw) is None
    assert parse_message(raw).to_dict() == slow(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F)), st.sampled_from(["", "\t", "\t\n"]))
def test_strip_controls_ascii_path_matches_the_general_one(text, keep) -> None:
    import unicodedata

    expected = "".join(ch for ch in text if ch in keep or unicodedata.category(ch) != "Cc")
    assert strip_controls(text, keep=keep) == expected


def _old_line_ending_problems(raw: bytes) -> list[str]:
    """The three counts the fast check replaced, kept here as the reference."""
    problems, head = [], raw[:65536]
    pairs = raw[:65537].count(b"\r\n")
    if head.count(b"\r") > pairs:
        problems.append("bare CR line endings")
    head_pairs = head.count(b"\r\n")
    if head_pairs and head.count(b"\n") > head_pairs:
        problems.append("mixed bare LF and CRLF line endings")
    return problems


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"x" * 1000]), max_size=80), st.integers(0, 65540))
def test_line_ending_check_matches_the_reference(pieces, pad) -> None:
    for raw in (b"".join(pieces), b"y" * pad + b"".join(pieces)):  # CRLF pairs straddling the 64 KiB edge too
        problems: list[str] = []
        message_module._line_ending_problems(raw, problems)
        assert problems == _old_line_ending_problems(raw)


TEXT_CHARS = ["a", " ", "\t", "\n", "\r", "\x00", "\x07", "\x0b", "\x1f", "\x7f", "\x85", "é"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(TEXT_CHARS)))
def test_clean_text_matches_the_regex_it_replaced(text) -> None:
    expected = message_module._CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    assert message_module._clean_text(text, []) == expected


def _all_header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The reference for authresults.header_fields: the header parser given the whole message."""
    import email.parser
    import email.policy

    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return [(str(name), str(value)) for name, value in parsed.items()]


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_header_fields_from_the_header_section_alone_match_the_whole_message_on_the_corpus(path: Path) -> None:
    from spine_comms.mail.authresults import header_fields

    raw = path.read_bytes()
    assert header_fields(raw) == _all_header_fields(raw)


@settings(max_examples=500, deadline=None)
@given(st.lists(HEADER_LINES, max_size=8), st.lists(st.tuples(BODY_PIECES, BREAKS), max_size=12), BREAKS, BREAKS,
       st.sampled_from(["", "\r", "\n", "\r\n", "\n\r", "\r\r"]))  # fmt: skip
def test_header_fields_from_the_header_section_alone_match_on_generated_mail(headers, body, eol, separator, tail):
    """Every mix of line endings, folded lines, a line that is no header, and a message cut anywhere."""
    from spine_comms.mail.authresults import header_fields

    text = eol.join(headers) + eol + separator + "".join(p + b for p, b in body) + tail
    raw = text.encode("utf-8", "surrogateescape")
    for cut in (len(raw), len(raw) // 2, len(raw) // 3):
        assert header_fields(raw[:cut]) == _all_header_fields(raw[:cut])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(["\r", "\n", "a", " ", "\x00", "é"]), max_size=60))
def test_clean_text_line_breaks_read_as_the_plain_replacements_do(text) -> None:
    reference = text.replace("\r\n", "\n").replace("\r", "\n")
    assert message_module._clean_text(text, []) == message_module._clean_text(reference, [])
    assert "\r" not in message_module._clean_text(text, [])
