"""Stalwart's view of email authentication: health, API form, DKIM keys, the DNS it recommends.

Four capabilities over the management API adapter (protocols/stalwart), plus `server_view()`,
which dns.mail.status calls to compare what DNS publishes with what the server signs with.
They read the `stalwart` section of the mail-auth contract; the secret comes from its
`secret_ref`, or from STALWART_ADMIN_SECRET, and is registered with the redactor at once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, MailAuthContract
from spine_comms.contracts.stack import connection_timeout
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.outcomes import could_not_evaluate
from spine_comms.core.result import Check, Result, Status

if TYPE_CHECKING:
    from spine_comms.protocols.stalwart import DkimKey, DnsRecord, StalwartAdmin

SECRET_ENV = "STALWART_ADMIN_SECRET"
ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
REQUIRED_ALGORITHM = "rsa-sha256"  # a domain must sign with RSA; Ed25519 is a welcome extra
USABLE_STAGES = ("active", "pending")  # pending keys become active by themselves

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Management API base URL instead of the contract's stalwart.url.")
]
UsernameOpt = Annotated[
    str | None,
    typer.Option(
        "--username",
        help="Log in as this account (Basic) instead of stalwart.username. An API key: on 0.15 give the key's "
        "name here (sent as Basic name:secret), or no username and the whole api_<base64(name:secret)> token as "
        "the secret; on 0.16 no username and the API_... key as the secret (Bearer). The secret: "
        "stalwart.secret_ref, or $STALWART_ADMIN_SECRET.",
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0.1, max=120, help="Seconds per request (default: the contract's, else 10)."),
]
DomainOpt = Annotated[
    list[str] | None, typer.Option("--domain", help="Only this contract domain; repeatable. Default: every domain.")
]


@dataclass
class ServerView:
    """What Stalwart says about the contract's domains, for dns.mail.status to compare with DNS."""

    form: str
    dkim_keys: list[DkimKey] = field(default_factory=list)
    expected: list[DnsRecord] = field(default_factory=list)


@dataclass
class _Target:
    url: str
    username: str | None
    secret: str
    ca_file: str | None
    server_name: str | None
    timeout: float

    @property
    def account(self) -> str:
        return f"account {self.username}" if self.username else "an API key (Bearer)"


# ---- capabilities ------------------------------------------------------------------------------------


@capability("stalwart.status", safety="read-only", approval="auto")
def stalwart_status(
    ctx: RunContext, url: UrlOpt = None, username: UsernameOpt = None, timeout: TimeoutOpt = None
) -> Result:
    """Is Stalwart's management API up and ours? Live and ready (/healthz, no login), the API form
    (0.16+ JMAP registry or 0.10-0.15 REST, found by probing), and the contract's domains on the server.
    Refused credentials are an `error` (exit 3) after the health checks."""
    from spine_comms.protocols.stalwart import StalwartError, connect, health

    contract, target = _target(ctx, url, username, timeout)
    result = Result()
    ctx.log(f"asking Stalwart at {target.url} ({target.account})")
    with _could_not_evaluate(target):
        state = health(target.url, ca_file=target.ca_file, server_name=target.server_name, timeout=target.timeout)
    for probe in ("live", "ready"):
        ok = state[probe]
        result.add(Check(f"stalwart.health.{probe}", Status.OK if ok else Status.FAIL,
                         f"/healthz/{probe} {'answered 200' if ok else 'did not answer 200'}", target.url,
                         True, ok, {"path": f"/healthz/{probe}", "ok": ok}))  # fmt: skip
    result.data = {"url": target.url, "username": target.username, "live": state["live"], "ready": state["ready"],
                   "form": None, "version": None, "domains": []}  # fmt: skip
    try:
        admin = connect(target.url, username=target.username, secret=target.secret, ca_file=target.ca_file,
                        server_name=target.server_name, timeout=target.timeout)  # fmt: skip
    except StalwartError as exc:
        status = Status.FAIL if exc.kind == "unsupported" else Status.ERROR
        check_id = "stalwart.api.auth" if exc.kind == "auth" else "stalwart.api.form"
        detail = f"{exc.message} ({_auth_hint(target)})" if exc.kind == "auth" else exc.message
        result.add(Check(check_id, status, detail, target.url, "the management API, logged in", exc.kind,
                         {"kind": str(exc.failure_kind)}))  # fmt: skip
        result.summary.append(f"{target.url}: {detail}")
        return result
    with admin, _could_not_evaluate(target):
        result.add(Check("stalwart.api.auth", Status.OK, f"logged in as {target.account}", target.url,
                         "accepted", "accepted"))  # fmt: skip
        result.add(Check("stalwart.api.form", Status.OK, f"{admin.form} ({admin.version})", target.url,
                         "jmap or rest", admin.form, {"form": admin.form, "version": admin.version}))  # fmt: skip
        on_server = admin.domains()
    result.data.update(form=admin.form, version=admin.version, domains=on_server)
    for domain in contract.domains if contract else []:
        result.add(_domain_check(domain.domain, on_server))
    result.summary.append(
        f"{target.url}: live={state['live']} ready={state['ready']} {admin.form} ({admin.version}), "
        f"{len(on_server)} domain(s): {', '.join(on_server) or 'none'}"
    )
    return result


