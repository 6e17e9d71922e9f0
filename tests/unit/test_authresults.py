"""Authentication-Results parsing (RFC 8601) on the formats the receivers really write, and on garbage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail.authresults import AuthResults, parse_authentication_results

# As the lab's OpenDKIM and OpenDMARC write them (one method per header, folded, `;` inside comments).
OPENDKIM = (
    "mail.spine.test;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=spine.test header.i=@spine.test "
    "header.a=rsa-sha256 header.s=lab header.b=Bc9UWXCn;\r\n\tdkim-atps=neutral"
)
OPENDMARC = "mail.spine.test; dmarc=pass (p=reject dis=none) header.from=spine.test"
OPENDKIM_FAIL = 'mail.spine.test; dkim=fail reason="key not found in DNS" header.d=spine.test header.s=lab'

# As Stalwart writes them (reference/stalwart.md section 2): every method in one header.
STALWART = (
    "mx.example.org;\r\n\tdkim=pass header.d=example.org header.s=myselector header.b=YWJjZGVm;\r\n"
    "\tspf=pass (mx.example.org: domain of postmaster@helo.example designates 192.0.2.1 as permitted sender) "
    "smtp.helo=helo.example;\r\n"
    "\tspf=pass (mx.example.org: domain of jdoe@example.org designates 192.0.2.1 as permitted sender) "
    "smtp.mailfrom=jdoe@example.org;\r\n"
    "\tiprev=pass policy.iprev=192.0.2.1;\r\n"
    "\tdmarc=pass header.from=example.org policy.dmarc=none"
)
STALWART_FAIL = (
    'mx.example.org; dkim=fail (body hash did not verify) header.i="@example.org" header.s=sel header.b=AAAA;'
    ' spf=none smtp.mailfrom=<>; iprev=fail policy.iprev="2001:db8::1";'
    " dmarc=fail (policy not aligned) header.from=example.com policy.dmarc=quarantine"
)


def test_opendkim_header_with_a_semicolon_inside_its_comment():
    ar = parse_authentication_results(OPENDKIM)
    assert ar.authserv_id == "mail.spine.test" and ar.problems == []
    dkim = ar.of("dkim")[0]
    assert (dkim.result, dkim.comment) == ("pass", "2048-bit key; unprotected")
    assert dkim.properties == {
        "header.d": "spine.test", "header.i": "@spine.test", "header.a": "rsa-sha256",
        "header.s": "lab", "header.b": "Bc9UWXCn",
    }  # fmt: skip
    assert [r.method for r in ar.results] == ["dkim", "dkim-atps"]
    assert ar.of("dkim-atps")[0].result == "neutral"


def test_opendmarc_and_a_reason():
    dmarc = parse_authentication_results(OPENDMARC).of("dmarc")[0]
    assert (dmarc.result, dmarc.comment, dmarc.prop("header.from")) == ("pass", "p=reject dis=none", "spine.test")
    failed = parse_authentication_results(OPENDKIM_FAIL).of("dkim")[0]
    assert (failed.result, failed.reason, failed.prop("header.s")) == ("fail", "key not found in DNS", "lab")


def test_stalwart_header_with_every_method_folded():
    ar = parse_authentication_results(STALWART)
    assert ar.authserv_id == "mx.example.org" and ar.problems == []
    assert [(r.method, r.result) for r in ar.results] == [
        ("dkim", "pass"), ("spf", "pass"), ("spf", "pass"), ("iprev", "pass"), ("dmarc", "pass"),
    ]  # fmt: skip
    helo, mailfrom = ar.of("spf")
    assert helo.prop("smtp.helo") == "helo.example" and helo.comment.startswith("mx.example.org: domain of")
    assert mailfrom.prop("smtp.mailfrom") == "jdoe@example.org"
    assert ar.of("dmarc")[0].prop("policy.dmarc") == "none"


def test_stalwart_failures_quoted_values_and_an_empty_mailfrom():
    ar = parse_authentication_results(STALWART_FAIL)
    assert ar.problems == []
    dkim, spf, iprev, dmarc = ar.results
    assert (dkim.result, dkim.comment, dkim.prop("header.i")) == ("fail", "body hash did not verify", "@example.org")
    assert spf.prop("smtp.mailfrom") == "<>"
    assert iprev.prop("policy.iprev") == "2001:db8::1"
    assert (dmarc.comment, dmarc.prop("policy.dmarc")) == ("policy not aligned", "quarantine")


def test_none_version_comments_and_the_header_name():
    assert parse_authentication_results("mx.example.com; none").results == []
    ar = parse_authentication_results("Authentication-Results: (our MX) mx.example.com 1; spf=pass smtp.mailfrom=a.b")
    assert (ar.authserv_id, ar.version, ar.of("spf")[0].prop("smtp.mailfrom")) == ("mx.example.com", "1", "a.b")
    quoted = parse_authentication_results('"mx.example.com"; DKIM/1 = PASS header.d = Example.org')
    result = quoted.results[0]
    assert (quoted.authserv_id, result.method, result.version, result.result) == ("mx.example.com", "dkim", "1", "pass")
    assert result.prop("header.d") == "Example.org"  # values keep their case; names and results are lowered


def test_base64_padding_in_a_value_is_kept():
    ar = parse_authentication_results("mx; dkim=pass header.b=ab+/cd==")
    assert ar.results[0].prop("header.b") == "ab+/cd=="


def test_garbage_is_reported_and_parsing_resumes_at_the_next_semicolon():
    ar = parse_authentication_results('mx.example.com; ((( ; =broken "unclosed; dkim=pass header.d=ok.example')
    assert ar.authserv_id == "mx.example.com"
    assert ar.problems  # the damage is reported, not swallowed
    truncated = parse_authentication_results("mx.example.com; dkim=pass (unclosed comment header.d=x")
    assert truncated.of("dkim")[0].result == "pass" and any("unclosed" in p for p in truncated.problems)
    recovered = parse_authentication_results("mx.example.com; what is this; spf=pass smtp.mailfrom=a.example")
    assert recovered.of("spf")[0].prop("smtp.mailfrom") == "a.example"
    assert recovered.problems


def test_an_empty_header_has_no_authserv_id():
    ar = parse_authentication_results("")
    assert (ar.authserv_id, ar.results) == ("", []) and ar.problems == ["no authserv-id"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(' \t\r\n;()"\\=./@abcXYZ019-_é')), max_size=120) | st.text(max_size=200))
def test_never_raises_on_arbitrary_text(text):
    ar = parse_authentication_results(text)
    assert isinstance(ar, AuthResults)
    assert ar.raw == text


_word = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), min_size=1, max_size=10).filter(
    lambda w: w[0].isalpha() and w != "none"
)
_value = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789.@+/="), min_size=1, max_size=20)
_comment = st.text(alphabet=st.sampled_from("abc xyz;=.:-"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    authserv=_word,
    entries=st.lists(
        st.tuples(_word, _word, st.none() | _comment, st.dictionaries(st.tuples(_word, _word), _value, max_size=3)),
        min_size=1,
        max_size=4,
    ),
    fold=st.booleans(),
)
def test_what_is_written_by_the_grammar_reads_back(authserv, entries, fold):
    separator = ";\r\n\t" if fold else "; "
    parts = []
    for method, result, comment, props in entries:
        text = f"{method}={result}"
        if comment is not None:
            text += f" ({comment})"
        text += "".join(f" {ptype}.{prop}={value}" for (ptype, prop), value in props.items())
        parts.append(text)
    ar = parse_authentication_results(authserv + separator + separator.join(parts))
    assert ar.problems == []
    assert ar.authserv_id == authserv
    assert [(r.method, r.result) for r in ar.results] == [(m, r) for m, r, _, _ in entries]
    for parsed, (_, _, comment, props) in zip(ar.results, entries, strict=True):
        assert parsed.properties == {f"{p}.{q}": v for (p, q), v in props.items()}
        if comment is not None and comment.strip():
            assert parsed.comment == " ".join(comment.split())
