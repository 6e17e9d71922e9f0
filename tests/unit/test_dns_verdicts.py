"""MX rules (RFC 5321 5.1, RFC 2181 10.3, RFC 7505) and the rule over every check group: one check id,
one verdict per subject, whatever the records say. The zones are in-test query functions; the
same rules run against the lab's Knot in tests/integration/test_dns_records_rfc_lab.py."""

from __future__ import annotations

import itertools

import pytest

from spine_comms.contracts.mailauth import Domain
from spine_comms.email_auth import dns_checks, record_checks, transport_checks
from spine_comms.protocols.dns import Answer
from tests.unit.test_spf import zone

D = "example.com"
BASE = {
    (D, "TXT"): ["v=spf1 mx -all"],
    (D, "A"): ["192.0.2.1"],
    ("mx.example.com", "A"): ["192.0.2.10"],
    ("mx2.example.com", "A"): ["192.0.2.11"],
    ("10.2.0.192.in-addr.arpa", "PTR"): ["mx.example.com"],
    (f"_dmarc.{D}", "TXT"): ["v=DMARC1; p=reject; rua=mailto:d@example.com"],
    (f"_mta-sts.{D}", "TXT"): ["v=STSv1; id=1"],
    (f"_smtp._tls.{D}", "TXT"): ["v=TLSRPTv1; rua=mailto:t@example.com"],
    ("sel._domainkey.example.com", "TXT"): ["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="],
    ("alias.example.com", "CNAME"): ["mx.example.com"],
    ("alias.example.com", "A"): ["192.0.2.10"],
}
MX_SETS = {
    "one": ["10 mx.example.com"],
    "two": ["10 mx.example.com", "20 mx2.example.com"],
    "same-host-twice": ["10 mx.example.com", "20 mx.example.com"],
    "null": ["0 ."],
    "null-beside-real": ["0 .", "10 mx.example.com"],
    "null-preference-5": ["5 ."],
    "alias": ["10 alias.example.com"],
    "address": ["10 192.0.2.10"],
    "unresolvable": ["10 gone.example.com"],
    "servfail": "SERVFAIL",
    "none": None,
}
OTHER_RECORDS = {
    "as-is": {},
    "dmarc-broken": {(f"_dmarc.{D}", "TXT"): ["p=reject; v=DMARC1"]},
    "dmarc-two": {(f"_dmarc.{D}", "TXT"): ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "dmarc-sp-none": {(f"_dmarc.{D}", "TXT"): ["v=DMARC1; p=reject; sp=none; pct=50"]},
    "sts-broken": {(f"_mta-sts.{D}", "TXT"): ["id=1; v=STSv1", "v=spf1 -all"]},
    "sts-two": {(f"_mta-sts.{D}", "TXT"): ["v=STSv1; id=1", "v=STSv1; id=2"]},
    "dmarc-two-addresses-one-destination": {
        (f"_dmarc.{D}", "TXT"): ["v=DMARC1; p=reject; rua=mailto:a@reports.net,mailto:b@reports.net"]
    },
    "tlsrpt-bad": {(f"_smtp._tls.{D}", "TXT"): ["v=TLSRPTv1; rua=ftp://x/y,t@example.com"]},
    "everything-servfail": {
        (f"_dmarc.{D}", "TXT"): "SERVFAIL",
        (f"_mta-sts.{D}", "TXT"): "SERVFAIL",
        (f"_smtp._tls.{D}", "TXT"): "SERVFAIL",
        (D, "TXT"): "SERVFAIL",
    },
}


def _zone(mx, other: dict):
    records = dict(BASE)
    if mx is not None:
        records[(D, "MX")] = mx
    records.update(other)
    return zone(records)


def _all_checks(cfg: Domain, query) -> list:
    # The policy host mta-sts.example.com has no address here: the fetch fails before any socket.
    ptr = lambda address: query(".".join(reversed(address.split("."))) + ".in-addr.arpa", "PTR")  # noqa: E731
    groups = [
        dns_checks.mx_checks,
        lambda c, q: dns_checks.host_checks(c, q, ptr),
        record_checks.spf_checks,
        record_checks.dkim_checks,
        record_checks.dmarc_checks,
        transport_checks.mta_sts_checks,
        transport_checks.tls_rpt_checks,
    ]
    return [check for group in groups for check in group(cfg, query)]


@pytest.mark.parametrize(
    ("mx", "other", "receives"),
    list(itertools.product(MX_SETS, OTHER_RECORDS, (True, False))),
)
def test_one_check_id_gives_one_verdict_per_subject(mx: str, other: str, receives: bool) -> None:
    cfg = Domain(domain=D, mail_host="mx.example.com", dkim_selectors=["sel", "sel"], mta_sts="required",
                 tls_rpt="required", receives_mail=receives)  # fmt: skip
    checks = _all_checks(cfg, _zone(MX_SETS[mx], OTHER_RECORDS[other]))
    seen: dict[tuple[str, str], str] = {}
    for check in checks:
        key = (check.id, check.subject)
        assert key not in seen, f"{key}: {seen[key]} and {check.status} ({check.detail})"
        seen[key] = str(check.status)
    assert ("dns.mx.present", D) in seen


def _mx(records, **contract) -> dict[str, list]:
    cfg = Domain(domain=D, mail_host=contract.pop("mail_host", None), **contract)
    out: dict[str, list] = {}
    for check in dns_checks.mx_checks(cfg, _zone(records, {})):
        out.setdefault(check.id, []).append(check)
    return out


def test_a_null_mx_alone_is_a_domain_that_accepts_no_mail() -> None:
    checks = _mx(["0 ."], mail_host="mx.example.com")
    (present,) = checks["dns.mx.present"]
    assert present.status == "fail" and "accepts no mail" in present.detail
    assert "dns.mx.target_resolves" not in checks  # "." is no host to resolve
    assert checks["dns.mx.mail_host"][0].status == "fail"
    (declared,) = _mx(["0 ."], receives_mail=False)["dns.mx.present"]
    assert declared.status == "ok"


def test_a_null_mx_beside_real_ones_is_invalid_and_never_looked_up() -> None:
    query = _zone(["0 .", "10 mx.example.com"], {})
    checks = dns_checks.mx_checks(Domain(domain=D), query)
    assert [(c.id, c.status) for c in checks] == [("dns.mx.present", "fail"), ("dns.mx.target_resolves", "ok")]
    assert "RFC 7505" in checks[0].detail
    assert not [q for q in query.asked if q[0] in ("", ".")]


def test_mx_targets_that_are_aliases_or_addresses_fail() -> None:
    (alias,) = _mx(["10 alias.example.com"])["dns.mx.target_resolves"]
    assert alias.status == "fail" and "CNAME to mx.example.com" in alias.detail
    (address,) = _mx(["10 192.0.2.10"])["dns.mx.target_resolves"]
    assert address.status == "fail" and "address" in address.detail


def test_a_target_whose_alias_lookup_fails_is_not_a_pass() -> None:
    query = _zone(["10 mx.example.com"], {("mx.example.com", "CNAME"): "SERVFAIL"})
    (_, target) = dns_checks.mx_checks(Domain(domain=D), query)
    assert target.status == "error"


def test_the_mta_sts_policy_host_without_an_address_fails_without_a_socket() -> None:
    checks = transport_checks.mta_sts_checks(Domain(domain=D, mta_sts="required"), _zone(["10 mx.example.com"], {}))
    by_id = {c.id: c for c in checks}
    assert by_id["dns.mta_sts.record"].status == "ok"
    assert by_id["dns.mta_sts.policy"].status == "fail" and "no such name" in by_id["dns.mta_sts.policy"].detail
    assert "dns.mta_sts.mx" not in by_id


def test_an_optional_mta_sts_without_a_record_fetches_nothing() -> None:
    asked = []

    def query(name: str, rdtype: str) -> Answer:
        asked.append(name)
        return Answer(name, rdtype, "nxdomain")

    (record,) = transport_checks.mta_sts_checks(Domain(domain=D, mta_sts="optional"), query)
    assert record.status == "ok" and set(asked) == {f"_mta-sts.{D}"}  # no policy host, no MX


def test_a_contract_listing_a_domain_twice_is_refused() -> None:
    from pydantic import ValidationError

    from spine_comms.contracts.mailauth import MailAuthContract

    with pytest.raises(ValidationError, match="listed more than once"):
        MailAuthContract.model_validate({"version": 1, "domains": [{"domain": "a.example"}, {"domain": "A.example"}]})
