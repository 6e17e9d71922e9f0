"""Local DKIM verification and DMARC evaluation, on messages and DNS answers made in the test."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from spine_comms.mail.authentication import (
    author_domain,
    dmarc_verdict,
    evaluate_message,
    trusted_spf_domain,
    verify_signatures,
)
from spine_comms.mail.authresults import sort_by_trust
from spine_comms.protocols.dns import Answer


def zone(records: dict[str, list[str] | str]):
    """A query function over in-test data: a list is the TXT records, "error" a SERVFAIL, absent NXDOMAIN."""
    asked = []

    def query(name: str, rdtype: str) -> Answer:
        name = name.rstrip(".").lower()
        asked.append((name, rdtype))
        value = records.get(name)
        if value == "error":
            return Answer(name, rdtype, "error", (), "SERVFAIL from test")
        if value is None:
            return Answer(name, rdtype, "nxdomain")
        return Answer(name, rdtype, "ok", tuple(value)) if value else Answer(name, rdtype, "nodata")

    query.asked = asked
    return query


def new_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def keys():
    return new_key(), new_key()


MESSAGE = (
    b"From: Ops <ops@example.com>\r\nTo: someone@example.net\r\nSubject: probe\r\n"
    b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p1@example.com>\r\n\r\nhello\r\n"
)


def signed(pem: bytes, domain: bytes = b"example.com", selector: bytes = b"sel", message: bytes = MESSAGE) -> bytes:
    header = dkim.sign(message, selector, domain, pem, include_headers=[b"from", b"to", b"subject", b"date"])
    return header + message


DMARC = {"_dmarc.example.com": ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com"]}


# DKIM -----------------------------------------------------------------------------------------


def test_a_good_signature_passes_with_its_tags(keys):
    (pem, record), _ = keys
    query = zone({"sel._domainkey.example.com": [record]})
    (sig,) = verify_signatures(signed(pem), query)
    assert (sig.result, sig.domain, sig.selector, sig.algorithm) == ("pass", "example.com", "sel", "rsa-sha256")
    assert sig.subject == "d=example.com s=sel" and sig.key_bits == 2048
    assert query.asked == [("sel._domainkey.example.com", "TXT")]  # one lookup, through the given resolver


def test_each_failure_says_why(keys):
    (pem, record), (_, other_record) = keys
    raw = signed(pem)
    cases = {
        "tampered body": (raw.replace(b"hello", b"HELLO"), {"sel._domainkey.example.com": [record]}),
        "other key": (raw, {"sel._domainkey.example.com": [other_record]}),
        "revoked": (raw, {"sel._domainkey.example.com": ["v=DKIM1; k=rsa; p="]}),
        "nxdomain": (raw, {}),
        "servfail": (raw, {"sel._domainkey.example.com": "error"}),
        "two keys": (raw, {"sel._domainkey.example.com": [record, other_record]}),
        "garbage key": (raw, {"sel._domainkey.example.com": ["v=DKIM1; k=rsa; p=bm90IGEga2V5"]}),
    }
    found = {name: verify_signatures(message, zone(data))[0] for name, (message, data) in cases.items()}
    assert (found["tampered body"].result, found["tampered body"].reason.split(":")[0]) == (
        "fail",
        "body hash mismatch",
    )
    assert found["other key"].result == "fail" and "did not verify" in found["other key"].reason
    assert found["revoked"].result == "permerror" and "revoked" in found["revoked"].reason
    assert found["nxdomain"].result == "permerror" and "key not found in DNS" in found["nxdomain"].reason
    assert found["servfail"].result == "temperror" and "SERVFAIL" in found["servfail"].reason
    assert found["two keys"].result == "permerror" and "2 key records" in found["two keys"].reason
    assert found["garbage key"].result == "permerror" and "not a DER public key" in found["garbage key"].reason


@pytest.mark.parametrize(
    ("extra", "identity", "result", "why"),
    [
        ("h=sha256; ", None, "pass", "verified"),
        ("h=sha1:sha256; ", None, "pass", "verified"),
        ("h=sha1; ", None, "permerror", "does not allow sha256"),
        ("s=email; ", None, "pass", "verified"),
        ("s=*; ", None, "pass", "verified"),
        ("s=tlsrpt; ", None, "permerror", "not for mail"),
        ("t=s; ", b"@example.com", "pass", "verified"),
        ("t=s; ", b"@sub.example.com", "permerror", "t=s forbids i=@sub.example.com"),
        ("t=y; ", b"@sub.example.com", "pass", "verified"),
        ("k=ed25519; ", None, "permerror", "a=rsa-sha256 but the key record says k=ed25519"),
        ("k=dsa; ", None, "permerror", "unknown key type"),
    ],
)
def test_the_key_records_constraints_apply_as_dkim_check_reads_them(keys, extra, identity, result, why):
    from spine_comms.mail.dkim_record import key_strength, parse_dkim_record

    (pem, record), _ = keys
    published = record.replace("k=rsa; ", "") if extra.startswith("k=") else record
    published = published.replace("v=DKIM1; ", "v=DKIM1; " + extra)
    if extra == "k=ed25519; ":  # a real Ed25519 key, named by the RSA signature's selector
        from spine_comms.mail.dkim_record import generate_key

        published = generate_key("ed25519")[1]
    header = dkim.sign(MESSAGE, b"sel", b"example.com", pem, identity=identity,
                       include_headers=[b"from", b"to", b"subject", b"date"])  # fmt: skip
    (sig,) = verify_signatures(header + MESSAGE, zone({"sel._domainkey.example.com": [published]}))
    assert (sig.result, why in sig.reason) == (result, True), sig.reason
    # dkim.check reads the same record the same way: a record it fails never verifies a signature here.
    if key_strength(parse_dkim_record(published))[0] == "fail":
        assert sig.result == "permerror"


def test_a_sha1_signature_is_not_valid(keys):
    (pem, record), _ = keys
    header = dkim.sign(MESSAGE, b"sel", b"example.com", pem, signature_algorithm=b"rsa-sha1",
                       include_headers=[b"from", b"subject"])  # fmt: skip
    (sig,) = verify_signatures(header + MESSAGE, zone({"sel._domainkey.example.com": [record]}))
    assert sig.result == "permerror" and "RFC 8301" in sig.reason


def test_every_signature_is_verified_on_its_own(keys):
    (pem, record), (other_pem, _) = keys
    inner = signed(pem)
    outer = dkim.sign(inner, b"k2", b"relay.example", other_pem, include_headers=[b"from", b"subject"]) + inner
    query = zone({"sel._domainkey.example.com": [record], "k2._domainkey.relay.example": ["v=DKIM1; p="]})
    first, second = verify_signatures(outer, query)
    assert (first.subject, first.result) == ("d=relay.example s=k2", "permerror")
    assert (second.subject, second.result) == ("d=example.com s=sel", "pass")


def test_a_signature_without_required_tags_is_a_permerror():
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel\r\n" + MESSAGE
    (sig,) = verify_signatures(raw, zone({}))
    assert sig.result == "permerror" and "b, bh, h" in sig.reason


# DMARC ----------------------------------------------------------------------------------------


def test_relaxed_alignment_accepts_a_subdomain_strict_does_not():
    relaxed = dmarc_verdict("example.com", ["mail.example.com"], None, zone(DMARC))
    assert (relaxed.result, relaxed.dkim_aligned, relaxed.policy) == ("pass", ["mail.example.com"], "reject")
    strict = zone({"_dmarc.example.com": ["v=DMARC1; p=quarantine; adkim=s"]})
    verdict = dmarc_verdict("example.com", ["mail.example.com"], None, strict)
    assert (verdict.result, verdict.dkim_unaligned, verdict.adkim) == ("fail", ["mail.example.com"], "s")
    assert any("not aligned" in r for r in verdict.reasons)


def test_an_unrelated_dkim_domain_does_not_align_but_aligned_spf_passes():
    no_spf = dmarc_verdict("example.com", ["mailer.example.net"], None, zone(DMARC))
    assert no_spf.result == "fail"
    with_spf = dmarc_verdict("example.com", ["mailer.example.net"], "bounce.example.com", zone(DMARC))
    assert (with_spf.result, with_spf.spf_aligned) == ("pass", True)
    strict_spf = zone({"_dmarc.example.com": ["v=DMARC1; p=reject; aspf=s"]})
    assert dmarc_verdict("example.com", [], "bounce.example.com", strict_spf).result == "fail"


def test_policy_is_inherited_from_the_organizational_domain():
    query = zone({"_dmarc.example.com": ["v=DMARC1; p=reject; sp=quarantine"]})
    verdict = dmarc_verdict("news.example.com", ["example.com"], None, query)
    assert (verdict.result, verdict.policy, verdict.record_name) == ("pass", "quarantine", "_dmarc.example.com")


def test_missing_multiple_and_unreachable_records():
    assert dmarc_verdict("example.com", ["example.com"], None, zone({})).result == "none"
    two = zone({"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    assert dmarc_verdict("example.com", ["example.com"], None, two).result == "permerror"
    down = dmarc_verdict("example.com", ["example.com"], None, zone({"_dmarc.example.com": "error"}))
    assert down.result == "temperror" and "SERVFAIL" in down.reasons[0]


def test_the_author_domain_needs_exactly_one_address():
    assert author_domain(["Ops <OPS@Example.COM>"]) == ("example.com", None)
    assert author_domain(["a@example.com, b@example.org"])[0] is None
    assert author_domain(["a@example.com", "b@example.com"])[1].startswith("the message has 2 From headers")
    assert author_domain(["no address"])[0] is None
    verdict = dmarc_verdict(None, ["example.com"], None, zone(DMARC), from_problem="From holds 2 addresses")
    assert (verdict.result, verdict.reasons) == ("permerror", ["From holds 2 addresses"])


# Authentication-Results: trust --------------------------------------------------------------


RECEIVED = b"Received: from mx.example.org by mx.example.net with ESMTPS id 1; Sat, 21 Nov 2026 10:00:01 +0000\r\n"


def test_only_the_receivers_spf_counts_and_only_mailfrom():
    fields = [
        ("Received", "by mx.example.net"),
        ("Authentication-Results", "mx.example.net; spf=pass smtp.helo=example.com"),
        ("Authentication-Results", "mx.example.net; spf=pass smtp.mailfrom=<bounce@Mail.Example.com>"),
        ("From", "a@example.com"),
        ("Authentication-Results", "mx.example.net; spf=pass smtp.mailfrom=evil.example"),
    ]
    sorting = sort_by_trust(fields, "mx.example.net")
    assert len(sorting.trusted) == 2 and len(sorting.untrusted) == 1
    # the topmost trusted header that carries spf= is the receiver's word; its HELO result does not count
    assert trusted_spf_domain(sorting) is None
    sorting = sort_by_trust([fields[0], fields[2], fields[1]], "mx.example.net")
    assert trusted_spf_domain(sorting) == "mail.example.com"
    assert sort_by_trust(fields, None).trusted == []


def test_a_forged_header_is_ignored_and_the_trusted_spf_is_used(keys):
    (pem, record), (_, other_record) = keys
    forged = b"Authentication-Results: evil.example; dkim=pass; dmarc=pass\r\n"
    receiver = b"Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=example.com\r\n"
    raw = forged + receiver + RECEIVED + signed(pem)
    good = evaluate_message(
        raw, query=zone({**DMARC, "sel._domainkey.example.com": [record]}), trusted_authserv_id="mx.example.net"
    )
    assert [u.header.authserv_id for u in good.untrusted] == ["evil.example"]
    assert good.dmarc.result == "pass" and good.passing_aligned()[0].subject == "d=example.com s=sel"
    bad_key = zone({**DMARC, "sel._domainkey.example.com": [other_record]})
    broken = evaluate_message(raw, query=bad_key, trusted_authserv_id="mx.example.net")
    assert broken.signatures[0].result == "fail" and broken.passing_aligned() == []
    assert broken.dmarc.result == "pass" and broken.dmarc.spf_aligned  # SPF alone still carries DMARC
    untrusted_only = evaluate_message(raw, query=bad_key, trusted_authserv_id="other.example")
    assert untrusted_only.dmarc.result == "fail"  # the forged dmarc=pass and the SPF pass are not believed
    assert untrusted_only.to_dict()["authentication_results"]["trusted"] == []


def test_a_forged_spf_pass_below_the_receivers_received_carries_no_dmarc():
    forged = b"Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=example.com\r\n"
    receiver = b"Authentication-Results: mx.example.net; spf=fail smtp.mailfrom=example.com\r\n"
    for raw in (receiver + RECEIVED + forged + MESSAGE, RECEIVED + receiver + b"Return-Path: <x@y>\r\n" + forged
                + MESSAGE, forged + MESSAGE):  # fmt: skip
        ev = evaluate_message(raw, query=zone(DMARC), trusted_authserv_id="mx.example.net")
        assert ev.dmarc.result == "fail", raw
        assert ev.dmarc.spf_domain is None
        assert [u.header.results[0].result for u in ev.untrusted] == ["pass"]
