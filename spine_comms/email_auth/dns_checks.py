"""Turn DNS answers into checks, one group per record family: MX and the mail host.

Each group is a function of (domain expectations, query) that returns checks,
so dns.mail.status can run the groups concurrently and dkim.check / dmarc.check
can run just theirs (SPF, DKIM and DMARC are in record_checks; MTA-STS and TLS-RPT in
transport_checks). Inside a group,
lookups that do not depend on each other are asked at once: wall time follows
the depth of dependent queries, not their number. DNS outcomes map to statuses in one place (`missing_or_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from spine_comms.contracts.mailauth import Domain
from spine_comms.core.result import Check, Status
from spine_comms.protocols.dns import Answer
from spine_comms.protocols.http import is_address

Query = Callable[[str, str], Answer]


def parallel(function: Callable, items: Iterable) -> list:
    """Run function over items at once (threads: the work is waiting on DNS)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(function, items))


def make_check(check_id, status, detail, subject, expected=None, actual=None, evidence=None) -> Check:
    return Check(
        id=check_id,
        status=Status(status),
        detail=detail,
        subject=subject,
        expected=expected,
        actual=actual,
        evidence=evidence,
    )


def missing_or_error(check_id: str, subject: str, answer: Answer, *, required: bool, expected) -> Check:
    """A record that is not there: fail when required, else ok; a DNS error is never a pass."""
    if answer.outcome == "error":
        return make_check(
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
    return make_check(check_id, status, detail, subject, expected, None, answer.evidence())


# ---------------------------------------------------------------- MX and the mail host


def _mx_pairs(records) -> list[tuple[int, str]]:
    """(preference, target) per MX record; the null MX's target "." becomes ""."""
    pairs = []
    for record in records:
        preference, _, target = record.partition(" ")
        pairs.append((int(preference) if preference.isdigit() else -1, target.strip().rstrip(".").lower()))
    return pairs


def _mx_set_problem(cfg: Domain, pairs: list[tuple[int, str]]) -> tuple[str, str] | None:
    """(status, reason) when the MX set itself is wrong: null MX rules (RFC 7505) and the contract's wish."""
    null = [p for p, t in pairs if t == ""]
    if null and len(pairs) > 1:
        return "fail", (
            f"a null MX ('0 .') beside {len(pairs) - len(null)} other MX record(s) is invalid "
            "(RFC 7505 3: a domain that advertises a null MX MUST NOT advertise any other MX)"
        )
    if null and null[0] != 0:
        return "fail", f"an MX to '.' with preference {null[0]}: a null MX has preference 0 (RFC 7505 3)"
    if null:
        if cfg.receives_mail:
            return "fail", "null MX (RFC 7505): this domain accepts no mail, but the contract says it receives mail"
        return "ok", "null MX (RFC 7505): this domain accepts no mail, as the contract says"
    if not cfg.receives_mail:
        return "warn", "the contract says this domain receives no mail; a null MX ('0 .', RFC 7505) would tell senders"
    return None


def mx_checks(cfg: Domain, query: Query) -> list[Check]:
    """One verdict on the MX set (dns.mx.present), then one per real target (dns.mx.target_resolves)."""
    domain = cfg.domain
    answer = query(domain, "MX")
    expected = cfg.mail_host or ("at least one MX" if cfg.receives_mail else "a null MX (0 .)")
    if not answer.ok:
        return [missing_or_error("dns.mx.present", domain, answer, required=cfg.receives_mail, expected=expected)]
    pairs = _mx_pairs(answer.records)
    targets = sorted({t for _, t in pairs if t})
    problem = _mx_set_problem(cfg, pairs)
    if problem:
        status, detail = problem
    else:
        status, detail = "ok", f"{len(targets)} MX target(s): {', '.join(targets)}"
    checks = [make_check("dns.mx.present", status, detail, domain, expected, list(answer.records), answer.evidence())]
    checks.extend(parallel(lambda target: _mx_target(target, query), targets))
    if cfg.mail_host and cfg.receives_mail:
        host = cfg.mail_host.rstrip(".").lower()
        status = "ok" if host in targets else "fail"
        detail = f"{host} is an MX target" if status == "ok" else f"{host} is not among the MX targets"
        checks.append(make_check("dns.mx.mail_host", status, detail, domain, host, targets, answer.evidence()))
    return checks


def _mx_target(target: str, query: Query) -> Check:
    """A real MX target: a host name (not an address) with A or AAAA, and not an alias."""
    expected = "A or AAAA, not a CNAME"
    if is_address(target):
        detail = f"MX target {target} is an address; an MX names a host (RFC 5321 5.1, RFC 1035 3.3.9)"
        return make_check("dns.mx.target_resolves", "fail", detail, target, expected, target)
    a, aaaa, alias = parallel(lambda t: query(target, t), ("A", "AAAA", "CNAME"))
    found = [*a.records, *aaaa.records]
    evidence = [a.evidence(), aaaa.evidence(), alias.evidence()]
    if alias.ok:
        detail = (
            f"MX target {target} is an alias (CNAME to {', '.join(alias.records)}); "
            "an MX must name the host itself (RFC 2181 10.3, RFC 5321 5.1)"
        )
        return make_check("dns.mx.target_resolves", "fail", detail, target, expected, list(alias.records), evidence)
    errors = [x for x in (a, aaaa, alias) if x.outcome == "error"]
    if found and not errors:
        return make_check("dns.mx.target_resolves", "ok", f"{target} -> {', '.join(found)}", target, expected, found,
                      evidence)  # fmt: skip
    if errors:
        bad = errors[0]
        detail = f"could not resolve {target} {bad.rdtype}: {bad.error}"
        return make_check("dns.mx.target_resolves", "error", detail, target, expected, found or None, evidence)
    detail = f"MX target {target} has no A or AAAA record"
    return make_check("dns.mx.target_resolves", "fail", detail, target, expected, None, evidence)


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
        checks.append(make_check("dns.host.address", "fail", detail, host, expected, found, evidence))
    else:
        checks.append(
            make_check("dns.host.address", "ok", f"{host} -> {', '.join(found)}", host, expected, found, evidence)
        )

    def confirm(address: str) -> list[Check]:
        answer = ptr(address)
        if not answer.ok:
            return [missing_or_error("dns.host.ptr", address, answer, required=True, expected=host)]
        names = list(answer.records)
        out = [
            make_check(
                "dns.host.ptr", "ok", f"{address} -> {', '.join(names)}", address, host, names, answer.evidence()
            )
        ]
        family = "AAAA" if ":" in address else "A"
        forward = parallel(lambda name: query(name, family), names)
        confirmed = [n for n, f in zip(names, forward, strict=True) if address in f.records]
        evidence = [answer.evidence(), *(f.evidence() for f in forward)]
        if confirmed:
            out.append(
                make_check(
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
                make_check(
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
                make_check(
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
