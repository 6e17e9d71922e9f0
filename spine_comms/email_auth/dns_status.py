"""dns.mail.status and its focused views dkim.check and dmarc.check.

Expectations come from the mail-auth contract and, when it names Stalwart,
from what the server signs with and recommends: a DKIM TXT record that is not
the server's key is the classic outage, invisible until mail starts failing.
The resolver is the stack contract's `endpoints.dns` (the lab's Knot in tests),
`--dns-server`, or the system's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, Domain, MailAuthContract
from spine_comms.contracts.stack import STACK_CONTRACT, StackContract
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import CouldNotEvaluate, UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.email_auth import dns_checks, record_checks, transport_checks

DomainOpt = Annotated[
    list[str] | None,
    typer.Option("--domain", help="Only this contract domain (repeatable). Default: every domain in the contract."),
]
DnsServerOpt = Annotated[
    str | None,
    typer.Option(
        "--dns-server",
        metavar="HOST[:PORT]",
        help="Ask this server instead of the stack contract's endpoints.dns (default: the system resolver).",
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0.1, max=60, help="Seconds per DNS query (default: the contract's, else 3)."),
]
NoStalwartOpt = Annotated[
    bool, typer.Option("--no-stalwart", help="Do not compare with Stalwart's view even when the contract names it.")
]


@capability("dns.mail.status", safety="read-only", approval="auto")
def dns_mail_status(
    ctx: RunContext,
    domain: DomainOpt = None,
    dns_server: DnsServerOpt = None,
    timeout: TimeoutOpt = None,
    no_stalwart: NoStalwartOpt = False,
) -> Result:
    """Check each contract domain's mail DNS at once: MX, the mail host's A/AAAA and forward-confirmed PTR, SPF,
    DKIM, DMARC, MTA-STS and TLS-RPT, against the contract and Stalwart's view. A missing required record fails;
    a DNS error (SERVFAIL, timeout, refusal) is `error`, exit 3, never a pass."""
    run = _Run(ctx, domain, dns_server, timeout)
    groups = [
        dns_checks.mx_checks,
        lambda cfg, q: dns_checks.host_checks(cfg, q, run.resolver.ptr),
        record_checks.spf_checks,
        record_checks.dkim_checks,
        record_checks.dmarc_checks,
        lambda cfg, q: transport_checks.mta_sts_checks(cfg, q, run.mta_sts_fetch),
        transport_checks.tls_rpt_checks,
    ]
    return run.execute(groups, compare=not no_stalwart)


@capability("dkim.check", safety="read-only", approval="auto")
def dkim_check(
    ctx: RunContext,
    domain: DomainOpt = None,
    selector: Annotated[
        list[str] | None, typer.Option("--selector", help="Check this selector (repeatable) instead of the contract's.")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="FILE",
            help="A private key (PEM) to prove it matches the published public key. Needs one domain and one selector.",
        ),
    ] = None,
    dns_server: DnsServerOpt = None,
    timeout: TimeoutOpt = None,
    no_stalwart: NoStalwartOpt = False,
) -> Result:
    """Check every configured DKIM selector's TXT record: v=DKIM1, k=, p= decodable, RSA size (>= 2048 ok,
    1024-2047 warn, less fail), Ed25519 of 32 bytes, t=y warns, empty p= is a revoked key; compare with the keys
    Stalwart signs with; with --key, prove the private key is the published one's."""
    run = _Run(ctx, domain, dns_server, timeout)
    if selector:
        for cfg in run.domains:
            cfg.dkim_selectors = list(selector)
    empty = [cfg.domain for cfg in run.domains if not cfg.dkim_selectors]
    if empty:
        raise UsageError(
            f"no DKIM selector to check for {', '.join(empty)}",
            hint="list dkim_selectors in the mail-auth contract or pass --selector",
        )
    pem = _read_key(ctx, key, run.domains) if key else None
    result = run.execute([record_checks.dkim_checks], compare=not no_stalwart, only_dkim=True)
    if pem is not None:
        cfg = run.domains[0]
        result.checks.append(_key_check(pem, key, cfg.domain, cfg.dkim_selectors[0], run.query))
        result.summary.append(f"{result.checks[-1].subject}: {result.checks[-1].detail}")
    return result


@capability("dmarc.check", safety="read-only", approval="auto")
def dmarc_check(
    ctx: RunContext,
    domain: DomainOpt = None,
    dns_server: DnsServerOpt = None,
    timeout: TimeoutOpt = None,
) -> Result:
    """Check each contract domain's DMARC record: exactly one, RFC 7489 syntax (p, sp, adkim, aspf, pct, rua, ruf,
    fo), the policy against the contract's minimum (p=none warns), and that every external rua/ruf destination
    has authorized the reports with its <domain>._report._dmarc record."""
    return _Run(ctx, domain, dns_server, timeout).execute([record_checks.dmarc_checks], compare=False)


