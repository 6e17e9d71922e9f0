"""Turn DNS answers and record reports into checks, one group per record family.

Each group is a function of (domain expectations, query) that returns checks,
so dns.mail.status can run the groups concurrently and dkim.check / dmarc.check
can run just theirs. Inside a group, lookups that do not depend on each other
are asked at once: wall time follows the depth of dependent queries, not their
number. DNS outcomes map to statuses in one place (`_missing_or_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from spine_comms.contracts.mailauth import DmarcPolicy, Domain, Presence
from spine_comms.core.result import Check, Status
from spine_comms.protocols.dns import Answer

Query = Callable[[str, str], Answer]

_POLICY_RANK = {DmarcPolicy.NONE: 0, DmarcPolicy.QUARANTINE: 1, DmarcPolicy.REJECT: 2}


def parallel(function: Callable, items: Iterable) -> list:
    """Run function over items at once (threads: the work is waiting on DNS)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(function, items))


def _check(check_id, status, detail, subject, expected=None, actual=None, evidence=None) -> Check:
    return Check(check_id, Status(status), detail, subject, expected, actual, evidence)


def _missing_or_error(check_id: str, subject: str, answer: Answer, *, required: bool, expected) -> Check:
    """A record that is not there: fail when required, else ok; a DNS error is never a pass."""
    if answer.outcome == "error":
        return _check(
            check_id,
            "error",
            f"could not resolve {answer.name} {answer.rdtype}: {answer.error}",
            subject,
            expected,
            None,
            answer.evidence(),
        )
    what = "no such name" if answer.outcome == "nxdomain" else f"no {answer.rdtype} record"
    status = "fail" if required else "ok"
    detail = f"{answer.name}: {what}" + ("" if required else " (optional)")
    return _check(check_id, status, detail, subject, expected, None, answer.evidence())


# ---------------------------------------------------------------- MX and the mail host


def mx_checks(cfg: Domain, query: Query) -> list[Check]:
    domain = cfg.domain
    answer = query(domain, "MX")
    expected = cfg.mail_host or "at least one MX"
    if not answer.ok:
        return [_missing_or_error("dns.mx.present", domain, answer, required=True, expected=expected)]
    targets = sorted({r.split()[1].rstrip(".").lower() for r in answer.records if len(r.split()) == 2})
    checks = [
        _check(
            "dns.mx.present",
            "ok",
            f"{len(targets)} MX target(s): {', '.join(targets)}",
            domain,
            expected,
            list(answer.records),
            answer.evidence(),
        )
    ]
    null_mx = targets == [""] or targets == ["."]
    if null_mx:
        checks.append(
            _check(
                "dns.mx.present",
                "fail",
                "null MX (RFC 7505): the domain accepts no mail",
                domain,
                expected,
                list(answer.records),
                answer.evidence(),
            )
        )
        return checks

    def addresses(target: str) -> tuple[str, list[Answer]]:
        return target, parallel(lambda t: query(target, t), ("A", "AAAA"))

    for target, (a, aaaa) in parallel(addresses, targets):
        found = [*a.records, *aaaa.records]
        evidence = [a.evidence(), aaaa.evidence()]
        if found:
            checks.append(
                _check(
                    "dns.mx.target_resolves",
                    "ok",
                    f"{target} -> {', '.join(found)}",
                    target,
                    "A or AAAA",
                    found,
                    evidence,
                )
            )
        elif "error" in (a.outcome, aaaa.outcome):
            bad = a if a.outcome == "error" else aaaa
            checks.append(
                _check(
                    "dns.mx.target_resolves",
                    "error",
                    f"could not resolve {target}: {bad.error}",
                    target,
                    "A or AAAA",
                    None,
                    evidence,
                )
            )
        else:
            checks.append(
                _check(
                    "dns.mx.target_resolves",
                    "fail",
                    f"MX target {target} has no A or AAAA record",
                    target,
                    "A or AAAA",
                    None,
                    evidence,
                )
            )
    if cfg.mail_host:
        host = cfg.mail_host.rstrip(".").lower()
        status = "ok" if host in targets else "fail"
        detail = f"{host} is an MX target" if status == "ok" else f"{host} is not among the MX targets"
        checks.append(_check("dns.mx.mail_host", status, detail, domain, host, targets, answer.evidence()))
    return checks


