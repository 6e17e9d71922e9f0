"""communications.stack.status: is every endpoint of the stack up, speaking, and on good TLS?

Covers what the spine's communications.tls.status did (the same endpoint fields),
for every port in the stack contract: SMTP 25, SMTPS 465, submission 587,
IMAP(S), ManageSieve 4190 and the HTTPS admin/JMAP port.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import typer

from spine_comms.contracts.stack import STACK_CONTRACT, Port, StackContract, connection_timeout
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.outcomes import FailureKind, check_status
from spine_comms.core.result import Check, Result, Status, worst
from spine_comms.protocols.tls import PLAIN, Probe, probe_endpoint

MIN_TLS = ("TLSv1.2", "TLSv1.3")


@capability("communications.stack.status", safety="read-only", approval="auto")
def stack_status(
    ctx: RunContext,
    host: Annotated[
        str | None,
        typer.Option(help="Connect here instead of the contract's endpoints.host (or the VM's LAN address)."),
    ] = None,
    server_name: Annotated[
        str | None, typer.Option(help="Certificate name and SNI (default: endpoints.server_name, else mail.<domain>).")
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option(help="Verify against this CA file instead of the contract's or the system store.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.1, max=120, help="Seconds per connection (default: the contract's, else 5).")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Only these endpoints, by protocol (IMAPS) or port (993); repeatable.")
    ] = None,
) -> Result:
    """Probe every endpoint in the stack contract: reachable, greeting, TLS version, certificate
    trust, name match and expiry (warn under 14 days, fail under 7 or expired), and latency.
    An endpoint that cannot be reached or does not answer is `error` (exit 3: could not evaluate);
    one that answers with a bad greeting or certificate is `fail` (exit 1)."""
    contract = ctx.contracts.load(STACK_CONTRACT, StackContract)
    endpoints = contract.endpoints
    host = host or contract.connect_host()
    if not host:
        raise UsageError("no host to probe", hint="set endpoints.host or pilot.vm_target.lan_ip, or pass --host")
    server_name = server_name or contract.server_name()
    ca_file = ca_file or (endpoints.ca_file if endpoints else None)
    timeout = timeout or connection_timeout(contract)
    warn_days = endpoints.expiry_warn_days if endpoints else 14
    fail_days = endpoints.expiry_fail_days if endpoints else 7
    ports = _select(contract.pilot.ports, only)

    ctx.log(f"probing {len(ports)} endpoint(s) on {host} as {server_name}")
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(ports)))) as pool:
        probes = list(
            pool.map(
                lambda p: probe_endpoint(
                    host, p.host, p.protocol.value, server_name=server_name, ca_file=ca_file, timeout=timeout
                ),
                ports,
            )
        )
    result = Result()
    now = ctx.clock()
    rows = []
    for port, probe in zip(ports, probes, strict=True):
        checks = _checks(probe, port, now, warn_days, fail_days)
        result.checks.extend(checks)
        rows.append(_row(port, probe, checks, now))
        result.summary.append(_line(rows[-1]))
    result.data = {
        "contract": str(ctx.contracts.path(STACK_CONTRACT)),
        "host": host,
        "server_name": server_name,
        "ca_file": ca_file,
        "endpoints": rows,
    }
    return result


def _select(ports: list[Port], only: list[str] | None) -> list[Port]:
    if not ports:
        raise UsageError("the stack contract lists no ports (pilot.ports)")
    if not only:
        return list(ports)
    wanted = {o.lower() for o in only}
    chosen = [p for p in ports if p.protocol.value.lower() in wanted or str(p.host) in wanted]
    if not chosen:
        names = ", ".join(f"{p.protocol.value}:{p.host}" for p in ports)
        raise UsageError(f"--only {', '.join(only)} matches no endpoint (the contract has {names})")
    return chosen


def _subject(port: Port) -> str:
    return f"{port.protocol.value}:{port.host}"


def _checks(probe: Probe, port: Port, now, warn_days: int, fail_days: int) -> list[Check]:
    subject = _subject(port)
    out = []

    def add(check_id, status, detail, expected=None, actual=None, evidence=None):
        out.append(Check(check_id, Status(status), detail, subject, expected, actual, evidence))

    # A server that cannot be reached, or took the connection and went silent or away, could not be
    # evaluated: `error` (exit 3), as in every capability (core.outcomes). A server that answered
    # wrongly (a bad greeting, a bad certificate) is a finding: `fail`.
    if not probe.reachable:
        add("stack.endpoint.reachable", str(check_status(probe.error_kind or FailureKind.UNREACHABLE)),
            f"{probe.host}:{probe.port} {probe.error}", "accepting connections", probe.error,
            {"kind": str(probe.error_kind or FailureKind.UNREACHABLE)})  # fmt: skip
        return out
    add("stack.endpoint.reachable", "ok", f"connected in {probe.connect_ms} ms", "accepting connections", "connected")
    expected = f"a {port.protocol.value} dialogue" + ("" if port.protocol.value in PLAIN else " reaching TLS")
    if probe.error_kind in (FailureKind.TIMEOUT, FailureKind.UNREACHABLE):
        add("stack.endpoint.protocol", str(check_status(probe.error_kind)), probe.error, expected, probe.error,
            {"kind": str(probe.error_kind), "greeting": probe.greeting})  # fmt: skip
    elif probe.error_kind is FailureKind.PROTOCOL_ERROR:
        add("stack.endpoint.protocol", "fail", probe.error, expected, probe.error,
            {"kind": str(probe.error_kind), "greeting": probe.greeting})  # fmt: skip
    else:
        add("stack.endpoint.protocol", "ok", probe.greeting or "answered", expected, probe.greeting)
    if port.protocol.value in PLAIN or not probe.tls:
        if probe.error_kind is FailureKind.TLS_UNTRUSTED:
            add("stack.tls.version", "fail", probe.error, "a TLSv1.2+ handshake", probe.error)
        return out
    version_ok = probe.tls_version in MIN_TLS
    add(
        "stack.tls.version",
        "ok" if version_ok else "fail",
        f"{probe.tls_version} {probe.cipher or ''}".strip(),
        "TLSv1.2 or later",
        probe.tls_version,
    )
    cert = probe.certificate
    if cert is None:
        add("stack.tls.trusted", "error", "; ".join(probe.notes) or "no certificate read", "a trusted chain", None)
        return out
    trusted_detail = "chain verified" if probe.verified else (probe.verify_error or "not verified")
    if probe.verified and probe.verify_error:
        trusted_detail = "chain verified (the name is checked below)"
    add(
        "stack.tls.trusted",
        "ok" if probe.verified else "fail",
        trusted_detail,
        "a trusted chain",
        cert.issuer,
        {"issuer": cert.issuer},
    )
    if probe.server_name:
        add(
            "stack.tls.name_match", "ok" if probe.name_match else "fail",
            f"{probe.server_name} {'in' if probe.name_match else 'NOT in'} the certificate's names",
            probe.server_name, cert.san, {"subject": cert.subject, "san": cert.san},
        )  # fmt: skip
    days = cert.days_left(now)
    if days < 0:
        status, detail = "fail", f"expired {-days:.0f} days ago ({cert.not_after:%Y-%m-%d})"
    elif days < fail_days:
        status, detail = "fail", f"expires in {days:.1f} days ({cert.not_after:%Y-%m-%d}), under {fail_days}"
    elif days < warn_days:
        status, detail = "warn", f"expires in {days:.1f} days ({cert.not_after:%Y-%m-%d}), under {warn_days}"
    else:
        status, detail = "ok", f"expires in {days:.0f} days ({cert.not_after:%Y-%m-%d})"
    add("stack.tls.expiry", status, detail, f">= {warn_days} days", round(days, 1), cert.to_dict())
    return out


def _row(port: Port, probe: Probe, checks: list[Check], now) -> dict:
    cert = probe.certificate
    return {
        "label": port.description or port.protocol.value,
        "protocol": port.protocol.value,
        "port": port.host,
        "status": str(worst(c.status for c in checks)),
        "reachable": probe.reachable,
        "greeting": probe.greeting,
        "tls_version": probe.tls_version,
        "cipher": probe.cipher,
        "verified": probe.verified,
        "verify_error": probe.verify_error,
        "name_match": probe.name_match,
        "subject": cert.subject if cert else None,
        "san": cert.san if cert else [],
        "issuer": cert.issuer if cert else None,
        "not_after": cert.to_dict()["not_after"] if cert else None,
        "days_until_expiry": round(cert.days_left(now), 1) if cert else None,
        "connect_ms": probe.connect_ms,
        "latency_ms": probe.total_ms,
        "error": probe.error,
    }


def _line(row: dict) -> str:
    parts = [f"{row['status']:5}", f"{row['protocol']:11}", f"{row['port']:>5}"]
    if row["error"] and not row["tls_version"]:
        parts.append(row["error"])
    elif row["tls_version"]:
        parts.append(row["tls_version"])
        if row["days_until_expiry"] is not None:
            parts.append(f"expires in {row['days_until_expiry']:.0f} d")
    parts.append(f"{row['latency_ms']} ms")
    return "  ".join(str(p) for p in parts)
