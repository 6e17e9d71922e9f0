"""The ManageSieve wire: response lines, codes, quoted strings and literals, capabilities."""

from __future__ import annotations

import pytest

from spine_comms.protocols.managesieve import (
    ManageSieve,
    SieveError,
    Wire,
    literal,
    parse_capabilities,
    quote,
)


def wire(data: bytes, chunk: int = 7) -> Wire:
    """A Wire over `data`, handed out in small chunks so reads cross chunk borders."""
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return Wire(lambda size: parts.pop(0) if parts else b"")


def test_greeting_capabilities_are_parsed_case_insensitively():
    data, response = wire(
        b'"IMPLEMENTATION" "Dovecot Pigeonhole"\r\n"sieve" "fileinto Mailbox imap4flags"\r\n'
        b'"SASL" "plain login"\r\n"STARTTLS"\r\n"MAXREDIRECTS" "1"\r\n"VERSION" "1.0"\r\nOK "ready"\r\n'
    ).response()
    caps = parse_capabilities(data)
    assert response.ok and response.text == "ready"
    assert caps.implementation == "Dovecot Pigeonhole"
    assert caps.sieve == ["fileinto", "mailbox", "imap4flags"]
    assert caps.sasl == ["PLAIN", "LOGIN"] and caps.starttls and caps.max_redirects == 1 and caps.checkscript


def test_no_capability_version_means_no_checkscript():
    data, _ = wire(b'"SIEVE" "fileinto"\r\nOK\r\n').response()
    assert not parse_capabilities(data).checkscript


def test_response_code_with_slash_and_text():
    _, response = wire(b'NO (QUOTA/MAXSIZE) "Script is too large (max 1048576 bytes)."\r\n').response()
    assert (response.status, response.code) == ("NO", "QUOTA/MAXSIZE")
    assert response.text == "Script is too large (max 1048576 bytes)."
    assert str(response) == "NO (QUOTA/MAXSIZE) Script is too large (max 1048576 bytes)."


def test_response_code_with_argument_and_escapes():
    _, response = wire(b'NO (SASL "dGVzdA==") "a \\"quoted\\" \\\\ text"\r\n').response()
    assert response.code == "SASL" and response.code_args == ("dGVzdA==",)
    assert response.text == 'a "quoted" \\ text'


@pytest.mark.parametrize("marker", [b"{%d}", b"{%d+}"])
def test_literal_text_spanning_lines(marker):
    text = b"line 3: error: unknown command 'fileinto'.\r\nerror: validation failed.\r\n"
    _, response = wire(b"NO " + marker % len(text) + b"\r\n" + text + b"\r\n").response()
    assert response.status == "NO"
    assert response.text == text.decode()


def test_getscript_literal_then_ok():
    script = b'require "fileinto";\r\nfileinto "x";\r\n'
    data, response = wire(b"{%d}\r\n" % len(script) + script + b'\r\nOK "Getscript completed."\r\n').response()
    assert response.ok
    assert [t.value for t in data[0]] == [script.decode()]


def test_listscripts_marks_the_active_one():
    data, _ = wire(b'"a"\r\n"spine-routing" ACTIVE\r\n{3}\r\nb c\r\nOK\r\n').response()
    assert [(t[0].value, len(t) > 1 and t[1].value) for t in data] == [
        ("a", False),
        ("spine-routing", "ACTIVE"),
        ("b c", False),
    ]


def test_bye_ends_a_response():
    _, response = wire(b'BYE (TRYLATER) "shutting down"\r\n').response()
    assert response.status == "BYE" and response.code == "TRYLATER"


@pytest.mark.parametrize(
    "data, message",
    [
        (b'NO "unterminated\r\n', "unterminated string"),
        (b"NO {abc}\r\n", "bad literal"),
        (b"{999999999}\r\n", "too large"),
        (b'"IMPLEMENTATION" "x"\r\n', "connection closed"),
        (b"x" * 70000, "too long"),
    ],
)
def test_bad_input_is_a_protocol_error(data, message):
    with pytest.raises(SieveError) as caught:
        wire(data, chunk=4096).response()
    assert caught.value.kind == "protocol" and message in caught.value.message


def test_names_are_quoted_and_cannot_hold_line_breaks():
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        quote("x\r\nLOGOUT")


def test_scripts_go_as_non_synchronizing_literals_counted_in_bytes():
    assert literal("\u00e9\n") == b"{3+}\r\n" + "\u00e9\n".encode()


def test_plain_is_never_sent_without_tls():
    session = ManageSieve("127.0.0.1", 1, server_name=None, ca_file=None, timeout=1)
    session.sock = object()  # a connected plain socket: not an SSLSocket
    with pytest.raises(SieveError) as caught:
        session.authenticate("ops@spine.test", "sentinel-password")
    assert caught.value.kind == "tls" and "sentinel-password" not in str(caught.value)


def test_starttls_not_offered_is_refused():
    session = ManageSieve("127.0.0.1", 1, server_name=None, ca_file=None, timeout=1)
    with pytest.raises(SieveError, match="does not offer STARTTLS"):
        session.starttls()
