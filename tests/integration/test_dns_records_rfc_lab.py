"""MX, DMARC, TLS-RPT and MTA-STS held to their RFCs, against the lab's Knot and its MTA-STS policy host.

Each case breaks one thing (a record by dynamic update, or what the policy host serves) and
expects one check to say so with the right status and exit code. Every run also asserts one
verdict per check id and subject (tests/integration/test_dns_status_lab.py's `run`).
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.dns_update import replaced
from tests.integration.test_dns_status_lab import by_id, run
from tests.mta_sts_policy import served

pytestmark = pytest.mark.lab

RUA = "rua=mailto:dmarc@spine.test"
TLS_RUA = "rua=mailto:tlsrpt@spine.test"
GOOD_POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.spine.test\r\nmax_age: 604800\r\n"


def policy(*lines: str, end: str = "\r\n") -> str:
    return "".join(line + end for line in lines)


# fmt: off
RECORD_CASES = [
    # MX (RFC 5321 5.1, RFC 2181 10.3, RFC 7505): never exit 3, one verdict on the MX set
    ("null-mx-alone", "spine.test", "MX", ["0 ."], "dns.mx.present", "fail", 1, "accepts no mail"),
    ("null-mx-beside-real", "spine.test", "MX", ["0 .", "10 mx.spine.test."], "dns.mx.present", "fail", 1, "MUST NOT"),
    ("null-mx-preference-10", "spine.test", "MX", ["10 ."], "dns.mx.present", "fail", 1, "preference 0"),
    ("mx-names-an-address", "spine.test", "MX", ["10 127.0.0.1."], "dns.mx.target_resolves", "fail", 1, "address"),
    # DMARC (RFC 7489 6.3, 6.4, 6.6.3)
    ("dmarc-v-not-first", "_dmarc.spine.test", "TXT", [f"p=reject; v=DMARC1; {RUA}"], "dns.dmarc.record", "fail", 1,
     "receivers discard it"),
    ("dmarc-v-lower-case", "_dmarc.spine.test", "TXT", [f"v=dmarc1; p=reject; {RUA}"], "dns.dmarc.record", "fail", 1,
     "not valid"),
    ("dmarc-leading-space", "_dmarc.spine.test", "TXT", [f" v=DMARC1; p=reject; {RUA}"], "dns.dmarc.record", "fail", 1,
     "not valid"),
    ("dmarc-no-delimiter", "_dmarc.spine.test", "TXT", [f"v=DMARC1 p=reject; {RUA}"], "dns.dmarc.record", "fail", 1,
     "not valid"),
    ("dmarc-sp-none-under-reject", "_dmarc.spine.test", "TXT", [f"v=DMARC1; p=reject; sp=none; {RUA}"],
     "dns.dmarc.policy", "warn", 0, "sp=none"),
    ("dmarc-sp-quarantine-under-reject", "_dmarc.spine.test", "TXT", [f"v=DMARC1; p=reject; sp=quarantine; {RUA}"],
     "dns.dmarc.policy", "ok", 0, "sp=quarantine"),
    # TLS-RPT (RFC 8460 3)
    ("tlsrpt-ftp-uri", "_smtp._tls.spine.test", "TXT", ["v=TLSRPTv1; rua=ftp://x/y"], "dns.tls_rpt.record", "fail", 1,
     "only mailto: and https:"),
    ("tlsrpt-bare-address", "_smtp._tls.spine.test", "TXT", ["v=TLSRPTv1; rua=tlsrpt@spine.test"],
     "dns.tls_rpt.record", "fail", 1, "not a URI"),
    ("tlsrpt-no-rua", "_smtp._tls.spine.test", "TXT", ["v=TLSRPTv1;"], "dns.tls_rpt.record", "fail", 1, "no rua="),
    ("tlsrpt-lower-case-version", "_smtp._tls.spine.test", "TXT", [f"v=tlsrptv1; {TLS_RUA}"], "dns.tls_rpt.record",
     "fail", 1, "exactly"),
    ("tlsrpt-version-second", "_smtp._tls.spine.test", "TXT", [f"{TLS_RUA}; v=TLSRPTv1"], "dns.tls_rpt.record",
     "fail", 1, "senders discard it"),
    ("tlsrpt-two-records", "_smtp._tls.spine.test", "TXT",
     [f"v=TLSRPTv1; {TLS_RUA}", "v=TLSRPTv1; rua=mailto:b@spine.test"], "dns.tls_rpt.record", "fail", 1,
     "2 v=TLSRPTv1 records"),
    ("tlsrpt-mailto-empty", "_smtp._tls.spine.test", "TXT", ["v=TLSRPTv1; rua=mailto:"], "dns.tls_rpt.record", "fail",
     1, "email address"),
    ("tlsrpt-mailto-and-https", "_smtp._tls.spine.test", "TXT",
     [f"v=TLSRPTv1; {TLS_RUA}, https://reports.spine.test/tlsrpt"], "dns.tls_rpt.record", "ok", 0, "https://"),
    # MTA-STS TXT (RFC 8461 3.1)
    ("sts-id-with-dashes", "_mta-sts.spine.test", "TXT", ["v=STSv1; id=2026-12-06"], "dns.mta_sts.record", "fail", 1,
     "1 to 32 letters and digits"),
    ("sts-id-33-chars", "_mta-sts.spine.test", "TXT", ["v=STSv1; id=" + "a" * 33], "dns.mta_sts.record", "fail", 1,
     "1 to 32"),
    ("sts-no-id", "_mta-sts.spine.test", "TXT", ["v=STSv1;"], "dns.mta_sts.record", "fail", 1, "no id="),
    ("sts-version-second", "_mta-sts.spine.test", "TXT", ["id=1; v=STSv1"], "dns.mta_sts.record", "fail", 1,
     "senders discard it"),
    ("sts-two-records", "_mta-sts.spine.test", "TXT", ["v=STSv1; id=1", "v=STSv1; id=2"], "dns.mta_sts.record", "fail",
     1, "2 v=STSv1 records"),
    ("sts-32-char-id", "_mta-sts.spine.test", "TXT", ["v=STSv1; id=" + "A1" * 16], "dns.mta_sts.record", "ok", 0,
     "v=STSv1"),
    ("sts-no-policy-host", "mta-sts.spine.test", "A", [], "dns.mta_sts.policy", "fail", 1, "cannot fetch the policy"),
]
# fmt: on


@pytest.mark.parametrize(
    ("name", "rdtype", "values", "check_id", "status", "code", "words"),
    [case[1:] for case in RECORD_CASES],
    ids=[case[0] for case in RECORD_CASES],
)
def test_records_are_held_to_their_rfcs(lab, lab_root, name, rdtype, values, check_id, status, code, words):
    with replaced(lab, name, rdtype, values):
        got_code, env = run(lab_root, "dns.mail.status")
    checks = by_id(env, check_id)
    assert len(checks) >= 1, [c["id"] for c in env["checks"]]
    wanted = [c for c in checks if c["status"] == status]
    assert wanted, checks
    assert words in wanted[0]["detail"], wanted[0]["detail"]
    assert got_code == code, (env["status"], [c for c in env["checks"] if c["status"] not in ("ok", status)])


def test_null_mx_gives_one_mx_present_verdict_and_no_lookup_of_the_root(lab, lab_root):
    with replaced(lab, "spine.test", "MX", ["0 .", "10 mx.spine.test."]):
        code, env = run(lab_root, "dns.mail.status")
    (present,) = by_id(env, "dns.mx.present")
    assert present["status"] == "fail" and code == 1
    assert [c["subject"] for c in by_id(env, "dns.mx.target_resolves")] == ["mx.spine.test"]
    assert not [c for c in env["checks"] if c["status"] == "error"], "a null MX is never `could not resolve`"


def test_an_mx_target_that_is_an_alias_is_flagged(lab, lab_root):
    with ExitStack() as stack:
        stack.enter_context(replaced(lab, "alias.spine.test", "CNAME", ["mx.spine.test."]))
        stack.enter_context(replaced(lab, "spine.test", "MX", ["10 alias.spine.test."]))
        code, env = run(lab_root, "dns.mail.status")
    (target,) = by_id(env, "dns.mx.target_resolves")
    assert target["subject"] == "alias.spine.test" and target["status"] == "fail", target
    assert "CNAME to mx.spine.test" in target["detail"] and "RFC 2181 10.3" in target["detail"]
    assert code == 1


# fmt: off
POLICY_CASES = [
    ("testing-mode-lf-lines",
     policy("version: STSv1", "mode: testing", "mx: mx.spine.test", "max_age: 604800", end="\n"), None,
     "dns.mta_sts.policy", "warn", 0, "mode testing"),
    ("wildcard-one-label", policy("version: STSv1", "mode: enforce", "mx: *.spine.test", "max_age: 604800"),
     None, "dns.mta_sts.mx", "ok", 0, "matches"),
    ("wildcard-is-one-label-only", policy("version: STSv1", "mode: enforce", "mx: *.test", "max_age: 604800"),
     None, "dns.mta_sts.mx", "fail", 1, "matches no mx pattern"),
    ("mx-not-in-policy", policy("version: STSv1", "mode: enforce", "mx: mail.example.net", "max_age: 604800"),
     None, "dns.mta_sts.mx", "fail", 1, "senders refuse"),
    ("mx-not-in-testing-policy", policy("version: STSv1", "mode: testing", "mx: mail.example.net", "max_age: 604800"),
     None, "dns.mta_sts.mx", "warn", 0, "report"),
    ("stale-pattern", policy("version: STSv1", "mode: enforce", "mx: mx.spine.test", "mx: old.example.net",
                             "max_age: 604800"), None, "dns.mta_sts.mx", "warn", 0, "old.example.net"),
    ("max-age-over-a-year", policy("version: STSv1", "mode: enforce", "mx: mx.spine.test", "max_age: 31557601"),
     None, "dns.mta_sts.policy", "fail", 1, "max_age"),
    ("max-age-negative", policy("version: STSv1", "mode: enforce", "mx: mx.spine.test", "max_age: -1"),
     None, "dns.mta_sts.policy", "fail", 1, "max_age"),
    ("max-age-short", policy("version: STSv1", "mode: enforce", "mx: mx.spine.test", "max_age: 300"),
     None, "dns.mta_sts.policy", "warn", 0, "under a day"),
    ("no-version", policy("mode: enforce", "mx: mx.spine.test", "max_age: 604800"),
     None, "dns.mta_sts.policy", "fail", 1, "no version"),
    ("version-2", policy("version: STSv2", "mode: enforce", "mx: mx.spine.test", "max_age: 604800"),
     None, "dns.mta_sts.policy", "fail", 1, "STSv1"),
    ("mode-capitalised", policy("version: STSv1", "mode: Enforce", "mx: mx.spine.test", "max_age: 604800"),
     None, "dns.mta_sts.policy", "fail", 1, "mode"),
    ("mode-twice-differently", policy("version: STSv1", "mode: enforce", "mode: none", "mx: mx.spine.test",
                                      "max_age: 604800"), None, "dns.mta_sts.policy", "fail", 1, "contradicts"),
    ("enforce-without-mx", policy("version: STSv1", "mode: enforce", "max_age: 604800"),
     None, "dns.mta_sts.policy", "fail", 1, "without any mx"),
    ("mode-none-without-mx", policy("version: STSv1", "mode: none", "max_age: 604800"),
     None, "dns.mta_sts.policy", "warn", 0, "withdrawn"),
    ("bare-cr", "version: STSv1\rmode: enforce\rmx: mx.spine.test\rmax_age: 604800\r",
     None, "dns.mta_sts.policy", "fail", 1, "bare CR"),
    ("indented-key", policy("version: STSv1", " mode: enforce", "mx: mx.spine.test", "max_age: 604800"),
     None, "dns.mta_sts.policy", "fail", 1, "not 'key: value'"),
    ("bad-mx-pattern", policy("version: STSv1", "mode: enforce", "mx: mx.*.test", "max_age: 604800"),
     None, "dns.mta_sts.policy", "fail", 1, "not an MX pattern"),
    ("not-utf8", b"version: STSv1\r\nmode: enforce\r\nmx: mx.spine.test\xff\r\nmax_age: 604800\r\n",
     None, "dns.mta_sts.policy", "fail", 1, "UTF-8"),
    ("redirect", GOOD_POLICY, {"status": 301, "headers": {"Location": "https://mta-sts.spine.test/elsewhere"}},
     "dns.mta_sts.policy", "fail", 1, "MUST NOT follow redirects"),
    ("html", GOOD_POLICY, {"status": 200, "headers": {"Content-Type": "text/html"}},
     "dns.mta_sts.policy", "fail", 1, "text/plain"),
    ("text-plain-with-charset", GOOD_POLICY, {"status": 200, "headers": {"Content-Type": "text/plain; charset=utf-8"}},
     "dns.mta_sts.policy", "ok", 0, "mode enforce"),
    ("no-policy-file", None, None, "dns.mta_sts.policy", "fail", 1, "HTTP 404"),
    ("over-64-kib", GOOD_POLICY + "x-pad: " + "a" * 70_000 + "\r\n", None, "dns.mta_sts.policy", "fail", 1, "64 KiB"),
]
# fmt: on


@pytest.mark.parametrize(
    ("body", "response", "check_id", "status", "code", "words"),
    [case[1:] for case in POLICY_CASES],
    ids=[case[0] for case in POLICY_CASES],
)
def test_the_mta_sts_policy_is_fetched_and_validated(lab, lab_root, body, response, check_id, status, code, words):
    with served(lab, body, response):
        got_code, env = run(lab_root, "dns.mail.status")
    checks = by_id(env, check_id)
    assert len(checks) == 1, [c["id"] for c in env["checks"]]
    assert checks[0]["status"] == status, checks[0]
    assert words in checks[0]["detail"], checks[0]["detail"]
    assert got_code == code, (env["status"], [c for c in env["checks"] if c["status"] != "ok"])


def _root_with_contract(lab_root: Path, tmp_path: Path, edit) -> Path:
    root = tmp_path / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    contract = root / "bindings" / "communications.mailauth.contract.yaml"
    contract.write_text(edit(contract.read_text()))
    return root


def test_a_policy_host_that_does_not_answer_is_an_error_not_a_pass(lab, lab_root, tmp_path):
    port = str(lab["ports"]["mta_sts"])
    closed = str(lab["port_base"] + 99)  # nothing listens there
    root = _root_with_contract(lab_root, tmp_path, lambda text: text.replace(f"port: {port}", f"port: {closed}"))
    code, env = run(root, "dns.mail.status")
    (fetched,) = by_id(env, "dns.mta_sts.policy")
    assert fetched["status"] == "error" and code == 3, fetched


def test_a_certificate_senders_would_not_trust_fails_the_policy(lab, lab_root, tmp_path):
    """Without the lab CA (the system store, as senders have), the lab's certificate is untrusted."""
    root = _root_with_contract(
        lab_root, tmp_path, lambda text: "\n".join(line for line in text.splitlines() if "ca_file" not in line) + "\n"
    )
    code, env = run(root, "dns.mail.status")
    (fetched,) = by_id(env, "dns.mta_sts.policy")
    assert fetched["status"] == "fail" and "certificate" in fetched["detail"], fetched
    assert code == 1


