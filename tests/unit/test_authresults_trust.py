"""Which Authentication-Results the receiver wrote (RFC 8601 §5, §7.1), and what the inbox makes of them."""

from __future__ import annotations

import pytest

from spine_comms.contracts.inbox import Policy
from spine_comms.inbox.policy import PARKED, QUEUED, authentication, judge
from spine_comms.mail.authentication import receiver_verdict
from spine_comms.mail.authresults import header_fields, sort_by_trust
from spine_comms.mail.message import parse_message

ID = "mail.spine.test"
LMTP = "Received: from mail.spine.test ([127.0.0.1])\r\n\tby mail.spine.test with LMTP id x; Sun, 6 Dec 2026\r\n"
MX = "Received: from [127.0.0.1] by mx.spine.test (Postfix) with ESMTP id 4; Sun, 6 Dec 2026 01:43:58 +0000\r\n"
STALWART = "Received: from mx.example.net ([192.0.2.7])\r\n\tby mail.spine.test (Stalwart SMTP) with ESMTPS id 1\r\n"
BODY = "From: CEO <ceo@spine.test>\r\nTo: ops@spine.test\r\nSubject: pay\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n"


def ar(value: str) -> str:
    return f"Authentication-Results: {value}\r\n"


def lab_delivery(receiver: list[str], sender_part: str = "") -> bytes:
    """What Postfix + OpenDKIM/OpenDMARC + Dovecot LMTP deliver (as the lab shows it)."""
    top = "Return-Path: <ceo@example.net>\r\nDelivered-To: ops@spine.test\r\n" + LMTP
    return (top + "".join(ar(v) for v in receiver) + MX + sender_part + BODY).encode()


def stalwart_delivery(receiver: str, sender_part: str = "") -> bytes:
    """What Stalwart stores: X-Spam-Status and Delivered-To (at delivery), its Received, its A-R, Received-SPF,
    Return-Path, then the sender's."""
    top = "X-Spam-Status: No, score=0.1\r\nDelivered-To: ops@spine.test\r\n" + STALWART + ar(receiver)
    top += "Received-SPF: pass (mail.spine.test: domain of x) receiver=mail.spine.test;\r\nReturn-Path: <x@y>\r\n"
    return (top + sender_part + BODY).encode()


def sort(raw: bytes, trusted: str | None = ID):
    return sort_by_trust(header_fields(raw), trusted)


def test_the_lab_receivers_block_is_trusted_and_a_forged_copy_below_its_received_is_not():
    raw = lab_delivery(
        [f"{ID}; dmarc=fail (p=reject dis=none) header.from=spine.test", f"{ID}; spf=pass smtp.mailfrom=example.net",
         f"{ID}; dkim=none"],
        sender_part=ar(f"{ID}; dkim=pass; dmarc=pass header.from=spine.test"),
    )  # fmt: skip
    sorting = sort(raw)
    assert [r.method for a in sorting.trusted for r in a.results] == ["dmarc", "spf", "dkim"]
    assert len(sorting.untrusted) == 1 and "below the receiver's block" in sorting.untrusted[0].why
    verdict = receiver_verdict(sorting, "spine.test")
    assert verdict.dmarc == "fail" and verdict.results["dkim"] == ["none"]
    assert "ignored 1 untrusted" in verdict.summary


def test_stalwart_keeps_the_senders_header_below_its_own_which_alone_counts():
    forged = ar(f"{ID}; dkim=pass; spf=pass smtp.mailfrom=spine.test; dmarc=pass header.from=spine.test")
    raw = stalwart_delivery(f"{ID};\r\n\tdkim=none;\r\n\tspf=fail smtp.mailfrom=example.net;\r\n\tdmarc=fail "
                            "header.from=spine.test policy.dmarc=reject", sender_part=forged)  # fmt: skip
    sorting = sort(raw)
    assert len(sorting.trusted) == 1 and len(sorting.untrusted) == 1
    assert receiver_verdict(sorting, "spine.test").dmarc == "fail"
    assert [r.result for r in sorting.method("spf")] == ["fail"]


