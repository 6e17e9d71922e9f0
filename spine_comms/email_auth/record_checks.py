"""Checks for the authentication records: SPF, DKIM and DMARC.

The record logic lives in spine_comms.mail (spf, dmarc, dkim_record); this
module only turns its reports into checks against the contract's expectations.
"""

from __future__ import annotations

from spine_comms.contracts.mailauth import DmarcPolicy, Domain
from spine_comms.core.result import Check, Status
from spine_comms.email_auth.dns_checks import Query, missing_or_error, parallel

_POLICY_RANK = {DmarcPolicy.NONE: 0, DmarcPolicy.QUARANTINE: 1, DmarcPolicy.REJECT: 2}


class _Checks(list):
    """Checks about one subject: `add` fills in the subject, so each verdict fits on a line."""

    def __init__(self, subject: str):
        super().__init__()
        self.subject = subject

    def add(self, check_id, status, detail, expected=None, actual=None, evidence=None) -> _Checks:
        self.append(Check(check_id, Status(status), detail, self.subject, expected, actual, evidence))
        return self


def _record_outcome(out: _Checks, check_id: str, report, version: str, *, required: bool, rfc: str) -> bool:
    """The verdict of an SPF or DMARC lookup; True when exactly one record was found to go on with."""
    expected, evidence = f"one {version} record", {"records": report.records, "queries": report.evidence}
    if report.outcome == "error":
        evidence["kind"] = report.error_kind
        out.add(check_id, "error", "; ".join(report.errors) or "DNS error", expected, report.records, evidence)
    elif report.outcome == "missing":
        out.add(check_id, "fail" if required else "ok", f"{out.subject}: no {version} record", expected, [], evidence)
    elif report.outcome == "multiple":
        detail = f"{len(report.records)} {version} records ({rfc})"
        out.add(check_id, "fail", detail, expected, report.records, evidence)
    else:
        out.add(check_id, "ok", report.records[0], expected, report.records, evidence)
        return True
    return False


# ---------------------------------------------------------------- SPF


def spf_checks(cfg: Domain, query: Query) -> list[Check]:
    from spine_comms.mail.spf import evaluate_spf

    report = evaluate_spf(cfg.domain, query)
    out = _Checks(cfg.domain)
    if not _record_outcome(out, "dns.spf.record", report, "v=spf1", required=cfg.spf.required,
                           rfc="RFC 7208 4.5: permerror"):  # fmt: skip
        return out
    # The two limits have checks of their own; spf.py words their problems "over the limit".
    syntax = [p for p in report.problems if "over the limit" not in p]
    status = "fail" if syntax else "warn" if report.warnings else "ok"
    detail = "; ".join(syntax or report.warnings) or "valid"
    out.add("dns.spf.syntax", status, detail, "valid RFC 7208 syntax", syntax + report.warnings, report.tree)
    lookups, voids = report.lookup_count, report.void_count
    detail = f"{lookups} DNS-querying terms (limit 10)"
    out.add("dns.spf.lookups", "fail" if lookups > 10 else "ok", detail, "<= 10", lookups, report.tree)
    detail = f"{voids} void lookups (limit 2)"
    out.add("dns.spf.void_lookups", "fail" if voids > 2 else "ok", detail, "<= 2", voids, report.tree)
    wanted = list(cfg.spf.all)
    actual = f"{report.all_qualifier}all" if report.all_qualifier else None
    if actual in wanted:
        out.add("dns.spf.all", "ok", f"ends with {actual}", wanted, actual, report.records)
    else:
        ending = f"ends with {actual}" if actual else "no `all` mechanism (the default result is neutral)"
        out.add("dns.spf.all", "fail", f"{ending}; the contract wants {' or '.join(wanted)}", wanted, actual,
                report.records)  # fmt: skip
    return out


# ---------------------------------------------------------------- DKIM