class _Run:
    """One run's contract, domains and resolver, shared by the three capabilities."""

    def __init__(self, ctx: RunContext, only: list[str] | None, dns_server: str | None, timeout: float | None):
        from spine_comms.protocols.dns import Resolver

        self.ctx = ctx
        self.contract = ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract)
        self.domains = _select(self.contract, only)
        server, port, default_timeout = _dns_server(ctx, dns_server)
        self.resolver = Resolver(server, port, timeout or default_timeout)
        self.query = self.resolver.query
        self.mta_sts_fetch = _mta_sts_fetch(ctx, self.contract)

    def execute(self, groups, *, compare: bool, only_dkim: bool = False) -> Result:
        ctx, result = self.ctx, Result()
        ctx.log(f"checking {', '.join(d.domain for d in self.domains)} via {self.resolver.describe()}")
        view_wanted = compare and self.contract.stalwart is not None and self.contract.stalwart.compare_dns
        with ThreadPoolExecutor(max_workers=16) as pool:
            # The server's view is fetched alongside the DNS lookups, not after them.
            view = pool.submit(self._server_view) if view_wanted else None
            jobs = [(cfg, pool.submit(group, cfg, self.query)) for cfg in self.domains for group in groups]
            per_domain: dict[str, list[Check]] = {cfg.domain: [] for cfg in self.domains}
            for cfg, job in jobs:
                per_domain[cfg.domain].extend(job.result())
            if view is not None:
                server = view.result()
                for cfg in self.domains:
                    per_domain[cfg.domain].extend(_compare_with_server(cfg, server, self.query, only_dkim))
        for cfg in self.domains:
            checks = per_domain[cfg.domain]
            result.checks.extend(checks)
            bad = [c for c in checks if c.status not in (Status.OK, Status.SKIP)]
            worst_line = "; ".join(f"{c.id} {c.status}: {c.detail}" for c in bad[:3])
            result.summary.append(
                f"{cfg.domain}: {len(checks) - len(bad)}/{len(checks)} ok" + (f"; {worst_line}" if worst_line else "")
            )
        result.data = {
            "contract": str(ctx.contracts.path(MAILAUTH_CONTRACT)),
            "resolver": self.resolver.describe(),
            "domains": [cfg.domain for cfg in self.domains],
        }
        if view is not None:
            result.data["stalwart"] = _view_data(view.result())
        return result

    def _server_view(self):
        from spine_comms.email_auth.stalwart_admin import server_view

        try:
            return server_view(self.ctx, self.contract)
        except CouldNotEvaluate as exc:
            return exc


def _mta_sts_fetch(ctx: RunContext, contract: MailAuthContract):
    """The contract's MTA-STS fetch settings, its ca_file made absolute (relative to the root) and checked."""
    settings = contract.mta_sts_fetch.model_copy()
    if settings.ca_file:
        path = Path(settings.ca_file)
        path = path if path.is_absolute() else ctx.root.path / path
        if not path.is_file():
            raise UsageError(f"mta_sts_fetch.ca_file {path} does not exist")
        settings.ca_file = str(path)
    return settings


def _select(contract: MailAuthContract, only: list[str] | None) -> list[Domain]:
    if not only:
        return [d.model_copy(deep=True) for d in contract.domains]
    chosen, unknown = [], []
    for name in dict.fromkeys(n.rstrip(".").lower() for n in only):  # `--domain x --domain x` is one domain
        cfg = contract.domain(name)
        (chosen.append(cfg.model_copy(deep=True)) if cfg else unknown.append(name))
    if unknown:
        known = ", ".join(d.domain for d in contract.domains)
        raise UsageError(f"--domain {', '.join(unknown)} is not in the mail-auth contract (it has {known})")
    return chosen


def _dns_server(ctx: RunContext, option: str | None) -> tuple[str | None, int, float]:
    if option:
        host, _, port = option.rpartition(":") if option.count(":") == 1 else (option, "", "")
        host = host or option
        try:
            return host, int(port or 53), 3.0
        except ValueError:
            raise UsageError(f"--dns-server {option}: the port must be a number") from None
    if ctx.contracts.exists(STACK_CONTRACT):
        endpoints = ctx.contracts.load(STACK_CONTRACT, StackContract).endpoints
        if endpoints and endpoints.dns:
            return endpoints.dns.server, endpoints.dns.port, endpoints.dns.timeout_seconds
    return None, 53, 3.0


