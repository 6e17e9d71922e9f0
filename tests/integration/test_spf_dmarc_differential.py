"""Our SPF and DMARC verdicts against checkdmarc's, on zones served by the lab's Knot.

Each case publishes its records by dynamic update under its own name
(`c01.spine.test` ...), then both evaluators read the same real DNS: ours
through the lab's port, checkdmarc through the copy of Knot listening on port
53 at the lab's resolver address (checkdmarc takes nameserver addresses, not
ports). Both verdicts are reduced to one class and must agree, or differ as
the case's `why` says.

checkdmarc 6.0.4 follows RFC 9989 (DMARCbis) where we follow RFC 7489, and it
stops at the first permerror where we report every finding; the documented
differences come from that, or from the lab (Knot refuses names outside its
zones, such as `_dmarc.test`, which the RFC 9989 tree walk asks for).
"""

# The case table is one readable line per case, by design:
# ruff: noqa: E501

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import checkdmarc.dmarc
import checkdmarc.spf
import checkdmarc.utils
import dns.query
import dns.rcode
import dns.update
import pytest

from spine_comms.mail.dmarc import evaluate_dmarc
from spine_comms.mail.spf import evaluate_spf
from spine_comms.protocols.dns import Resolver
from tests.dns_update import replaced, set_records

pytestmark = pytest.mark.lab

# A report destination outside the organizational domain spine.test: the lab's other zone.
# Both sides agree it is external (the PSL lists in-addr.arpa as a public suffix).
REPORTS = "reports.127.in-addr.arpa"
REVERSE_ZONE = "127.in-addr.arpa"


@dataclass(frozen=True)
class Case:
    id: str
    check: str  # spf | dmarc
    what: str
    records: tuple[tuple[str, str, str], ...]  # (name, type, value): "@" is the case's domain, "x" is x.<domain>
    ours: str
    theirs: str | None = None  # checkdmarc's class when it differs from ours
    why: str = ""
    dmarc_at_spine_test: str | None = None  # replaces _dmarc.spine.test during the case ("" removes it)