@capability("stalwart.dkim.status", safety="read-only", approval="auto")
def stalwart_dkim_status(
    ctx: RunContext, domain: DomainOpt = None, url: UrlOpt = None, username: UsernameOpt = None,
    timeout: TimeoutOpt = None,
) -> Result:  # fmt: skip
    """The DKIM keys Stalwart signs with for each contract domain: selector, algorithm, public key
    (the DNS p= value) and stage. A domain without an active RSA key fails; Ed25519 is optional; an
    active selector the contract's dkim_selectors does not list warns (DNS checks would miss it)."""
    contract, target = _target(ctx, url, username, timeout, need_contract=True)
    names = _domains(contract, domain)
    with _connected(ctx, target) as admin:
        on_server = admin.domains()
        keys = admin.dkim_keys()
    result = Result()
    result.data = {"url": target.url, "form": admin.form, "domains": {}}
    for name in names:
        mine = [k for k in keys if k.domain == name]
        result.data["domains"][name] = {"on_server": name in on_server, "keys": [k.to_dict() for k in mine]}
        if name not in on_server:
            result.add(_domain_check(name, on_server))
            continue
        for algorithm in ALGORITHMS.values():
            result.add(_key_check(name, algorithm, mine))
        selectors = contract.domain(name).dkim_selectors
        if selectors:
            result.add(_selectors_check(name, mine, selectors))
        for key in mine:
            result.summary.append(f"{name}  {key.algorithm:14}  {key.selector:24}  {key.stage}")
        if not mine:
            result.summary.append(f"{name}  no DKIM keys")
    return result


@capability("stalwart.dkim.ensure", safety="mutating", approval="manual")
def stalwart_dkim_ensure(
    ctx: RunContext,
    domain: DomainOpt = None,
    algorithm: Annotated[
        list[str] | None,
        typer.Option("--algorithm", help="rsa or ed25519; repeatable. Default: both (RSA is the required one)."),
    ] = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute, approval asked
    wait: Annotated[
        float, typer.Option("--wait", min=0, max=300, help="Seconds to wait for each new key to show up.")
    ] = 15.0,
    url: UrlOpt = None,
    username: UsernameOpt = None,
    timeout: TimeoutOpt = None,
) -> Result:
    """Create the DKIM keys Stalwart lacks for the contract's domains, with selectors from the
    contract's dkim_keys templates. A dry run unless --execute; --execute needs approval (--yes).
    0.16: the key pair is made here and sent once (the server keeps it, masked); 0.15: POST /api/dkim
    under the id rsa-<domain> / ed25519-<domain>, the only ids its signing rule uses, then a reload."""
    wanted = _algorithms(algorithm)
    execute = not dry_run  # decided by the runner, which also asked for approval
    contract, target = _target(ctx, url, username, timeout, need_contract=True)
    names = _domains(contract, domain)
    mode = "execute" if execute else "dry-run"
    result = Result()
    actions = []
    with _connected(ctx, target) as admin:
        on_server = admin.domains()
        keys = admin.dkim_keys()
        for name in names:
            if name not in on_server:
                result.add(_domain_check(name, on_server))
                actions += [_action(name, a, None, "blocked", mode, "not a domain on the server") for a in wanted]
                continue
            for alg in wanted:
                have = [k for k in keys if k.domain == name and k.algorithm == alg and k.stage in USABLE_STAGES]
                check_id, subject = f"stalwart.dkim.ensure.{alg}", name
                if have:
                    shown = ", ".join(f"{k.selector} ({k.stage})" for k in have)
                    result.add(Check(check_id, Status.OK, f"present: {shown}", subject, "a usable key", shown))
                    actions.append(_action(name, alg, have[0].selector, "none", mode, "present"))
                    continue
                selector = _selector(contract, alg, ctx)
                if not execute:
                    result.add(Check(check_id, Status.WARN, f"missing; would create {selector}", subject,
                                     "a usable key", None, {"would_create": selector}))  # fmt: skip
                    actions.append(_action(name, alg, selector, "create", mode, "planned"))
                    continue
                actions.append(_create(ctx, admin, result, name, alg, selector, wait))
    result.data = {"url": target.url, "form": admin.form, "mode": mode, "actions": actions}
    created = [a for a in actions if a["action"] == "create"]
    done = [a for a in created if a["done"]]
    if execute and done and len(done) < len(created):
        result.status = Status.PARTIAL
    if not execute and created:
        result.summary.append(f"dry run: would create {len(created)} key(s); run again with --execute --yes")
    for a in actions:
        result.summary.append(
            f"{a['domain']}  {a['algorithm']:14}  {a['selector'] or '-':24}  {a['action']}: {a['note']}"
        )
    return result