def _read_key(ctx: RunContext, key: Path, domains: list[Domain]) -> bytes:
    if len(domains) != 1 or len(domains[0].dkim_selectors) != 1:
        raise UsageError("--key needs exactly one domain and one selector", hint="add --domain and --selector")
    try:
        if key.stat().st_size > 64 * 1024:
            raise UsageError(f"--key {key}: larger than 64 KiB, not a DKIM private key")
        pem = key.read_bytes()
    except OSError as exc:
        raise UsageError(f"--key {key}: {exc.strerror or exc}") from None
    ctx.redactor.add(pem.decode("utf-8", errors="replace").strip())
    return pem


def _key_check(pem: bytes, path: Path, domain: str, selector: str, query) -> Check:
    from spine_comms.mail.dkim_record import private_key_matches

    name = f"{selector}._domainkey.{domain}"
    record = record_checks.dkim_record_at(domain, selector, query)
    if record is None or record.public_key is None:
        return Check(
            "dns.dkim.private_key",
            Status.FAIL,
            f"no usable public key at {name} to compare with",
            name,
            "the published key",
            None,
            str(path),
        )
    matches, reason = private_key_matches(pem, record)
    status = Status.OK if matches else Status.FAIL
    return Check(
        "dns.dkim.private_key", status, reason, name, "the published key", "matches" if matches else reason, str(path)
    )


def _compare_with_server(cfg: Domain, server, query, only_dkim: bool) -> list[Check]:
    """DNS against what Stalwart signs with and recommends for this domain."""
    from spine_comms.mail.dkim_record import key_fingerprint

    if isinstance(server, CouldNotEvaluate):
        return [Check("dns.stalwart.view", Status.ERROR, f"could not ask Stalwart: {server}", cfg.domain, None, None,
                      {"kind": server.kind})]  # fmt: skip
    checks = []
    keys = [k for k in server.dkim_keys if k.domain.lower() == cfg.domain.lower() and k.stage == "active"]
    if not keys:
        checks.append(
            Check(
                "dns.dkim.server_match",
                Status.FAIL,
                "Stalwart has no active DKIM key for this domain",
                cfg.domain,
                "an active key",
                [],
            )
        )
    for key in keys:
        name = f"{key.selector}._domainkey.{cfg.domain}"
        record = record_checks.dkim_record_at(cfg.domain, key.selector, query)
        algorithm = "ed25519" if key.algorithm.startswith("ed25519") else "rsa"
        theirs = key_fingerprint(algorithm, key.public_key)
        ours = key_fingerprint(record.key_type or "rsa", record.tags.get("p", "")) if record else None
        evidence = {
            "server": {"selector": key.selector, "algorithm": key.algorithm, "public_key": key.public_key},
            "dns": record.raw if record else None,
        }
        if record is None:
            checks.append(
                Check(
                    "dns.dkim.server_match",
                    Status.FAIL,
                    f"Stalwart signs with {key.selector} ({key.algorithm}) but {name} has no key record",
                    name,
                    theirs,
                    None,
                    evidence,
                )
            )
        elif ours != theirs:
            checks.append(
                Check(
                    "dns.dkim.server_match",
                    Status.FAIL,
                    f"the key at {name} is not the key Stalwart signs with: mail will fail DKIM",
                    name,
                    theirs,
                    ours,
                    evidence,
                )
            )
        else:
            checks.append(
                Check(
                    "dns.dkim.server_match",
                    Status.OK,
                    f"{name} is Stalwart's {key.algorithm} key",
                    name,
                    theirs,
                    ours,
                    evidence,
                )
            )
    if only_dkim:
        return checks
    for record in server.expected:
        if record.type == "MX" and record.name.lower() == cfg.domain.lower():
            target = record.value.split()[-1].rstrip(".").lower()
            answer = query(cfg.domain, "MX")
            targets = [r.split()[-1] for r in answer.records]
            status = Status.OK if target in targets else Status.WARN
            detail = (
                f"MX {target} as Stalwart recommends"
                if status == Status.OK
                else (f"Stalwart recommends MX {target}; DNS has {', '.join(targets) or 'none'}")
            )
            checks.append(Check("dns.stalwart.expected", status, detail, cfg.domain, record.value, targets))
    return checks


def _view_data(view) -> dict | None:
    if isinstance(view, CouldNotEvaluate):
        return {"error": str(view)}
    return {
        "form": view.form,
        "dkim_keys": [
            {"domain": k.domain, "selector": k.selector, "algorithm": k.algorithm, "stage": k.stage}
            for k in view.dkim_keys
        ],
        "expected": [{"type": r.type, "name": r.name, "value": r.value} for r in view.expected],
    }
