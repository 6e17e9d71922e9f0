"""parse_message: the normalized fields, safe attachment names, caps, and that nothing raises."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail.attachments import safe_filename
from spine_comms.mail.authresults import from_headers
from spine_comms.mail.html_text import html_to_text
from spine_comms.mail.message import parse_message

BASIC = (
    b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <Joerg@EXAMPLE.Org>\r\n"
    b'To: ops@spine.test, "Bob, B." <bob@Example.NET>\r\nCc: carol@example.org\r\n'
    b"Reply-To: replies@example.org\r\nSender: bulk@example.org\r\n"
    b"Subject: =?utf-8?b?SGVsbG8=?= =?utf-8?b?IFdvcmxk?= again\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0200\r\nMessage-ID:  <abc@example.org> \r\n"
    b"In-Reply-To: <parent@example.org>\r\nReferences: <root@example.org>\r\n <parent@example.org>\r\n"
    b"\r\nhello\r\n"
)


def message(headers: str = "", body: str | bytes = "hello\r\n", *, base: bool = True) -> bytes:
    head = "From: a@example.org\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m@example.org>\r\n"
    data = ((head if base else "") + headers + "\r\n").encode("utf-8", "surrogateescape")
    return data + (body if isinstance(body, bytes) else body.encode())


def mixed(*parts: str, headers: str = "") -> bytes:
    body = "".join(f"--B\r\n{p}\r\n" for p in parts) + "--B--\r\n"
    return message(headers + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n', body)


def attachment(disposition: str, data: bytes = b"data", ctype: str = "application/octet-stream") -> str:
    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    head = f"Content-Type: {ctype}\r\nContent-Disposition: {disposition}\r\nContent-Transfer-Encoding: base64\r\n"
    return f"{head}\r\n{encoded}"


def test_basic_fields_are_decoded_and_normalized():
    m = parse_message(BASIC)
    assert [(a.name, a.address) for a in m.from_] == [("Jörg Müller", "Joerg@example.org")]
    assert [(a.name, a.address) for a in m.to] == [("", "ops@spine.test"), ("Bob, B.", "bob@example.net")]
    assert [a.address for a in m.cc] == ["carol@example.org"]
    assert [a.address for a in m.reply_to] == ["replies@example.org"]
    assert m.sender is not None and m.sender.address == "bulk@example.org"
    assert m.subject == "Hello World again"  # whitespace between adjacent encoded words dropped
    assert m.date_utc == "2024-01-01T08:00:00Z"
    assert m.message_id == "<abc@example.org>"
    assert m.in_reply_to == "<parent@example.org>"
    assert m.references == ["<root@example.org>", "<parent@example.org>"]
    assert m.thread_id == "<root@example.org>"
    assert m.text == "hello"
    assert m.problems == []
    assert m.classification.kind == "normal"
    assert m.size == len(BASIC)


def test_thread_id_falls_back_to_in_reply_to_then_own_id():
    assert parse_message(message("In-Reply-To: <p@x>\r\n")).thread_id == "<p@x>"
    assert parse_message(message()).thread_id == "<m@example.org>"


def test_missing_message_id_is_a_content_hash_stable_across_relays():
    bare = message("Subject: s\r\n", base=False)
    relayed = b"Received: from relay by mx; Mon, 1 Jan 2024\r\nDelivered-To: ops@spine.test\r\n" + bare
    first, second = parse_message(bare), parse_message(relayed)
    assert first.message_id.startswith("<sha256:") and first.message_id.endswith("@spine-comms>")
    assert first.message_id == second.message_id
    assert parse_message(message("Subject: s\r\n", "other body", base=False)).message_id != first.message_id
    assert any("Message-ID missing" in p for p in first.problems)


def test_message_id_variants():
    assert parse_message(message("Message-ID: x@y\r\n", base=False)).message_id == "<x@y>"
    dup = parse_message(message("Message-ID: <second@x>\r\n"))
    assert dup.message_id == "<m@example.org>"
    assert any("2 Message-ID headers" in p for p in dup.problems)
    assert parse_message(message("Message-ID: a b c\r\n", base=False)).message_id.startswith("<sha256:")


def test_dates():
    assert (
        parse_message(message("Date: Mon, 1 Jan 2024 10:00:00 -0000\r\n", base=False)).date_utc
        == "2024-01-01T10:00:00Z"
    )
    bad = parse_message(message("Date: the day after tomorrow\r\n", base=False))
    assert bad.date_utc is None and any("Date unparseable" in p for p in bad.problems)
    future = parse_message(message("Date: Tue, 01 Jan 2999 00:00:00 +0000\r\n", base=False))
    assert future.date_utc == "2999-01-01T00:00:00Z" and any("future" in p for p in future.problems)
    assert "Date missing" in parse_message(message("Subject: x\r\n", base=False)).problems


def test_encoded_display_name_holding_an_address_stays_a_name():
    spoof = base64.b64encode(b'"CEO" <ceo@bank.example>, x@bank.example').decode()
    m = parse_message(message(f"From: =?utf-8?b?{spoof}?= <attacker@evil.example>\r\n", base=False))
    assert [a.address for a in m.from_] == ["attacker@evil.example"]
    assert "ceo@bank.example" in m.from_[0].name


def test_subject_is_one_line_without_controls_and_capped():
    m = parse_message(message("Subject: =?utf-8?q?a=0D=0ABcc=3A_x=40y=00=1B=E2=80=AEz?=\r\n"))
    assert m.subject == "a Bcc: x@yz"
    long = parse_message(message("Subject: " + "x" * 5000 + "\r\n"))
    assert len(long.subject) == 998


def test_encoded_words_are_decoded_once_and_bad_ones_survive():
    inner = base64.b64encode(b"=?utf-8?q?inner?=").decode()
    assert parse_message(message(f"Subject: =?utf-8?b?{inner}?=\r\n")).subject == "=?utf-8?q?inner?="
    bad = parse_message(message("Subject: =?utf-8?b?!!!?= =?x-nope?q?caf=E9?=\r\n"))
    assert "caf" in bad.subject
    assert any("unknown charset" in p for p in bad.problems)


def test_eight_bit_headers_read_as_utf8():
    raw = b"From: J\xc3\xb6rg <j@example.org>\r\nSubject: \xc3\xa9t\xc3\xa9 caf\xe9\r\n\r\nx"
    m = parse_message(raw)
    assert m.from_[0].name == "Jörg"
    assert m.subject == "été caf\ufffd"


@pytest.mark.parametrize(
    ("charset", "body", "text", "problem"),
    [
        ("utf-8", "Grüße".encode(), "Grüße", None),
        ("iso-8859-1", "Grüße".encode("latin-1"), "Grüße", None),
        ("x-klingon", b"plain", "plain", "unknown charset"),
        ("us-ascii", "Grüße".encode(), "Grüße", "it was UTF-8"),
        ("utf-8", "Grüße".encode("latin-1"), "Gr\ufffd\ufffde", "undecodable bytes replaced"),
        ("zlib", b"not compressed", "not compressed", "unknown charset"),
    ],
)
def test_body_charsets(charset, body, text, problem):
    m = parse_message(message(f"Content-Type: text/plain; charset={charset}\r\n", body))
    assert m.text == text
    assert (problem is None and not m.problems) or any(problem in p for p in m.problems)


def test_plain_preferred_over_html():
    body = (
        "--A\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--A\r\nContent-Type: text/plain\r\n\r\nplain\r\n--A--\r\n"
    )
    m = parse_message(message("Content-Type: multipart/alternative; boundary=A\r\n", body))
    assert m.text == "plain" and not m.html_converted


def test_html_only_is_converted_without_script_or_style():
    html = (
        "<html><head><style>.x{color:red}</style><script>alert(1)</script></head><body><h1>Title</h1>"
        "<p>Read <a href='https://example.org/a'>the post</a> now.</p><a href='javascript:evil()'>click</a>"
        "<script>steal()</script><ul><li>one</li><li>two</li></ul><img alt='logo' src='x'></body></html>"
    )
    m = parse_message(message("Content-Type: text/html; charset=utf-8\r\n", html))
    assert m.html_converted
    assert m.text == "Title\n\nRead the post <https://example.org/a> now.\nclick\n\n- one\n- two\n[logo]"
    for absent in ("alert", "steal", "color", "javascript", "<p>", "<script"):
        assert absent not in m.text


def test_html_to_text_handles_broken_markup():
    assert html_to_text("<p>unclosed <b>bold <script>x") == "unclosed bold"
    assert html_to_text("<a href='mailto:a@b'>a@b</a>") == "a@b <mailto:a@b>"
    assert html_to_text("&lt;script&gt; &amp; &#x41;") == "<script> & A"


def test_text_is_capped_with_a_note():
    m = parse_message(message("Content-Type: text/plain\r\n", "x" * 5000), max_text_bytes=2048)
    assert m.text.startswith("x" * 2048) and "text cut at 2048 bytes" in m.text
    assert any("was cut" in p for p in m.problems)


def test_nul_and_control_bytes_removed_from_text():
    m = parse_message(message("", b"a\x00b\x1b[2Jc\r\nd\te"))
    assert m.text == "ab[2Jc\nd\te"
    assert "NUL bytes removed from the text" in m.problems


@pytest.mark.parametrize(
    ("claimed", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../../etc/passwd", "passwd"),
        ("/etc/cron.d/evil", "evil"),
        ("C:\\Windows\\System32\\evil.dll", "evil.dll"),
        ("invoice.pdf\x00.exe", "invoice.pdf.exe"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("com1.log", "_com1.log"),
        (".bashrc", "bashrc"),
        ("..", "attachment-3.bin"),
        ("   ", "attachment-3.bin"),
        ("", "attachment-3.bin"),
        (None, "attachment-3.bin"),
        ("a:b|c?.txt", "a_b_c_.txt"),
        ("trailing. ", "trailing"),
    ],
)
def test_safe_filename(claimed, expected):
    assert safe_filename(claimed, 3, "application/octet-stream")[0] == expected


def test_safe_filename_caps_length_and_keeps_the_extension():
    name, problems = safe_filename("a" * 5000 + ".pdf", 1, "application/pdf")
    assert len(name) == 120 and name.endswith(".pdf")
    wide, _ = safe_filename("漢" * 300 + ".txt", 1, "text/plain")
    assert wide.endswith(".txt") and len(wide.encode()) <= 200
    assert problems


def test_attachments_hashed_named_and_kept_out_of_to_dict():
    m = parse_message(
        mixed(
            "Content-Type: text/plain\r\n\r\nbody",
            attachment('attachment; filename="../x/report.pdf"', b"%PDF-1.4", "application/pdf"),
            attachment("attachment", b"\x89PNG", "image/png"),
        )
    )
    assert m.text == "body"
    assert [a.filename for a in m.attachments] == ["report.pdf", "attachment-2.png"]
    first = m.attachments[0]
    assert first.original_name == "../x/report.pdf" and first.payload == b"%PDF-1.4" and first.size == 8
    assert first.sha256 == hashlib.sha256(b"%PDF-1.4").hexdigest()
    data = m.to_dict()
    assert "payload" not in data["attachments"][0]
    json.dumps(data)  # JSON-friendly


def test_attachment_caps():
    many = mixed(*[attachment(f'attachment; filename="f{i}.txt"', b"x") for i in range(25)])
    m = parse_message(many, max_attachments=20)
    assert len(m.attachments) == 20 and len(m.skipped_attachments) == 5
    assert m.skipped_attachments[0] == {"name": "f20.txt", "size": 1, "reason": "more than 20 attachments"}
    assert [s["name"] for s in m.skipped_attachments] == [f"f{i}.txt" for i in range(20, 25)]
    big = parse_message(
        mixed(attachment('attachment; filename="big.bin"', b"\0" * 300_000)), max_attachment_bytes=100_000
    )
    assert big.attachments == [] and big.skipped_attachments[0]["reason"] == "larger than 100000 bytes"
    assert big.skipped_attachments[0]["size"] >= 300_000


def test_attached_message_is_an_attachment_not_body_text():
    inner = "From: x@y\r\nSubject: forwarded\r\n\r\ninner body\r\n"
    m = parse_message(mixed("Content-Type: text/plain\r\n\r\nouter", f"Content-Type: message/rfc822\r\n\r\n{inner}"))
    assert m.text == "outer"
    assert [a.filename for a in m.attachments] == ["attachment-1.eml"]
    assert b"inner body" in m.attachments[0].payload


def test_selected_headers_kept_raw_for_authentication():
    forged = "mail.spine.test; dkim=pass header.d=bank.example;\r\n\tdmarc=pass header.from=bank.example"
    m = parse_message(message(f"Authentication-Results: {forged}\r\nList-Id: <l.example.org>\r\nX-Other: no\r\n"))
    assert set(m.headers) == {"authentication-results", "list-id"}
    parsed = from_headers(m.headers["authentication-results"])
    assert parsed[0].authserv_id == "mail.spine.test" and parsed[0].of("dmarc")[0].result == "pass"


def test_deep_nesting_is_cut_with_a_problem():
    body = "Content-Type: text/plain\r\n\r\ndeep\r\n"
    for i in range(60):
        body = f"Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n--n{i}\r\n{body}\r\n--n{i}--\r\n"
    head, rest = body.split("\r\n\r\n", 1)
    m = parse_message(message(head + "\r\n", rest))
    assert any("deeper than 32 levels" in p for p in m.problems)
    assert "deep" not in m.text


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"garbage without colon", b"From: a@b", b"\x00" * 100])
def test_degenerate_inputs(raw):
    m = parse_message(raw)
    assert m.message_id.startswith("<sha256:")
    json.dumps(m.to_dict())


def test_not_even_bytes_degrades():
    m = parse_message(None)  # type: ignore[arg-type]
    assert m.size == 0 and m.message_id.startswith("<sha256:")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_never_raises_on_arbitrary_bytes(raw):
    m = parse_message(raw)
    json.dumps(m.to_dict())
    assert "\n" not in m.subject and "\n" not in m.message_id


def test_huge_text_parts_are_read_only_as_far_as_needed():
    dense = message("Content-Type: text/html\r\n", b"<div><b>x</b>" * 400_000)
    started = time.perf_counter()
    m = parse_message(dense)
    assert time.perf_counter() - started < 10
    assert any("only its first" in p for p in m.problems)
    plain = parse_message(message("", b"y" * 3_000_000))
    assert plain.text.startswith("y" * 1000) and "text cut at" in plain.text