@capability("stalwart.dns.expected", safety="read-only", approval="auto")
def stalwart_dns_expected(
    ctx: RunContext, domain: DomainOpt = None, url: UrlOpt = None, username: UsernameOpt = None,
    timeout: TimeoutOpt = None,
) -> Result:  # fmt: skip
    """The DNS records Stalwart recommends for each contract domain, normalized to (type, name,
    value) from 0.16's BIND zone text or 0.15's JSON list: names lower case without the trailing
    dot, TXT as one unsplit string, host names without the trailing dot."""
    contract, target = _target(ctx, url, username, timeout, need_contract=True)
    names = _domains(contract, domain)
    result = Result()
    result.data = {"url": target.url, "form": None, "domains": {}}
    with _connected(ctx, target) as admin:
        result.data["form"] = admin.form
        on_server = admin.domains()
        for name in names:
            if name not in on_server:
                result.add(_domain_check(name, on_server))
                continue
            records = admin.dns_records(name)
            result.data["domains"][name] = [r.to_dict() for r in records]
            counts = Counter(r.type for r in records)
            shown = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
            status = Status.OK if records else Status.FAIL
            detail = f"{len(records)} record(s): {shown or 'none'}"
            evidence = [r.to_dict() for r in records]
            expected = "the server's records"
            result.add(Check("stalwart.dns.expected", status, detail, name, expected, len(records), evidence))
            width = max((len(r.name) for r in records), default=0)
            for r in records:
                value = r.value if len(r.value) <= 80 else r.value[:77] + "..."
                result.summary.append(f"{r.type:5}  {r.name:{width}}  {value}")
    return result


# ---- for dns.mail.status ------------------------------------------------------------------------------


def server_view(ctx: RunContext, contract: MailAuthContract) -> ServerView:
    """The keys Stalwart has and the records it recommends for the contract's domains.

    Domains the server does not know are left out (dns.mail.status reports DNS on its own
    terms for them). Raises CouldNotEvaluate when the server cannot be reached or refuses us,
    UsageError when the contract has no stalwart section.
    """
    target = _target_from(ctx, contract, None, None, None)
    with _connected(ctx, target) as admin:
        on_server = set(admin.domains())
        names = [d.domain.lower() for d in contract.domains if d.domain.lower() in on_server]
        keys = [k for k in admin.dkim_keys() if k.domain in names]
        expected = [r for name in names for r in admin.dns_records(name)]
        return ServerView(admin.form, keys, expected)


# ---- the parts -----------------------------------------------------------------------------------------


def _target(ctx, url, username, timeout, *, need_contract=False) -> tuple[MailAuthContract | None, _Target]:
    contract = None
    if need_contract or not url or ctx.contracts.exists(MAILAUTH_CONTRACT):
        contract = ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract)
    return contract, _target_from(ctx, contract, url, username, timeout)