def test_an_appended_message_has_no_receiver_block():
    # IMAP APPEND: no server ever saw it, so no header of it is the receiver's, wherever it stands.
    attacker = "Received: from a by smtp.attacker.example; Sun, 6 Dec 2026\r\n"
    for raw in (
        ar(f"{ID}; dkim=pass; dmarc=pass") + BODY,
        ar(f"{ID}; dmarc=pass") + attacker + BODY,
        attacker + ar(f"{ID}; dmarc=pass") + BODY,
        "X-Mailer: a\r\n" + ar(f"{ID}; dmarc=pass") + MX + BODY,
        "Subject: x\r\n" + MX + ar(f"{ID}; dmarc=pass") + BODY,
    ):
        sorting = sort(raw.encode())
        assert sorting.trusted == [] and len(sorting.untrusted) == 1
        verdict = receiver_verdict(sorting, "spine.test")
        assert verdict.dmarc is None and verdict.summary.startswith("not verified")
        assert "pass" not in verdict.summary.split("(")[0]


@pytest.mark.parametrize(
    "value",
    [
        "mail.spine.test.; dmarc=pass",  # trailing dot
        "Mail.Spine.Test; dmarc=pass",  # other case
        "MAIL.SPINE.TEST; dmarc=pass",
        "mail.spine.test.evil.example; dmarc=pass",  # a suffix
        "xmail.spine.test; dmarc=pass",
        "mail.spine.tests; dmarc=pass",
        "maiI.spine.test; dmarc=pass",  # look-alike letter
        "mаil.spine.test; dmarc=pass",  # Cyrillic a
        '"mail.spine.test"; dmarc=pass',  # quoted
        "mail.spine.test 2; dmarc=pass",  # a version this RFC does not define
        "mail.spine.test evil; dmarc=pass",  # garbled between id and ';'
        "=?utf-8?q?mail.spine.test=3B_dmarc=3Dpass?=",  # RFC 2047 encoded: not allowed, not decoded
        "(mail.spine.test) evil.example; dmarc=pass",  # the id in a comment
        "evil.example (mail.spine.test; dmarc=pass); dmarc=fail",
    ],
)
def test_a_look_alike_authserv_id_in_the_receivers_place_is_not_the_receiver(value):
    sorting = sort(lab_delivery([value]))
    assert sorting.trusted == [], sorting.untrusted
    assert receiver_verdict(sorting, "spine.test").dmarc is None


@pytest.mark.parametrize(
    "value", ["mail.spine.test 1; dmarc=pass header.from=spine.test", "mail.spine.test (forged); dmarc=pass",
              "mail.spine.test;\r\n\tdmarc=pass (p=reject) header.from=spine.test"],
)  # fmt: skip
def test_a_version_1_a_comment_or_a_fold_is_still_the_receivers_own_in_its_place(value):
    sorting = sort(lab_delivery([value]))
    assert len(sorting.trusted) == 1
    assert receiver_verdict(sorting, "spine.test").dmarc == "pass"
    below = sort(lab_delivery([f"{ID}; dmarc=fail"], sender_part=ar(value)))
    assert receiver_verdict(below, "spine.test").dmarc == "fail"


def test_the_dmarc_result_must_be_for_this_from_domain():
    sorting = sort(lab_delivery([f"{ID}; dmarc=pass header.from=example.org"]))
    verdict = receiver_verdict(sorting, "spine.test")
    assert verdict.dmarc is None and "header.from=example.org, not the From domain spine.test" in verdict.summary
    assert receiver_verdict(sorting, None, "the message has 2 From headers").dmarc is None
    assert receiver_verdict(sort(lab_delivery([f"{ID}; dmarc=pass header.from=Spine.Test."])), "spine.test").dmarc == (
        "pass"
    )


def test_several_receiver_headers_the_topmost_per_method_decides_and_a_fail_wins_within_one():
    sorting = sort(lab_delivery([f"{ID}; dmarc=pass header.from=spine.test", f"{ID}; dmarc=fail; dkim=pass"]))
    assert [r.result for r in sorting.method("dmarc")] == ["pass"]
    assert [r.result for r in sorting.method("dkim")] == ["pass"]
    two = sort(lab_delivery([f"{ID}; dmarc=pass header.from=spine.test; dmarc=fail header.from=spine.test"]))
    assert receiver_verdict(two, "spine.test").dmarc == "fail"