def host_checks(cfg: Domain, query: Query, ptr: Callable[[str], Answer]) -> list[Check]:
    """A/AAAA of the mail host, then PTR of each address, then forward confirmation (FCrDNS)."""
    if not cfg.mail_host:
        return []
    host = cfg.mail_host.rstrip(".").lower()
    a, aaaa = parallel(lambda t: query(host, t), ("A", "AAAA"))
    found = [*a.records, *aaaa.records]
    evidence = [a.evidence(), aaaa.evidence()]
    expected = cfg.mail_host_addresses or "A or AAAA"
    if not found:
        answer = a if a.outcome == "error" else aaaa if aaaa.outcome == "error" else a
        return [_missing_or_error("dns.host.address", host, answer, required=True, expected=expected)]
    checks = []
    if cfg.mail_host_addresses and set(found) != set(cfg.mail_host_addresses):
        missing = sorted(set(cfg.mail_host_addresses) - set(found))
        extra = sorted(set(found) - set(cfg.mail_host_addresses))
        detail = (
            "addresses differ from the contract"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
        checks.append(_check("dns.host.address", "fail", detail, host, expected, found, evidence))
    else:
        checks.append(
            _check("dns.host.address", "ok", f"{host} -> {', '.join(found)}", host, expected, found, evidence)
        )

    def confirm(address: str) -> list[Check]:
        answer = ptr(address)
        if not answer.ok:
            return [_missing_or_error("dns.host.ptr", address, answer, required=True, expected=host)]
        names = list(answer.records)
        out = [
            _check("dns.host.ptr", "ok", f"{address} -> {', '.join(names)}", address, host, names, answer.evidence())
        ]
        family = "AAAA" if ":" in address else "A"
        forward = parallel(lambda name: query(name, family), names)
        confirmed = [n for n, f in zip(names, forward, strict=True) if address in f.records]
        evidence = [answer.evidence(), *(f.evidence() for f in forward)]
        if confirmed:
            out.append(
                _check(
                    "dns.host.fcrdns",
                    "ok",
                    f"{confirmed[0]} resolves back to {address}",
                    address,
                    address,
                    confirmed,
                    evidence,
                )
            )
        elif any(f.outcome == "error" for f in forward):
            out.append(
                _check(
                    "dns.host.fcrdns",
                    "error",
                    f"could not resolve the PTR names of {address}",
                    address,
                    address,
                    None,
                    evidence,
                )
            )
        else:
            out.append(
                _check(
                    "dns.host.fcrdns",
                    "fail",
                    f"no PTR name of {address} resolves back to it",
                    address,
                    address,
                    names,
                    evidence,
                )
            )
        return out

    for group in parallel(confirm, found):
        checks.extend(group)
    return checks


# ---------------------------------------------------------------- SPF


def spf_checks(cfg: Domain, query: Query) -> list[Check]:
    from spine_comms.mail.spf import evaluate_spf

    domain = cfg.domain
    report = evaluate_spf(domain, query)
    evidence = {"records": report.records, "queries": report.evidence, "tree": report.tree}
    if report.outcome == "error":
        return [
            _check(
                "dns.spf.record",
                "error",
                "; ".join(report.errors) or "DNS error",
                domain,
                "one v=spf1 record",
                report.records,
                evidence,
            )
        ]
    if report.outcome == "missing":
        status = "fail" if cfg.spf.required else "ok"
        return [
            _check("dns.spf.record", status, f"{domain}: no v=spf1 record", domain, "one v=spf1 record", [], evidence)
        ]
    if report.outcome == "multiple":
        return [
            _check(
                "dns.spf.record",
                "fail",
                f"{len(report.records)} v=spf1 records (RFC 7208 4.5: permerror)",
                domain,
                "one v=spf1 record",
                report.records,
                evidence,
            )
        ]
    checks = [_check("dns.spf.record", "ok", report.records[0], domain, "one v=spf1 record", report.records, evidence)]
    syntax = [p for p in report.problems if not _is_limit_problem(p)]
    checks.append(
        _check(
            "dns.spf.syntax",
            "fail" if syntax else ("warn" if report.warnings else "ok"),
            "; ".join(syntax or report.warnings) or "valid",
            domain,
            "valid RFC 7208 syntax",
            syntax + report.warnings,
            evidence,
        )
    )
    checks.append(
        _check(
            "dns.spf.lookups",
            "fail" if report.lookup_count > 10 else "ok",
            f"{report.lookup_count} DNS-querying terms (limit 10)",
            domain,
            "<= 10",
            report.lookup_count,
            report.tree,
        )
    )
    checks.append(
        _check(
            "dns.spf.void_lookups",
            "fail" if report.void_count > 2 else "ok",
            f"{report.void_count} void lookups (limit 2)",
            domain,
            "<= 2",
            report.void_count,
            report.tree,
        )
    )
    wanted = list(cfg.spf.all)
    actual = f"{report.all_qualifier}all" if report.all_qualifier else None
    if actual in wanted:
        checks.append(_check("dns.spf.all", "ok", f"ends with {actual}", domain, wanted, actual, report.records))
    else:
        detail = f"ends with {actual}" if actual else "no `all` mechanism (the default result is neutral)"
        checks.append(
            _check(
                "dns.spf.all",
                "fail",
                f"{detail}; the contract wants {' or '.join(wanted)}",
                domain,
                wanted,
                actual,
                report.records,
            )
        )
    return checks


def _is_limit_problem(problem: str) -> bool:
    """The lookup and void-lookup limits have checks of their own (dns.spf.lookups, dns.spf.void_lookups)."""
    return "over the limit" in problem


# ---------------------------------------------------------------- DKIM


def dkim_checks(cfg: Domain, query: Query, selectors: list[str] | None = None) -> list[Check]:
    from spine_comms.mail.dkim_record import key_strength, parse_dkim_record

    selectors = selectors if selectors is not None else list(cfg.dkim_selectors)

    def one(selector: str) -> list[Check]:
        name = f"{selector}._domainkey.{cfg.domain}"
        answer = query(name, "TXT")
        if not answer.ok:
            return [
                _missing_or_error("dns.dkim.selector_present", name, answer, required=True, expected="v=DKIM1 record")
            ]
        records = [r for r in answer.records if r.strip()]
        if len(records) != 1:
            return [
                _check(
                    "dns.dkim.selector_present",
                    "fail",
                    f"{len(records)} TXT records at {name} (want one)",
                    name,
                    "one v=DKIM1 record",
                    records,
                    answer.evidence(),
                )
            ]
        record = parse_dkim_record(records[0])
        out = [
            _check(
                "dns.dkim.selector_present",
                "ok",
                f"{record.key_type or 'rsa'} key published",
                name,
                "v=DKIM1 record",
                records[0],
                answer.evidence(),
            )
        ]
        if record.problems:
            out.append(
                _check(
                    "dns.dkim.record",
                    "fail",
                    "; ".join(record.problems),
                    name,
                    "a valid DKIM key record",
                    record.problems,
                    records[0],
                )
            )
            return out
        status, reason = key_strength(record)
        out.append(
            _check(
                "dns.dkim.key",
                status,
                reason,
                name,
                "RSA >= 2048 bits or Ed25519",
                {"type": record.key_type, "bits": record.bits, "testing": record.testing},
                records[0],
            )
        )
        return out

    checks = []
    for group in parallel(one, selectors):
        checks.extend(group)
    return checks


def dkim_record_at(domain: str, selector: str, query: Query):
    """The parsed DKIM record for one selector, or None (for key and server comparisons)."""
    from spine_comms.mail.dkim_record import parse_dkim_record

    answer = query(f"{selector}._domainkey.{domain}", "TXT")
    records = [r for r in answer.records if r.strip()] if answer.ok else []
    return parse_dkim_record(records[0]) if len(records) == 1 else None


# ---------------------------------------------------------------- DMARC


def dmarc_checks(cfg: Domain, query: Query) -> list[Check]:
    from spine_comms.mail.dmarc import evaluate_dmarc

    domain = cfg.domain
    report = evaluate_dmarc(domain, query)
    name = report.record_name
    evidence = {"records": report.records, "queries": report.evidence}
    if report.outcome == "error":
        return [
            _check(
                "dns.dmarc.record",
                "error",
                "; ".join(report.errors) or "DNS error",
                name,
                "one v=DMARC1 record",
                report.records,
                evidence,
            )
        ]
    if report.outcome == "missing":
        return [
            _check(
                "dns.dmarc.record",
                "fail",
                f"_dmarc.{domain}: no v=DMARC1 record",
                name,
                "one v=DMARC1 record",
                [],
                evidence,
            )
        ]
    if report.outcome == "multiple":
        return [
            _check(
                "dns.dmarc.record",
                "fail",
                f"{len(report.records)} v=DMARC1 records (RFC 7489 6.6.3: none applies)",
                name,
                "one v=DMARC1 record",
                report.records,
                evidence,
            )
        ]
    where = f" (inherited from {name})" if report.inherited else ""
    checks = [
        _check(
            "dns.dmarc.record", "ok", report.records[0] + where, name, "one v=DMARC1 record", report.records, evidence
        )
    ]
    record = report.record
    problems = record.problems if record else report.problems
    if report.outcome == "invalid" or problems:
        checks.append(
            _check(
                "dns.dmarc.syntax",
                "fail",
                "; ".join(problems or report.problems),
                name,
                "valid RFC 7489 syntax",
                problems or report.problems,
                report.records,
            )
        )
        return checks
    warnings = [w for w in (record.warnings if record else []) if "p=none" not in w]
    checks.append(
        _check(
            "dns.dmarc.syntax",
            "warn" if warnings else "ok",
            "; ".join(warnings) or "valid",
            name,
            "valid RFC 7489 syntax",
            warnings,
            report.records,
        )
    )
    checks.append(_policy_check(cfg, report, name))
    checks.extend(_rua_checks(cfg, report, name))
    return checks


def _policy_check(cfg: Domain, report, name: str) -> Check:
    record = report.record
    minimum = cfg.dmarc.min_policy
    policy = report.policy or (record.p if record else None)
    actual = {"p": record.p, "sp": record.sp, "pct": record.pct, "adkim": record.adkim, "aspf": record.aspf}
    if report.inherited and record.sp:
        policy = record.sp
    try:
        rank = _POLICY_RANK[DmarcPolicy(policy)]
    except ValueError:
        return _check("dns.dmarc.policy", "fail", f"unknown policy {policy!r}", name, f">= {minimum}", actual)
    if rank < _POLICY_RANK[minimum]:
        return _check(
            "dns.dmarc.policy",
            "fail",
            f"p={policy} is weaker than the contract's {minimum}",
            name,
            f">= {minimum}",
            actual,
        )
    if policy == "none":
        return _check(
            "dns.dmarc.policy",
            "warn",
            "p=none: monitoring only, spoofed mail is delivered",
            name,
            f">= {minimum}",
            actual,
        )
    if record.pct < 100:
        return _check(
            "dns.dmarc.policy",
            "warn",
            f"p={policy} applied to {record.pct}% of failing mail only",
            name,
            f">= {minimum}",
            actual,
        )
    return _check("dns.dmarc.policy", "ok", f"p={policy}", name, f">= {minimum}", actual)


def _rua_checks(cfg: Domain, report, name: str) -> list[Check]:
    record = report.record
    if not record.rua:
        status = "fail" if cfg.dmarc.rua_required else "ok"
        return [
            _check(
                "dns.dmarc.rua",
                status,
                "no rua: aggregate reports go nowhere",
                name,
                "rua=mailto:..." if cfg.dmarc.rua_required else "optional",
                [],
            )
        ]
    checks = [_check("dns.dmarc.rua", "ok", ", ".join(record.rua), name, "rua=mailto:...", record.rua)]
    for dest in report.external_destinations:
        subject = dest.get("record_name") or dest.get("domain", "")
        authorized = dest.get("authorized")
        if authorized is True:
            status, detail = "ok", f"{dest['domain']} accepts reports for {cfg.domain}"
        elif authorized is None:
            status, detail = "error", f"could not ask {subject}"
        else:
            status, detail = "fail", f"{dest['domain']} has not authorized reports for {cfg.domain} ({subject})"
        checks.append(
            _check(
                "dns.dmarc.rua_authorized", status, detail, subject, "v=DMARC1 at " + subject, dest.get("records"), dest
            )
        )
    return checks


# ---------------------------------------------------------------- MTA-STS and TLS-RPT


def mta_sts_checks(cfg: Domain, query: Query) -> list[Check]:
    return _tagged_txt(cfg.mta_sts, f"_mta-sts.{cfg.domain}", "v=STSv1", ("id",), "dns.mta_sts.record", query)


def tls_rpt_checks(cfg: Domain, query: Query) -> list[Check]:
    return _tagged_txt(cfg.tls_rpt, f"_smtp._tls.{cfg.domain}", "v=TLSRPTv1", ("rua",), "dns.tls_rpt.record", query)


def _tagged_txt(presence: Presence, name: str, version: str, required_tags, check_id: str, query: Query) -> list[Check]:
    if presence == Presence.ABSENT:
        return []
    answer = query(name, "TXT")
    required = presence == Presence.REQUIRED
    if not answer.ok:
        return [_missing_or_error(check_id, name, answer, required=required, expected=f"{version}; ...")]
    prefix = version.lower() + ";"
    records = [r for r in answer.records if r.replace(" ", "").lower().startswith(prefix)]
    if not records:
        status = "fail" if required else "ok"
        return [
            _check(
                check_id,
                status,
                f"no {version} record among {len(answer.records)} TXT",
                name,
                f"{version}; ...",
                list(answer.records),
                answer.evidence(),
            )
        ]
    if len(records) > 1:
        return [
            _check(
                check_id,
                "fail",
                f"{len(records)} {version} records (want one)",
                name,
                f"{version}; ...",
                records,
                answer.evidence(),
            )
        ]
    tags = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (part.partition("=") for part in records[0].split(";"))
        if k.strip()
    )
    missing = [t for t in required_tags if not tags.get(t)]
    if missing:
        return [
            _check(
                check_id,
                "fail",
                f"{version} record without {', '.join(missing)}=",
                name,
                f"{version}; ...",
                records[0],
                answer.evidence(),
            )
        ]
    return [_check(check_id, "ok", records[0], name, f"{version}; ...", records[0], answer.evidence())]