def _target_from(ctx, contract, url, username, timeout) -> _Target:
    section = contract.stalwart if contract else None
    if section is None and not url:
        raise UsageError(
            f"{MAILAUTH_CONTRACT} has no `stalwart` section",
            hint="add stalwart.url (and username, secret_ref) to the contract, or pass --url",
        )
    if url and not url.startswith(("http://", "https://")):
        raise UsageError(f"--url {url!r} is not an http(s) URL")
    secret = ctx.secrets.resolve(section.secret_ref if section else None, override_env=SECRET_ENV,
                                 what="Stalwart admin secret")  # fmt: skip
    ca_file = (section.ca_file if section else None) or _stack_ca_file(ctx)
    if ca_file and not Path(ca_file).is_absolute():
        ca_file = str(ctx.root.path / ca_file)
    if ca_file and not Path(ca_file).is_file():
        raise UsageError(f"stalwart.ca_file {ca_file} does not exist")
    return _Target(
        url=(url or section.url).rstrip("/"),
        username=username or (section.username if section else None),
        secret=secret.value,
        ca_file=ca_file,
        server_name=section.server_name if section else None,
        timeout=timeout or connection_timeout(_stack(ctx), section),
    )


def _stack(ctx):
    from spine_comms.contracts.stack import STACK_CONTRACT, StackContract

    return ctx.contracts.load(STACK_CONTRACT, StackContract) if ctx.contracts.exists(STACK_CONTRACT) else None


def _stack_ca_file(ctx) -> str | None:
    """The stack contract's CA file, which the mail-auth contract defers to when it names none."""
    stack = _stack(ctx)
    return stack.endpoints.ca_file if stack is not None and stack.endpoints else None


class _could_not_evaluate:
    """Turn the adapter's errors into exit 3 (or a usage error), naming the account, never the secret."""

    def __init__(self, target: _Target):
        self.target = target

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from spine_comms.protocols.stalwart import StalwartError

        if not isinstance(exc, StalwartError):
            return False
        hints = {
            "auth": _auth_hint(self.target),
            "unreachable": "check stalwart.url, server_name and ca_file, and that the server is up",
            "unsupported": "stalwart.url must be the server's HTTP(S) base, where /api and /jmap live",
        }
        raise could_not_evaluate(exc, f"Stalwart ({self.target.account}): {exc.message}",
                                 hint=hints.get(exc.kind)) from None  # fmt: skip


def _auth_hint(target: _Target) -> str:
    hint = f"check stalwart.username / secret_ref (or ${SECRET_ENV}) for {target.account}"
    if not target.username:
        hint += (
            "; an API key on 0.15 needs its name: set stalwart.username to the key's name (Basic name:secret), "
            "or give the token api_<base64(name:secret)> as the secret; on 0.16 the secret is the API_... key"
        )
    return hint


class _connected:
    """connect() as a context manager whose errors are CouldNotEvaluate."""

    def __init__(self, ctx: RunContext, target: _Target):
        self.ctx, self.target, self.admin = ctx, target, None
        self.guard = _could_not_evaluate(target)

    def __enter__(self) -> StalwartAdmin:
        from spine_comms.protocols.stalwart import connect

        t = self.target
        self.ctx.log(f"asking Stalwart at {t.url} ({t.account})")
        with self.guard:
            self.admin = connect(t.url, username=t.username, secret=t.secret, ca_file=t.ca_file,
                                 server_name=t.server_name, timeout=t.timeout)  # fmt: skip
        self.ctx.log(f"Stalwart speaks {self.admin.form} ({self.admin.version})")
        return self.admin

    def __exit__(self, kind, exc, tb):
        self.admin.close()
        return self.guard.__exit__(kind, exc, tb)


def _domains(contract: MailAuthContract, chosen: list[str] | None) -> list[str]:
    names = [d.domain.lower() for d in contract.domains]
    if not chosen:
        return names
    picked = [c.rstrip(".").lower() for c in chosen]
    unknown = [c for c in picked if c not in names]
    if unknown:
        raise UsageError(f"--domain {', '.join(unknown)}: not in the contract (it has {', '.join(names)})")
    return picked


def _algorithms(chosen: list[str] | None) -> list[str]:
    if not chosen:
        return list(ALGORITHMS.values())
    out = []
    for name in chosen:
        short = name.lower().removesuffix("-sha256")
        if short not in ALGORITHMS:
            raise UsageError(f"--algorithm {name!r}: use rsa or ed25519")
        out.append(ALGORITHMS[short])
    return list(dict.fromkeys(out))