def dkim_checks(cfg: Domain, query: Query) -> list[Check]:
    from spine_comms.mail.dkim_record import key_strength, parse_dkim_record

    def one(selector: str) -> list[Check]:
        name = f"{selector}._domainkey.{cfg.domain}"
        answer = query(name, "TXT")
        if not answer.ok:
            return [missing_or_error("dns.dkim.selector_present", name, answer, required=True, expected="v=DKIM1")]
        out = _Checks(name)
        records = [r for r in answer.records if r.strip()]
        if len(records) != 1:
            detail = f"{len(records)} TXT records at {name} (want one)"
            return out.add("dns.dkim.selector_present", "fail", detail, "one v=DKIM1 record", records,
                           answer.evidence())  # fmt: skip
        record = parse_dkim_record(records[0])
        out.add("dns.dkim.selector_present", "ok", f"{record.key_type or 'rsa'} key published", "v=DKIM1 record",
                records[0], answer.evidence())  # fmt: skip
        if record.problems:
            return out.add("dns.dkim.record", "fail", "; ".join(record.problems), "a valid DKIM key record",
                           record.problems, records[0])  # fmt: skip
        status, reason = key_strength(record)
        key = {"type": record.key_type, "bits": record.bits, "testing": record.testing}
        return out.add("dns.dkim.key", status, reason, "RSA >= 2048 bits or Ed25519", key, records[0])

    # A selector listed twice is one record: one verdict.
    return [check for group in parallel(one, dict.fromkeys(cfg.dkim_selectors)) for check in group]


def dkim_record_at(domain: str, selector: str, query: Query):
    """The parsed DKIM record for one selector, or None (for key and server comparisons)."""
    from spine_comms.mail.dkim_record import parse_dkim_record

    answer = query(f"{selector}._domainkey.{domain}", "TXT")
    records = [r for r in answer.records if r.strip()] if answer.ok else []
    return parse_dkim_record(records[0]) if len(records) == 1 else None


# ---------------------------------------------------------------- DMARC


def dmarc_checks(cfg: Domain, query: Query) -> list[Check]:
    from spine_comms.mail.dmarc import evaluate_dmarc

    report = evaluate_dmarc(cfg.domain, query)
    own = f"_dmarc.{cfg.domain.lower().rstrip('.')}"
    if report.discarded.get(own) and not (report.record_name == own and report.records):
        return _broken_dmarc(_Checks(own), report, report.discarded[own])
    out = _Checks(report.record_name)
    if not _record_outcome(out, "dns.dmarc.record", report, "v=DMARC1", required=True,
                           rfc="RFC 7489 6.6.3: none applies"):  # fmt: skip
        return out
    if report.inherited:
        out[-1].detail += f" (inherited from {report.record_name})"
    record = report.record
    problems = (record.problems if record else []) or report.problems
    if report.outcome == "invalid" or problems:
        return out.add("dns.dmarc.syntax", "fail", "; ".join(problems), "valid RFC 7489 syntax", problems,
                       report.records)  # fmt: skip
    # The policy tags (p=none, sp=none, pct) have their verdict in dns.dmarc.policy; other oddities warn here.
    warnings = [w for w in record.warnings if not w.startswith(_POLICY_WARNINGS)]
    warnings += [f"ignored by receivers (RFC 7489 6.6.3): {r!r}" for r in report.discarded.get(report.record_name, [])]
    out.add("dns.dmarc.syntax", "warn" if warnings else "ok", "; ".join(warnings) or "valid", "valid RFC 7489 syntax",
            warnings, report.records)  # fmt: skip
    _policy(out, cfg, report)
    _reports(out, cfg, report)
    return out


_POLICY_WARNINGS = ("p=none", "sp=none", "pct=")


