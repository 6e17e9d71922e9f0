"""Checks for the SMTP TLS records: MTA-STS (RFC 8461) with its policy file, and TLS-RPT (RFC 8460).

A `_mta-sts` TXT record only announces a policy; senders then fetch it from
https://mta-sts.<domain>/.well-known/mta-sts.txt and hold the domain's MX hosts to it. So the
record alone proves nothing: the policy is fetched as a sender would (TLS verified, no
redirects, at most 64 KiB, within a timeout), parsed, and its mx patterns are matched against
the domain's real MX set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from spine_comms.contracts.mailauth import Domain, MtaStsFetch, Presence
from spine_comms.core.result import Check
from spine_comms.email_auth.dns_checks import Query, make_check, missing_or_error, parallel
from spine_comms.mail import tls_policy_records as records
from spine_comms.mail.mta_sts_policy import Policy, mx_matches, parse_policy

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3's suggested limit


# ---------------------------------------------------------------- the TXT records


def _tag_record(presence: Presence, name: str, version: str, parse, check_id: str, query: Query):
    """The one verdict on a TXT record of this kind; returns (checks, the parsed record or None)."""
    expected = f"one valid {version}; ... record"
    answer = query(name, "TXT")
    if not answer.ok:
        required = presence == Presence.REQUIRED
        return [missing_or_error(check_id, name, answer, required=required, expected=expected)], None
    chosen = [r for r in answer.records if records.starts_with_version(r, version)]
    broken = [r for r in answer.records if records.meant_as(r, version)]
    evidence = answer.evidence()
    if len(chosen) > 1:
        detail = f"{len(chosen)} {version} records: senders then use none"
        return [make_check(check_id, "fail", detail, name, expected, chosen, evidence)], None
    if not chosen and broken:
        problems = [p for r in broken for p in parse(r).problems]
        detail = f"not a valid record, senders discard it: {'; '.join(problems)}"
        return [make_check(check_id, "fail", detail, name, expected, broken, evidence)], None
    if not chosen:
        status = "fail" if presence == Presence.REQUIRED else "ok"
        detail = f"no {version} record among {len(answer.records)} TXT" + ("" if status == "fail" else " (optional)")
        return [make_check(check_id, status, detail, name, expected, list(answer.records), evidence)], None
    record = parse(chosen[0])
    if record.problems:
        detail = f"invalid, senders ignore it: {'; '.join(record.problems)}"
        return [make_check(check_id, "fail", detail, name, expected, chosen[0], evidence)], record
    warnings = record.warnings + [f"ignored by senders: {r!r}" for r in broken]
    detail = chosen[0] + (f" ({'; '.join(warnings)})" if warnings else "")
    return [make_check(check_id, "warn" if warnings else "ok", detail, name, expected, chosen[0], evidence)], record


def tls_rpt_checks(cfg: Domain, query: Query) -> list[Check]:
    if cfg.tls_rpt == Presence.ABSENT:
        return []
    name = f"_smtp._tls.{cfg.domain}"
    checks, _ = _tag_record(
        cfg.tls_rpt, name, records.TLSRPT_VERSION, records.parse_tlsrpt_record, "dns.tls_rpt.record", query
    )
    return checks


# ---------------------------------------------------------------- MTA-STS: record, policy, mx


def mta_sts_checks(cfg: Domain, query: Query, fetch: MtaStsFetch | None = None) -> list[Check]:
    """dns.mta_sts.record, then (when a record is there) dns.mta_sts.policy and dns.mta_sts.mx."""
    if cfg.mta_sts == Presence.ABSENT:
        return []
    fetch = fetch or MtaStsFetch()
    name = f"_mta-sts.{cfg.domain}"
    answer = query(name, "TXT")
    checks, _ = _tag_record(cfg.mta_sts, name, records.STS_VERSION, records.parse_sts_record, "dns.mta_sts.record",
                            query)  # fmt: skip
    announced = answer.ok and any(
        records.starts_with_version(r, records.STS_VERSION) or records.meant_as(r, records.STS_VERSION)
        for r in answer.records
    )
    if not announced:
        return checks  # no record: senders never fetch a policy, and the record check said so
    # The policy and the MX set are asked at once.
    jobs = (lambda: fetch_policy(cfg.domain, query, fetch), lambda: query(cfg.domain, "MX"))
    fetched, mx = parallel(lambda job: job(), jobs)
    checks.append(fetched.check())
    if fetched.policy is not None and fetched.policy.valid:
        checks.append(_mx_check(cfg.domain, fetched.policy, mx))
    return checks


def _mx_check(domain: str, policy: Policy, mx) -> Check:
    """Every real MX host must match an mx pattern (RFC 8461 4.1), or senders refuse it under enforce."""
    expected = {"patterns": policy.mx}
    if policy.mode == "none":
        return make_check("dns.mta_sts.mx", "skip", "mode none: senders match no MX", domain, expected)
    if not mx.ok:
        if mx.outcome == "error":
            return make_check("dns.mta_sts.mx", "error", f"could not resolve {domain} MX: {mx.error}", domain, expected,
                          None, mx.evidence())  # fmt: skip
        return make_check("dns.mta_sts.mx", "skip", "no MX records to match (see dns.mx.present)", domain, expected)
    hosts = sorted({r.split()[-1].rstrip(".").lower() for r in mx.records} - {""})
    if not hosts:
        return make_check(
            "dns.mta_sts.mx", "skip", "a null MX: nothing to match (see dns.mx.present)", domain, expected
        )
    uncovered = [h for h in hosts if not any(mx_matches(p, h) for p in policy.mx)]
    unused = [p for p in policy.mx if not any(mx_matches(p, h) for h in hosts)]
    actual = {"mx_hosts": hosts, "unmatched_hosts": uncovered, "unused_patterns": unused}
    if uncovered:
        effect = "senders refuse to deliver to it" if policy.mode == "enforce" else "senders report every delivery"
        detail = f"MX {', '.join(uncovered)} matches no mx pattern of the policy ({effect}; RFC 8461 4.1)"
        status = "fail" if policy.mode == "enforce" else "warn"
        return make_check("dns.mta_sts.mx", status, detail, domain, expected, actual, mx.evidence())
    if unused:
        detail = f"every MX matches; the pattern(s) {', '.join(unused)} match no MX (stale?)"
        return make_check("dns.mta_sts.mx", "warn", detail, domain, expected, actual, mx.evidence())
    detail = f"every MX ({', '.join(hosts)}) matches the policy's mx patterns"
    return make_check("dns.mta_sts.mx", "ok", detail, domain, expected, actual, mx.evidence())


@dataclass
class FetchedPolicy:
    url: str
    status: str  # the check's status when the fetch itself decides it (fail, error), else "" (parse decides)
    detail: str = ""
    http_status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    policy: Policy | None = None
    evidence: dict = field(default_factory=dict)

    def check(self) -> Check:
        expected = "HTTP 200, text/plain, a valid STSv1 policy"
        evidence = {**self.evidence, "http_status": self.http_status, "content_type": self.content_type}
        if self.body is not None:
            evidence["body"] = self.body[:4096].decode("utf-8", errors="replace")
        if self.status:
            return make_check("dns.mta_sts.policy", self.status, self.detail, self.url, expected, None, evidence)
        policy = self.policy
        actual = {"version": policy.version, "mode": policy.mode, "max_age": policy.max_age, "mx": policy.mx}
        if policy.problems:
            detail = "invalid policy, senders ignore it: " + "; ".join(policy.problems)
            return make_check("dns.mta_sts.policy", "fail", detail, self.url, expected, actual, evidence)
        summary = f"mode {policy.mode}, max_age {policy.max_age}, mx {', '.join(policy.mx) or '-'}"
        status = "warn" if policy.warnings else "ok"
        detail = summary + (f"; {'; '.join(policy.warnings)}" if policy.warnings else "")
        return make_check("dns.mta_sts.policy", status, detail, self.url, expected, actual, evidence)


def fetch_policy(domain: str, query: Query, settings: MtaStsFetch) -> FetchedPolicy:
    """GET the policy as a sender does (RFC 8461 3.3): the name resolved with our DNS, TLS verified for
    mta-sts.<domain>, redirects refused, at most 64 KiB, within the timeout."""
    host = f"mta-sts.{domain.lower().rstrip('.')}"
    url = f"https://{host}{'' if settings.port == 443 else f':{settings.port}'}{POLICY_PATH}"
    a, aaaa = parallel(lambda rdtype: query(host, rdtype), ("A", "AAAA"))
    evidence = {"addresses": [a.evidence(), aaaa.evidence()]}
    addresses = [*a.records, *aaaa.records]
    if not addresses:
        bad = next((x for x in (a, aaaa) if x.outcome == "error"), None)
        if bad is not None:
            return FetchedPolicy(url, "error", f"could not resolve {host} {bad.rdtype}: {bad.error}", evidence=evidence)
        why = "no such name" if a.outcome == "nxdomain" else "no A or AAAA record"
        detail = f"{host}: {why}; senders cannot fetch the policy the record announces (RFC 8461 3.3)"
        return FetchedPolicy(url, "fail", detail, evidence=evidence)
    evidence["connected_to"] = addresses[0]
    return _get(url, host, addresses[0], settings, evidence)


def _get(url: str, host: str, address: str, settings: MtaStsFetch, evidence: dict) -> FetchedPolicy:
    from spine_comms.protocols.http import BaseUrl, HttpFailure, HttpSession

    fetched = FetchedPolicy(url, "", evidence=evidence)
    session = HttpSession(
        BaseUrl("https", address, settings.port, "/"),
        ca_file=settings.ca_file,
        server_name=host,
        timeout=settings.timeout_seconds,
    )
    deadline = time.monotonic() + settings.timeout_seconds
    try:
        with session.failures():
            raw = session.request("GET", POLICY_PATH, allow_redirects=False, stream=True,
                                  headers={"Accept": "text/plain", "User-Agent": "spine-comms"})  # fmt: skip
            fetched.http_status, fetched.content_type = raw.status_code, raw.headers.get("Content-Type")
            body = b""
            for chunk in raw.iter_content(16 * 1024):
                body += chunk
                if time.monotonic() > deadline:  # a server that drips the body stays within each read's timeout
                    raw.close()
                    fetched.status = "error"
                    fetched.detail = f"{url}: no complete policy within {settings.timeout_seconds:g} s"
                    return fetched
                if len(body) > MAX_POLICY_BYTES:
                    raw.close()
                    fetched.status = "fail"
                    limit = MAX_POLICY_BYTES // 1024
                    fetched.detail = f"the policy is over {limit} KiB (RFC 8461 3.3): senders may refuse it"
                    return fetched
            fetched.body = body
            location = raw.headers.get("Location")
    except HttpFailure as exc:
        # A certificate senders would not accept is the policy host's fault; silence or a refusal we cannot judge.
        fetched.status = "fail" if exc.kind == "tls" else "error"
        fetched.detail = f"{url}: {exc.reason}" + (
            f" (RFC 8461 3.3: the certificate must be valid for {host})" if exc.kind == "tls" else ""
        )
        return fetched
    finally:
        session.close()
    return _judge(fetched, location)


def _judge(fetched: FetchedPolicy, location: str | None) -> FetchedPolicy:
    status = fetched.http_status
    if status is not None and 300 <= status < 400:
        fetched.status = "fail"
        fetched.detail = f"HTTP {status} to {location or '?'}: senders MUST NOT follow redirects (RFC 8461 3.3)"
    elif status != 200:
        fetched.status = "fail"
        fetched.detail = f"HTTP {status}: senders take only a 200 answer as a policy (RFC 8461 3.3)"
    elif (fetched.content_type or "").split(";")[0].strip().lower() != "text/plain":
        fetched.status = "fail"
        shown = fetched.content_type or "missing"
        fetched.detail = f"Content-Type {shown}: the policy MUST be text/plain (RFC 8461 3.2)"
    else:
        fetched.policy = parse_policy(fetched.body or b"")
    return fetched