def txt(name: str, *values: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((name, "TXT", v) for v in values)


ELEVEN = " ".join(f"include:i{n}.{{d}}" for n in range(1, 12))
INHERITABLE = "v=DMARC1; p=reject; psd=n; rua=mailto:dmarc@spine.test"

# fmt: off
CASES = [
    Case("c01", "spf", "good: ip4, a, include", txt("@", "v=spf1 ip4:192.0.2.0/24 a:mail.spine.test include:inc.{d} -all") + txt("inc", "v=spf1 ip4:198.51.100.0/24 -all"), "valid"),
    Case("c02", "spf", "syntax error: unknown mechanism", txt("@", "v=spf1 ip4:192.0.2.1 foo:bar -all"), "invalid"),
    Case("c03", "spf", "two SPF records", txt("@", "v=spf1 -all", "v=spf1 ip4:192.0.2.1 -all"), "multiple"),
    Case("c04", "spf", "11 includes: too many lookups", txt("@", f"v=spf1 {ELEVEN} -all") + tuple(x for n in range(1, 12) for x in txt(f"i{n}", "v=spf1 -all")), "too-many-lookups"),
    Case("c05", "spf", "3 a: to nonexistent names: too many void lookups", txt("@", "v=spf1 a:nx1.{d} a:nx2.{d} a:nx3.{d} -all"), "too-many-void"),
    Case("c06", "spf", "3 include: to nonexistent names", txt("@", "v=spf1 include:nx1.{d} include:nx2.{d} include:nx3.{d} -all"), "too-many-void", "invalid",
         "checkdmarc stops at the first include without SPF (a permerror); we go on and also count 3 void lookups"),
    Case("c07", "spf", "include loop", txt("@", "v=spf1 include:loop.{d} -all") + txt("loop", "v=spf1 include:{d} -all"), "loop"),
    Case("c08", "spf", "missing SPF: the name exists, no TXT", (("@", "A", "192.0.2.8"),), "missing"),
    Case("c09", "spf", "redirect to a good record", txt("@", "v=spf1 redirect=r.{d}") + txt("r", "v=spf1 ip4:192.0.2.9 -all"), "valid"),
    Case("c10", "spf", "redirect to a name without SPF", (*txt("@", "v=spf1 redirect=r.{d}"), ("r", "A", "192.0.2.10")), "invalid"),
    Case("c11", "spf", "ptr mechanism (discouraged)", (*txt("@", "v=spf1 ptr -all"), ("@", "A", "192.0.2.11")), "warning"),
    Case("c12", "spf", "+all", txt("@", "v=spf1 +all"), "invalid", "valid",
         "+all is valid syntax, so checkdmarc accepts it; we fail it because any host may then send as the domain"),
    Case("c13", "spf", "ip4 with a CIDR length over 32", txt("@", "v=spf1 ip4:192.0.2.0/33 -all"), "invalid"),
    Case("c14", "spf", "mx with 11 MX names", txt("@", "v=spf1 mx -all") + tuple(("@", "MX", f"{n} h{n}.{{d}}.") for n in range(1, 12)) + tuple((f"h{n}", "A", f"192.0.2.{n}") for n in range(1, 12)), "too-many-lookups"),
    Case("c15", "spf", "unknown modifier (ignored)", txt("@", "v=spf1 ip4:192.0.2.15 foo=bar -all"), "warning"),
    Case("c16", "spf", "bad macro letter", txt("@", "v=spf1 exists:%{x}.{d} -all"), "invalid"),
    Case("c17", "spf", "v=spf10 is not SPF", txt("@", "v=spf10 -all"), "missing"),
    Case("c18", "dmarc", "good: p=reject, rua in the same organization", txt("_dmarc", "v=DMARC1; p=reject; rua=mailto:dmarc@spine.test"), "valid"),
    Case("c19", "dmarc", "p=none", txt("_dmarc", "v=DMARC1; p=none; rua=mailto:dmarc@spine.test"), "p-none"),
    Case("c20", "dmarc", "rua is not a URI", txt("_dmarc", "v=DMARC1; p=reject; rua=dmarc@spine.test"), "invalid"),
    Case("c21", "dmarc", "external rua without authorization", txt("_dmarc", f"v=DMARC1; p=reject; rua=mailto:dmarc@{REPORTS}"), "unauthorized-rua"),
    Case("c22", "dmarc", "external rua with authorization", txt("_dmarc", f"v=DMARC1; p=reject; rua=mailto:dmarc@{REPORTS}") + txt(f"{{d}}._report._dmarc.{REPORTS}.", "v=DMARC1"), "valid"),
    Case("c23", "dmarc", "pct out of range", txt("_dmarc", "v=DMARC1; p=reject; pct=150; rua=mailto:dmarc@spine.test"), "invalid", "warning",
         "RFC 9989 removed pct, so checkdmarc only warns that it is obsolete; RFC 7489 6.3 allows 0-100"),
    Case("c24", "dmarc", "bad p value", txt("_dmarc", "v=DMARC1; p=bogus; rua=mailto:dmarc@spine.test"), "invalid"),
    Case("c25", "dmarc", "two DMARC records", txt("_dmarc", "v=DMARC1; p=reject", "v=DMARC1; p=none"), "multiple"),
    Case("c26", "dmarc", "missing DMARC, and the domain does not exist", (), "missing", dmarc_at_spine_test=""),
    Case("c33", "dmarc", "missing DMARC everywhere, the domain exists", (("@", "A", "192.0.2.33"),), "missing", "error",
         "checkdmarc's RFC 9989 tree walk then asks _dmarc.test, which the lab's Knot refuses (on the internet: NXDOMAIN)",
         dmarc_at_spine_test=""),
    Case("c27", "dmarc", "no record: the organizational domain's applies", (("@", "A", "192.0.2.27"),), "inherited", dmarc_at_spine_test=INHERITABLE),
    Case("c28", "dmarc", "p missing", txt("_dmarc", "v=DMARC1; rua=mailto:dmarc@spine.test"), "invalid", "p-none",
         "RFC 7489 requires p=; RFC 9989 reads a missing p as p=none, and checkdmarc warns so"),
    Case("c29", "dmarc", "fo with an unknown option", txt("_dmarc", "v=DMARC1; p=reject; fo=2; rua=mailto:dmarc@spine.test"), "invalid"),
    Case("c30", "dmarc", "adkim neither r nor s", txt("_dmarc", "v=DMARC1; p=reject; adkim=x; rua=mailto:dmarc@spine.test"), "invalid", "warning",
         "RFC 9989 4.8 discards a bad value for its default, so checkdmarc warns; RFC 7489 has no such rule"),
    Case("c31", "dmarc", "unknown tag (ignored)", txt("_dmarc", "v=DMARC1; p=reject; foo=bar; rua=mailto:dmarc@spine.test"), "warning"),
    Case("c32", "dmarc", "bad sp value", txt("_dmarc", "v=DMARC1; p=reject; sp=maybe; rua=mailto:dmarc@spine.test"), "invalid"),
    Case("c34", "dmarc", "v=DMARC1 as the second tag", txt("_dmarc", "p=reject; v=DMARC1; rua=mailto:dmarc@spine.test"), "broken", "missing",
         "checkdmarc, too, refuses the record and does not fall back to spine.test's; its result then holds no record, which reads as missing here"),
    Case("c35", "dmarc", "v=dmarc1 in lower case", txt("_dmarc", "v=dmarc1; p=reject; rua=mailto:dmarc@spine.test"), "broken", "missing",
         "checkdmarc, too, refuses the record and does not fall back to spine.test's; its result then holds no record, which reads as missing here"),
    Case("c36", "dmarc", "sp=none under p=reject", txt("_dmarc", "v=DMARC1; p=reject; sp=none; rua=mailto:dmarc@spine.test"), "warning"),
    Case("c37", "dmarc", "a leading space", txt("_dmarc", " v=DMARC1; p=reject; rua=mailto:dmarc@spine.test"), "broken", "missing",
         "checkdmarc, too, refuses the record and does not fall back to spine.test's; its result then holds no record, which reads as missing here"),
]
# fmt: on


def our_spf_class(domain: str, resolver: Resolver) -> str:
    report = evaluate_spf(domain, resolver.query)
    if report.outcome != "invalid":
        return {"ok": "warning" if report.warnings else "valid"}.get(report.outcome, report.outcome)
    text = " ".join(report.problems)
    if " loop: " in text:
        return "loop"
    if report.lookup_count > 10 or "MX names; an mx term may use 10" in text:
        return "too-many-lookups"
    return "too-many-void" if report.void_count > 2 else "invalid"


def their_spf_class(domain: str, nameserver: str) -> str:
    result = checkdmarc.spf.check_spf(domain, nameservers=[nameserver], timeout=2)
    error = str(result.get("error", ""))
    if result["valid"]:
        return "warning" if result.get("warnings") else "valid"
    if "multiple SPF" in error:
        return "multiple"
    if result["record"] is None:
        return "error" if "REFUSED" in error or "timed out" in error else "missing"
    if "loop" in error.lower():
        return "loop"
    if "maximum DNS lookups" in error or "more than 10 MX records" in error:
        return "too-many-lookups"
    return "too-many-void" if "void DNS lookups" in error else "invalid"


def our_dmarc_class(domain: str, resolver: Resolver) -> str:
    report = evaluate_dmarc(domain, resolver.query)
    if report.discarded.get(f"_dmarc.{domain}") and not (report.record_name == f"_dmarc.{domain}" and report.records):
        return "broken"  # meant as DMARC, discarded by receivers: dmarc.check fails it (whatever applies instead)
    if report.outcome != "ok":
        return report.outcome
    if any(d["authorized"] is False for d in report.external_destinations):
        return "unauthorized-rua"
    if report.inherited:
        return "inherited"
    if report.policy == "none":
        return "p-none"
    return "warning" if report.warnings else "valid"


def their_dmarc_class(domain: str, nameserver: str) -> str:
    result = checkdmarc.dmarc.check_dmarc(domain, nameservers=[nameserver], timeout=2)
    error, warnings = str(result.get("error", "")), " ".join(result.get("warnings", []))
    if not result["valid"]:
        if "Multiple DMARC" in error:
            return "multiple"
        if "REFUSED" in error or "All nameservers failed" in error:
            return "error"
        return "missing" if result["record"] is None else "invalid"
    if "does not indicate that it accepts" in warnings:
        return "unauthorized-rua"
    if result["location"] != domain:
        return "inherited"
    if "A p tag value of none" in warnings:  # not "An sp tag value of none", a plain warning
        return "p-none"
    return "warning" if warnings else "valid"


def _update_reverse_zone(lab: dict, name: str, rdtype: str, values: list[str]) -> None:
    """tests/dns_update.py updates spine.test only; the external report destination lives in the reverse zone."""
    update = dns.update.UpdateMessage(REVERSE_ZONE)
    update.delete(name, rdtype)
    for value in values:
        update.add(name, 60, rdtype, f'"{value}"' if rdtype == "TXT" else value)
    reply = dns.query.tcp(update, "127.0.0.1", port=lab["ports"]["dns"], timeout=5)
    assert reply.rcode() == dns.rcode.NOERROR, f"update of {name} refused: {dns.rcode.to_text(reply.rcode())}"


def publish(lab: dict, case: Case) -> str:
    domain = f"{case.id}.spine.test"
    grouped: dict[tuple[str, str], list[str]] = {}
    for name, rdtype, value in case.records:
        name = name.replace("{d}", domain)
        absolute = name if name.endswith(".") else (f"{domain}." if name == "@" else f"{name}.{domain}.")
        grouped.setdefault((absolute, rdtype), []).append(value.replace("{d}", domain))
    for (name, rdtype), values in grouped.items():
        if name.endswith(f".{REVERSE_ZONE}."):
            _update_reverse_zone(lab, name, rdtype, values)
        else:
            set_records(lab, name, rdtype, values)
    return domain


@pytest.fixture(scope="module")
def report_destination(lab: dict) -> None:
    """The external destination receives mail (checkdmarc checks its MX) and accepts no one by default."""
    _update_reverse_zone(lab, f"{REPORTS}.", "MX", [f"10 mx.{REPORTS}."])
    _update_reverse_zone(lab, f"mx.{REPORTS}.", "A", ["127.0.0.1"])


@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}-{c.check}-{c.what.split(':')[0]}" for c in CASES])
def test_verdicts_agree_with_checkdmarc(lab: dict, report_destination: None, case: Case) -> None:
    assert (case.theirs is None) == (not case.why), "a documented difference needs both a class and a reason"
    domain = publish(lab, case)
    # checkdmarc keeps a process-wide DNS cache; the cases change DNS under it (_dmarc.spine.test).
    checkdmarc.utils.DNS_CACHE.clear()
    with ExitStack() as stack:
        if case.dmarc_at_spine_test is not None:
            values = [case.dmarc_at_spine_test] if case.dmarc_at_spine_test else []
            stack.enter_context(replaced(lab, "_dmarc.spine.test", "TXT", values))
        resolver = Resolver(lab["dns"]["server"], lab["dns"]["port"], timeout=2)
        nameserver = lab["dns"]["resolver_ip"]
        if case.check == "spf":
            ours, theirs = our_spf_class(domain, resolver), their_spf_class(domain, nameserver)
        else:
            ours, theirs = our_dmarc_class(domain, resolver), their_dmarc_class(domain, nameserver)
    assert ours == case.ours, f"{case.id} {case.what}: we say {ours}, the table says {case.ours}"
    expected_theirs = case.theirs or case.ours
    assert theirs == expected_theirs, (
        f"{case.id} {case.what}: checkdmarc says {theirs}, the table says {expected_theirs}"
        + (f" ({case.why})" if case.why else " (the same as ours)")
    )


def test_the_table_covers_what_the_issue_asks() -> None:
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)
    classes = {c.ours for c in CASES}
    wanted = {"valid", "invalid", "multiple", "too-many-lookups", "too-many-void", "loop", "missing", "p-none"}
    assert wanted | {"unauthorized-rua"} <= classes