def test_a_receiver_field_of_another_id_in_the_block_is_reported_not_believed():
    sorting = sort(lab_delivery(["spamfilter.example; dmarc=pass", f"{ID}; dmarc=fail header.from=spine.test"]))
    assert [a.authserv_id for a in sorting.trusted] == [ID]
    assert "is not 'mail.spine.test'" in sorting.untrusted[0].why


def test_no_configured_id_trusts_nothing():
    sorting = sort(lab_delivery([f"{ID}; dmarc=pass"]), None)
    assert sorting.trusted == [] and len(sorting.untrusted) == 1


# The inbox policy --------------------------------------------------------------------------------------------


def policy(**kw) -> Policy:
    return Policy(trusted_authserv_id=ID, **kw)


def test_a_forged_pass_does_not_dodge_dmarc_fail_quarantine():
    raw = lab_delivery([f"{ID}; dmarc=fail (p=reject dis=none) header.from=spine.test"],
                       sender_part=ar(f"{ID}; dkim=pass; dmarc=pass"))  # fmt: skip
    verdict = judge(parse_message(raw), policy(dmarc_fail="quarantine"), raw)
    assert verdict.lane == PARKED and verdict.dmarc == "fail"
    assert verdict.auth_summary.startswith(f"{ID} says dmarc=fail")


def test_an_appended_forgery_is_queued_as_not_verified_never_as_pass():
    raw = (ar(f"{ID}; dkim=pass; dmarc=pass") + BODY).encode()
    verdict = judge(parse_message(raw), policy(dmarc_fail="quarantine"), raw)
    assert verdict.lane == QUEUED and verdict.dmarc is None
    assert verdict.auth_summary.startswith("not verified")
    assert f"{ID} says" not in verdict.auth_summary


def test_the_summary_names_methods_and_results_only():
    raw = lab_delivery([f"{ID}; auth=pass smtp.auth=ops@spine.test; dkim=pass header.d=spine.test"])
    dmarc, summary, judged = authentication(raw, ID)
    assert dmarc is None and summary == f"{ID} says dkim=pass auth=pass" and judged
    assert authentication(None, ID)[1].startswith("not verified")
    assert authentication(raw, None)[1].startswith("not verified (no policy.trusted_authserv_id)")


def test_the_receivers_received_is_told_by_its_by_clause():
    from spine_comms.mail.authresults import received_by

    assert received_by("from mail.spine.test ([127.0.0.1])\r\n\tby mail.spine.test with LMTP id x") == "mail.spine.test"
    assert received_by("from x (helo by evil.example) by MX.Spine.Test. (Postfix) with ESMTP") == "mx.spine.test"
    assert received_by("from x with ESMTP id 1") is None
    # The Received below the run names another domain: the run is a sender's, whatever it claims.
    other = "Received: from a by mx.spine.test.evil.example; Sun, 6 Dec 2026\r\n"
    assert sort((ar(f"{ID}; dmarc=pass") + other + BODY).encode()).trusted == []


REAL_LAB_DELIVERY = (
    b"Return-Path: <ops@spine.test>\r\nDelivered-To: ops@spine.test\r\nReceived: from mail.spine.test ([127.0.0.1])\r\n"
    b"\tby mail.spine.test with LMTP\r\n\tid SGKfGt69FGvYXwAAg+zDdQ\r\n\t(envelope-from <ops@spine.test>)\r\n"
    b"\tfor <ops@spine.test>; Sun, 06 Dec 2026 01:43:58 +0000\r\n"
    b"Authentication-Results: mail.spine.test; dmarc=pass (p=reject dis=none) header.from=spine.test\r\n"
    b"Authentication-Results: mail.spine.test;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=spine.test "
    b"header.i=@spine.test header.a=rsa-sha256 header.s=lab header.b=eaKZEUKN;\r\n\tdkim-atps=neutral\r\n"
    b"Received: from mail.spine.test (localhost [127.0.0.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 "
    b"(256/256 bits)\r\n\t key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256)\r\n"
    b"\t(No client certificate requested)\r\n\tby mx.spine.test (Postfix) with ESMTPS id 4CFE698C2C6\r\n"
    b"\tfor <ops@spine.test>; Sun,  6 Dec 2026 01:43:58 +0000 (UTC)\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=spine.test; s=lab;\r\n\tbh=x; h=From; b=y\r\n"
    b"From: ops@spine.test\r\nTo: ops@spine.test\r\nSubject: hdr-test 1\r\n"
    b"Authentication-Results:\r\n mail.spine.test; dmarc=pass; spf=pass smtp.mailfrom=spine.test\r\n"
    b"Message-Id: <1@mail.spine.test>\r\n\r\nx\r\n"
)


