"""Turn DNS answers into checks, one group per record family: MX, the mail host, MTA-STS, TLS-RPT.

Each group is a function of (domain expectations, query) that returns checks,
so dns.mail.status can run the groups concurrently and dkim.check / dmarc.check
can run just theirs (SPF, DKIM and DMARC are in record_checks). Inside a group,
lookups that do not depend on each other are asked at once: wall time follows
the depth of dependent queries, not their number. DNS outcomes map to statuses in one place (`missing_or_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from spine_comms.contracts.mailauth import Domain, Presence
from spine_comms.core.result import Check, Status
from spine_comms.protocols.dns import Answer

Query = Callable[[str, str], Answer]


def parallel(function: Callable, items: Iterable) -> list:
    """Run function over items at once (threads: the work is waiting on DNS)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(function, items))


def _check(check_id, status, detail, subject, expected=None, actual=None, evidence=None) -> Check:
    return Check(check_id, Status(status), detail, subject, expected, actual, evidence)


def missing_or_error(check_id: str, subject: str, answer: Answer, *, required: bool, expected) -> Check:
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
        return [missing_or_error("dns.mx.present", domain, answer, required=True, expected=expected)]
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
        return [missing_or_error("dns.host.address", host, answer, required=True, expected=expected)]
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
            return [missing_or_error("dns.host.ptr", address, answer, required=True, expected=host)]
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
        return [missing_or_error(check_id, name, answer, required=required, expected=f"{version}; ...")]
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
