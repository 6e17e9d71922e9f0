"""The MTA-STS and TLS-RPT TXT records (RFC 8461 3.1, RFC 8460 3) and the MTA-STS policy file (RFC 8461 3.2, 4.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail.mta_sts_policy import MAX_AGE_LIMIT, mx_matches, parse_policy
from spine_comms.mail.tls_policy_records import meant_as, parse_sts_record, parse_tlsrpt_record, starts_with_version


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("v=STSv1; id=20261206T000000", None),
        ("v=STSv1;id=1", None),
        ("v=STSv1; id=1;", None),
        ("v=STSv1; id=" + "Z9" * 16, None),
        ("v=STSv1; id=1; ext_a.b-c=value!", None),
        ("v=STSv1; id=" + "a" * 33, "1 to 32 letters and digits"),
        ("v=STSv1; id=", "1 to 32 letters and digits"),
        ("v=STSv1; id=2026-12-06", "1 to 32 letters and digits"),
        ("v=STSv1; id=abc def", "1 to 32"),
        ("v=STSv1", "no id="),
        ("v=STSv1; ID=1", "no id="),  # field names are case-sensitive (%s)
        ("v=stsv1; id=1", "must start with v=STSv1"),
        ("id=1; v=STSv1", "must start with v=STSv1"),
        (" v=STSv1; id=1", "must start with v=STSv1"),
        ("v=STSv1; id=1; id=2", "more than once"),
        ("v=STSv1; id=1;; x=y", "is not a name=value field"),
        ("v=STSv1; id=1; novalue", "is not a name=value field"),
        ("v=STSv1; id=1; x=a=b", "a field value has no spaces"),
    ],
)
def test_sts_record(record: str, problem: str | None) -> None:
    parsed = parse_sts_record(record)
    if problem is None:
        assert parsed.valid, parsed.problems
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


def test_a_space_before_the_first_delimiter_is_valid_but_warned() -> None:
    parsed = parse_sts_record("v=STSv1 ; id=1")
    assert parsed.valid and "discard" in parsed.warnings[0]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("v=TLSRPTv1; rua=mailto:tlsrpt@example.com", None),
        ("v=TLSRPTv1;rua=https://reports.example.com/v1/tlsrpt", None),
        ("v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.net:8443/x", None),
        ("v=TLSRPTv1; rua=mailto:a@example.com , mailto:b@example.net", None),
        ("v=TLSRPTv1; rua=MAILTO:a@example.com", None),  # URI schemes are case-insensitive (RFC 3986 3.1)
        ("v=TLSRPTv1; rua=mailto:a@example.com; future=1", None),
        ("v=TLSRPTv1; rua=ftp://x/y", "only mailto: and https:"),
        ("v=TLSRPTv1; rua=http://reports.example.com/", "only mailto: and https:"),
        ("v=TLSRPTv1; rua=tlsrpt@example.com", "is not a URI"),
        ("v=TLSRPTv1; rua=mailto:", "email address"),
        ("v=TLSRPTv1; rua=mailto:nobody", "email address"),
        ("v=TLSRPTv1; rua=https:reports.example.com", "names no host"),
        ("v=TLSRPTv1; rua=https://r.example.com:port/", "port"),
        ("v=TLSRPTv1; rua=mailto:a@example.com!10m", "'!'"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", "empty URI"),
        ("v=TLSRPTv1; rua=", "empty URI"),
        ("v=TLSRPTv1", "no rua="),
        ("v=TLSRPTv1; ruf=mailto:a@example.com", "no rua="),
        ("v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", "more than once"),
        ("v=tlsrptv1; rua=mailto:a@example.com", "must start with v=TLSRPTv1"),
        ("rua=mailto:a@example.com; v=TLSRPTv1", "must start with v=TLSRPTv1"),
        ("v=TLSRPTv2; rua=mailto:a@example.com", "must start with v=TLSRPTv1"),
    ],
)
def test_tlsrpt_record(record: str, problem: str | None) -> None:
    parsed = parse_tlsrpt_record(record)
    if problem is None:
        assert parsed.valid, parsed.problems
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


def test_record_selection_follows_the_version_prefix() -> None:
    assert starts_with_version("v=STSv1; id=1", "v=STSv1")
    assert starts_with_version("v=STSv1", "v=STSv1")
    assert not starts_with_version("v=STSv10; id=1", "v=STSv1")
    assert meant_as("id=1; v=STSv1", "v=STSv1") and meant_as("V=STSV1; id=1", "v=STSv1")
    assert not meant_as("google-site-verification=abc", "v=STSv1")


def policy(*lines: str, end: str = "\r\n") -> bytes:
    return "".join(line + end for line in lines).encode()


GOOD = ("version: STSv1", "mode: enforce", "mx: mail.example.com", "mx: *.example.net", "max_age: 604800")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (policy(*GOOD), None),
        (policy(*GOOD, end="\n"), None),
        (policy(*GOOD)[:-2], None),  # the last terminator is optional
        (b"version: STSv1\nmode: enforce\r\nmx: a.example.com\nmax_age: 0\n", None),  # LF and CRLF mixed
        (policy("max_age: 86400", "mx: a.example.com", "mode: enforce", "version: STSv1"), None),  # any order
        (policy("version:STSv1", "mode:enforce  ", "mx:a.example.com", "max_age:86400"), None),
        (policy("version: STSv1", "mode: none", "max_age: 86400"), None),
        (policy("version: STSv1", "mode: enforce", "mx: a.example.com", f"max_age: {MAX_AGE_LIMIT}"), None),
        (policy("version: STSv1", "mode: enforce", "mx: a.example.com", f"max_age: {MAX_AGE_LIMIT + 1}"), "max_age"),
        (policy("version: STSv1", "mode: enforce", "mx: a.example.com", "max_age: 1e6"), "max_age"),
        (policy("version: STSv1", "mode: enforce", "mx: a.example.com", "max_age: 12345678901"), "max_age"),
        (policy("version: STSv1", "mode: enforce", "mx: a.example.com"), "no max_age"),
        (policy("mode: enforce", "mx: a.example.com", "max_age: 86400"), "no version"),
        (policy("version: STSv1", "mx: a.example.com", "max_age: 86400"), "no mode"),
        (policy("version: stsv1", "mode: enforce", "mx: a.example.com", "max_age: 86400"), "STSv1"),
        (policy("version: STSv1", "mode: report", "mx: a.example.com", "max_age: 86400"), "enforce, testing or none"),
        (policy("version: STSv1", "mode: testing", "max_age: 86400"), "without any mx"),
        (policy("version: STSv1", "mode: enforce", "mode: testing", "mx: a.example.com", "max_age: 1"), "contradicts"),
        (policy("version: STSv1", "mode: enforce", "mx: a.example.com", "max_age: 86400", "junk"), "not 'key: value'"),
        (policy("version: STSv1", "mode: enforce", "\tmx: a.example.com", "max_age: 86400"), "not 'key: value'"),
        (policy("version: STSv1", "mode: enforce", "mx: a.*.example.com", "max_age: 86400"), "not an MX pattern"),
        (policy("version: STSv1", "mode: enforce", "mx: *example.com", "max_age: 86400"), "not an MX pattern"),
        (policy("version: STSv1", "mode: enforce", "mx: mx1.example.com mx2.example.com", "max_age: 1"), "MX pattern"),
        (policy("version: STSv1", "mode: enforce", "mx: bücher.example", "max_age: 86400"), "A-label"),
        (b"version: STSv1\rmode: enforce\rmx: a.example.com\rmax_age: 1\r", "bare CR"),
        (b"version: STSv1\nmode: enforce\nmx: a.example.com\xfe\nmax_age: 1\n", "UTF-8"),
    ],
)
def test_policy_file(body: bytes, problem: str | None) -> None:
    parsed = parse_policy(body)
    if problem is None:
        assert parsed.valid, parsed.problems
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


def test_policy_values_and_warnings() -> None:
    parsed = parse_policy(policy(*GOOD))
    assert (parsed.version, parsed.mode, parsed.max_age) == ("STSv1", "enforce", 604800)
    assert parsed.mx == ["mail.example.com", "*.example.net"] and not parsed.warnings
    odd = parse_policy(policy("version: STSv1", "mode: testing", "", "mx: a.example.com", "max_age: 60", "x: y",
                              "max_age: 60"))  # fmt: skip
    assert odd.valid
    text = " | ".join(odd.warnings)
    for words in ("mode testing", "line 3 is blank", "under a day", "unknown key x", "repeats line 5"):
        assert words in text, text


@pytest.mark.parametrize(
    ("pattern", "host", "match"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.COM.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),  # one label only (RFC 8461 4.1)
        ("*.example.com", "mailexample.com", False),
        ("*.Example.com", "mx.example.COM", True),
    ],
)
def test_mx_patterns(pattern: str, host: str, match: bool) -> None:
    assert mx_matches(pattern, host) is match


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_the_policy_parser_never_raises(body: bytes) -> None:
    parsed = parse_policy(body)
    assert isinstance(parsed.problems, list)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_the_record_parsers_never_raise(text: str) -> None:
    for parse in (parse_sts_record, parse_tlsrpt_record):
        assert isinstance(parse(text).problems, list)