def _broken_dmarc(out: _Checks, report, broken: list[str]) -> list[Check]:
    """The record at the domain's own name is meant as DMARC but receivers discard it (RFC 7489 6.6.3).

    Reported as broken, never replaced by the organizational domain's record: that record is what
    receivers fall back to, which the detail says, but the record to fix is this one.
    """
    from spine_comms.mail.dmarc import parse_dmarc

    if report.outcome == "ok" and report.inherited:
        instead = f"receivers discard it and apply {report.record_name} ({report.records[0]})"
    elif report.outcome == "error":
        instead = f"receivers discard it; what they apply instead could not be asked ({'; '.join(report.errors)})"
    else:
        instead = "receivers discard it, so no DMARC policy applies"
    evidence = {"records": broken, "queries": report.evidence}
    problems = [p for r in broken for p in parse_dmarc(r).problems]
    what = "a TXT record meant as DMARC is" if len(broken) == 1 else f"{len(broken)} TXT records meant as DMARC are"
    detail = f"{out.subject}: {what} not valid; {instead}"
    out.add("dns.dmarc.record", "fail", detail, "one v=DMARC1 record", broken, evidence)
    return out.add("dns.dmarc.syntax", "fail", "; ".join(problems), "valid RFC 7489 syntax", problems, broken)


def _rate_policy(tag: str, value: str | None, minimum: DmarcPolicy, who: str) -> tuple[str, str] | None:
    """(status, reason) for one policy tag against the contract's minimum; None when it is fine."""
    if value not in _POLICY_RANK:
        return "fail", f"{tag}={value}: unknown policy"
    if _POLICY_RANK[DmarcPolicy(value)] < _POLICY_RANK[minimum]:
        return "fail", f"{tag}={value} is weaker than the contract's {minimum} ({who})"
    if value == "none":
        return "warn", f"{tag}=none: monitoring only, spoofed mail from {who} is delivered"
    return None


def _policy(out: _Checks, cfg: Domain, report) -> None:
    """One verdict over p= (or the inherited sp=), sp= for subdomains, and pct=: the worst of them."""
    record, minimum = report.record, cfg.dmarc.min_policy
    actual = {"p": record.p, "sp": record.sp, "pct": record.pct, "adkim": record.adkim, "aspf": record.aspf}
    expected = f">= {minimum}"
    inherited_sp = report.inherited and record.sp is not None
    policy = report.policy or record.p
    findings = [_rate_policy("sp" if inherited_sp else "p", policy, minimum, cfg.domain)]
    if not report.inherited and record.sp is not None and record.sp != record.p:
        # RFC 7489 6.3: sp= is the policy for every subdomain; sp=none under p=reject leaves them open.
        findings.append(_rate_policy("sp", record.sp, minimum, f"subdomains of {cfg.domain}"))
    if record.pct < 100:
        findings.append(("warn", f"p={policy} applied to {record.pct}% of failing mail only"))
    fails = [reason for status, reason in filter(None, findings) if status == "fail"]
    warns = [reason for status, reason in filter(None, findings) if status == "warn"]
    shown = f"p={policy}" + (f", sp={record.sp}" if record.sp and not inherited_sp else "")
    status = "fail" if fails else "warn" if warns else "ok"
    out.add("dns.dmarc.policy", status, "; ".join(fails + warns) or shown, expected, actual)


def _reports(out: _Checks, cfg: Domain, report) -> None:
    rua = report.record.rua
    if not rua:
        status = "fail" if cfg.dmarc.rua_required else "ok"
        expected = "rua=mailto:..." if cfg.dmarc.rua_required else "optional"
        out.add("dns.dmarc.rua", status, "no rua: aggregate reports go nowhere", expected, [])
        return
    out.add("dns.dmarc.rua", "ok", ", ".join(rua), "rua=mailto:...", rua)
    asked: set[str] = set()
    for dest in report.external_destinations:
        where = dest.get("record_name") or dest.get("domain", "")
        if where in asked:
            continue  # two addresses at one destination: one authorization, one verdict
        asked.add(where)
        if dest.get("authorized") is True:
            status, detail = "ok", f"{dest['domain']} accepts reports for {cfg.domain}"
        elif dest.get("authorized") is None:
            status, detail = "error", f"could not ask {where}"
        else:
            status, detail = "fail", f"{dest['domain']} has not authorized reports for {cfg.domain} ({where})"
        check = Check("dns.dmarc.rua_authorized", Status(status), detail, where, f"v=DMARC1 at {where}",
                      dest.get("records"), dest)  # fmt: skip
        out.append(check)