def test_a_null_mx_is_what_a_domain_that_receives_no_mail_should_publish(lab, lab_root, tmp_path):
    root = _root_with_contract(
        lab_root,
        tmp_path,
        lambda text: text.replace("  - domain: spine.test\n", "  - domain: spine.test\n    receives_mail: false\n"),
    )
    with replaced(lab, "spine.test", "MX", ["0 ."]):
        _, env = run(root, "dns.mail.status")
    (present,) = by_id(env, "dns.mx.present")
    assert present["status"] == "ok" and "accepts no mail" in present["detail"], present
    assert not by_id(env, "dns.mx.mail_host")
    _, env = run(root, "dns.mail.status")  # the lab's real MX, for a domain said to receive none
    (present,) = by_id(env, "dns.mx.present")
    assert present["status"] == "warn" and "null MX" in present["detail"], present


def test_a_broken_record_at_a_subdomain_is_reported_not_replaced(lab, lab_root, tmp_path):
    """RFC 7489 6.6.3: receivers discard it and use spine.test's record; the check names the broken one."""
    root = _root_with_contract(lab_root, tmp_path, lambda _: "version: 1\ndomains:\n  - domain: sub.spine.test\n")
    with replaced(lab, "_dmarc.sub.spine.test", "TXT", [f"p=quarantine; v=DMARC1; {RUA}"]):
        code, env = run(root, "dmarc.check")
    (record,) = by_id(env, "dns.dmarc.record")
    assert record["status"] == "fail" and record["subject"] == "_dmarc.sub.spine.test", record
    assert "receivers discard it and apply _dmarc.spine.test" in record["detail"]
    (syntax,) = by_id(env, "dns.dmarc.syntax")
    assert "v= is tag 2" in syntax["detail"] and code == 1
    # Without the broken record, the organizational domain's applies, and says so.
    code, env = run(root, "dmarc.check")
    (record,) = by_id(env, "dns.dmarc.record")
    assert record["status"] == "ok" and "inherited from _dmarc.spine.test" in record["detail"] and code == 0