def _selector(contract: MailAuthContract, algorithm: str, ctx: RunContext) -> str:
    from spine_comms.mail.dkim_record import render_selector

    short = algorithm.split("-")[0]
    key = "rsa_selector" if short == "rsa" else "ed25519_selector"
    try:
        return render_selector(getattr(contract.dkim_keys, key), short, ctx.clock().date())
    except ValueError as exc:
        raise UsageError(f"{MAILAUTH_CONTRACT}: dkim_keys.{key}: {exc}") from None


def _action(domain, algorithm, selector, action, mode, note, done=False) -> dict:
    return {"domain": domain, "algorithm": algorithm, "selector": selector, "action": action, "mode": mode,
            "done": done, "note": note}  # fmt: skip


def _create(ctx, admin, result: Result, domain: str, algorithm: str, selector: str, wait: float) -> dict:
    from spine_comms.protocols.stalwart import StalwartError

    check_id = f"stalwart.dkim.ensure.{algorithm}"
    ctx.log(f"creating {algorithm} key {selector} for {domain}")
    try:
        admin.create_dkim(domain, algorithm, selector)
    except StalwartError as exc:
        if exc.kind in ("unreachable", "auth"):
            raise
        result.add(Check(check_id, Status.FAIL, f"the server refused: {exc.message}", domain, "a usable key", None,
                         exc.evidence))  # fmt: skip
        return _action(domain, algorithm, selector, "create", "execute", f"refused: {exc.message}")
    # Generation can be asynchronous (a Task in 0.16): the key shows up a moment later.
    deadline = time.monotonic() + wait
    while True:
        found = [k for k in admin.dkim_keys(domain) if k.algorithm == algorithm and k.stage in USABLE_STAGES]
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    if not found:
        result.add(Check(check_id, Status.FAIL, f"created, but not listed after {wait:g} s", domain, "a usable key",
                         None))  # fmt: skip
        return _action(domain, algorithm, selector, "create", "execute", "created, not listed yet")
    key = found[0]
    result.add(Check(check_id, Status.OK, f"created {key.selector} ({key.stage})", domain, "a usable key",
                     key.selector, key.to_dict()))  # fmt: skip
    return _action(domain, algorithm, key.selector, "create", "execute", f"created ({key.stage})", done=True)


def _domain_check(name: str, on_server: list[str]) -> Check:
    present = name in on_server
    detail = "a domain on the server" if present else "not a domain on the server"
    return Check("stalwart.domain.present", Status.OK if present else Status.FAIL, detail, name, True, present,
                 {"server_domains": on_server})  # fmt: skip


def _key_check(name: str, algorithm: str, keys: list[DkimKey]) -> Check:
    mine = [k for k in keys if k.algorithm == algorithm]
    active = [k for k in mine if k.stage == "active"]
    shown = [f"{k.selector} ({k.stage})" for k in mine]
    evidence = [k.to_dict() for k in mine]
    check_id = f"stalwart.dkim.present.{algorithm}"
    if active:
        return Check(check_id, Status.OK, f"signing with {', '.join(k.selector for k in active)}", name,
                     "an active key", shown, evidence)  # fmt: skip
    others = f" (only {', '.join(shown)})" if shown else ""
    if algorithm == REQUIRED_ALGORITHM:
        return Check(check_id, Status.FAIL, f"no active RSA key: mail goes out unsigned{others}", name,
                     "an active key", shown, evidence)  # fmt: skip
    return Check(check_id, Status.OK, f"no active Ed25519 key (optional){others}", name, "optional", shown, evidence)


def _selectors_check(name: str, keys: list[DkimKey], selectors: list[str]) -> Check:
    active = sorted({k.selector for k in keys if k.stage == "active"})
    unlisted = [s for s in active if s not in selectors]
    if unlisted:
        return Check("stalwart.dkim.selectors_in_contract", Status.WARN,
                     f"signing with {', '.join(unlisted)}, not in the contract's dkim_selectors", name,
                     selectors, active)  # fmt: skip
    return Check("stalwart.dkim.selectors_in_contract", Status.OK, "every active selector is in the contract", name,
                 selectors, active)  # fmt: skip