def test_a_message_as_the_lab_delivered_it_with_a_forgery_from_the_submitter():
    sorting = sort(REAL_LAB_DELIVERY)
    assert [r.method for a in sorting.trusted for r in a.results] == ["dmarc", "dkim", "dkim-atps"]
    assert len(sorting.untrusted) == 1 and sorting.method("spf") == []
    assert receiver_verdict(sorting, "spine.test").summary.startswith(f"{ID} says dkim=pass dmarc=pass dkim-atps")


@pytest.mark.parametrize(
    "dmarc, admitted",
    [("pass", True), ("none", False), ("temperror", False), ("permerror", False), ("fail", False), (None, False)],
)
def test_an_allow_entry_vouches_only_for_a_from_the_receiver_did_not_find_unauthenticated(dmarc, admitted):
    """A From on the allow list, forged over port 25: the receiver judged it (dmarc=none for a domain
    without a DMARC record, fail, or no dmarc= at all in its block). The allow entry must not admit it.
    Mail the receiver wrote no A-R for (Stalwart adds none on submission, IMAP APPEND) keeps its old
    treatment."""
    receiver = f"{ID}; spf=pass smtp.mailfrom=spine.test" + (f"; dmarc={dmarc} header.from=spine.test" if dmarc else "")
    raw = stalwart_delivery(receiver, sender_part=ar(f"{ID}; dmarc=pass header.from=spine.test"))
    allow = {"allow": ["ceo@spine.test"]}
    verdict = judge(parse_message(raw), policy(senders=allow, dmarc_fail="enqueue"), raw)
    assert (verdict.lane == QUEUED) is admitted, verdict
    if not admitted:
        said = f"dmarc={dmarc}" if dmarc else "no DMARC result"
        assert any("policy.senders.allow, but" in r and said in r for r in verdict.reasons), verdict
    appended = (ar(f"{ID}; dmarc=pass header.from=spine.test") + BODY).encode()  # no receiver block at all
    assert judge(parse_message(appended), policy(senders=allow), appended).lane == QUEUED
    opted = judge(
        parse_message(raw), policy(senders={**allow, "allow_unauthenticated": True}, dmarc_fail="enqueue"), raw
    )
    assert opted.lane == QUEUED  # the operator's explicit choice
    # A sender on no list, with an empty allow list, is judged by DMARC alone, as before.
    assert judge(parse_message(raw), policy(dmarc_fail="enqueue"), raw).lane == QUEUED


def test_two_from_fields_both_allowed_are_not_vouched_for_when_the_receiver_judged_the_message():
    """The receiver's dmarc=pass cannot be given to a message with two From fields (it may have judged
    the other one): an allow list naming both does not admit it on its own."""
    two = BODY.replace("From: CEO <ceo@spine.test>\r\n", "From: CEO <ceo@spine.test>\r\nFrom: cfo@spine.test\r\n")
    raw = ("X-Spam-Status: No\r\n" + STALWART + ar(f"{ID}; dmarc=pass header.from=spine.test") + two).encode()
    verdict = judge(parse_message(raw), policy(senders={"allow": ["@spine.test"]}, dmarc_fail="enqueue"), raw)
    assert verdict.lane == PARKED and any("no DMARC result" in r for r in verdict.reasons), verdict
