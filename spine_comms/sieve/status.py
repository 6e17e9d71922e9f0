"""sieve.status: is the routing the server runs the routing the contract says?

For each contract mailbox: log in over ManageSieve (STARTTLS, then PLAIN), read
the capabilities and Sieve extensions, list the scripts and the active one,
fetch the contract's script, and compare it with the rendered one. The shared
parts (where to connect, what the server holds) live here; sieve.apply uses them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spine_comms.contracts.sieve import SIEVE_CONTRACT, SieveContract, SieveMailbox
from spine_comms.contracts.stack import STACK_CONTRACT, StackContract, connection_timeout, mailbox_env
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError, UsageError
from spine_comms.core.outcomes import FailureKind, could_not_evaluate
from spine_comms.core.result import Check, Result, Status
from spine_comms.sieve.render import parse_script, render, required_extensions

if TYPE_CHECKING:
    from spine_comms.protocols.managesieve import Capabilities, ManageSieve

MailboxOpt = Annotated[
    list[str] | None,
    typer.Option("--mailbox", metavar="ID", help="Only this contract mailbox id (repeatable). Default: every mailbox."),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=0.5,
        max=300,
        help="Seconds per ManageSieve answer (default: the contract's, 15).",
    ),
]


@dataclass
class Target:
    """Where a mailbox's scripts live; the password is resolved separately and registered for redaction."""

    host: str
    port: int
    server_name: str | None
    ca_file: str | None
    timeout: float
    login: str
    password_ref: str | None
    override_env: str

    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Live:
    """What the server holds for one mailbox."""

    capabilities: Capabilities
    scripts: list[tuple[str, bool]]
    active: str | None
    script: str | None  # the contract's script, when present
    active_text: str | None  # the active script, whatever its name


def load(ctx: RunContext, only: list[str] | None) -> list[SieveMailbox]:
    contract = ctx.contracts.load(SIEVE_CONTRACT, SieveContract)
    if not only:
        return contract.mailboxes
    unknown = [m for m in only if contract.mailbox(m) is None]
    if unknown:
        known = ", ".join(m.id for m in contract.mailboxes)
        raise UsageError(f"--mailbox {', '.join(unknown)}: not in {SIEVE_CONTRACT} (it has: {known})")
    return [contract.mailbox(m) for m in only]


def target(ctx: RunContext, box: SieveMailbox, timeout: float | None) -> Target:
    """The mailbox's ManageSieve endpoint and login, each defaulting to the stack contract."""
    stack = ctx.contracts.load(STACK_CONTRACT, StackContract) if ctx.contracts.exists(STACK_CONTRACT) else None
    stack_box = stack.mailbox(box.id) if stack else None
    end = box.managesieve
    port = end.port
    if port is None and stack:
        port = next((p.host for p in stack.pilot.ports if p.protocol.value == "ManageSieve"), None)
    host = end.host or (stack.connect_host() if stack else None)
    if not host or not port:
        raise ContractError(
            f"mailbox {box.id}: no ManageSieve host and port",
            hint="give managesieve.host/port in the routing contract, or a ManageSieve port in the stack contract",
        )
    login = box.login or (stack_box.login or stack_box.address if stack_box else None)
    if not login:
        raise ContractError(f"mailbox {box.id} is not a stack mailbox and names no login")
    ca_file = end.ca_file or (stack.endpoints.ca_file if stack and stack.endpoints else None)
    if ca_file and not Path(ca_file).is_absolute():
        ca_file = str(ctx.root.path / ca_file)
    return Target(
        host=host, port=port, server_name=end.server_name or (stack.server_name() if stack else None),
        ca_file=ca_file, timeout=timeout or connection_timeout(stack, end), login=login,
        password_ref=box.password_ref or (stack_box.password_ref if stack_box else None),
        override_env=mailbox_env(box.id),
    )  # fmt: skip


@contextmanager
def session(ctx: RunContext, box: SieveMailbox, where: Target) -> Iterator[ManageSieve]:
    """A logged-in session; refusals and network trouble become CouldNotEvaluate (exit 3)."""
    from spine_comms.protocols.managesieve import SieveError, connect

    password = ctx.secrets.resolve(where.password_ref, override_env=where.override_env,
                                   what=f"password of mailbox {box.id}")  # fmt: skip
    ctx.log(f"{box.id}: ManageSieve {where.where()} as {where.login}")
    debug = (lambda line: ctx.log(line, level="debug")) if ctx.options.debug else None
    try:
        client = connect(where.host, where.port, login=where.login, password=password.value,
                         server_name=where.server_name, ca_file=where.ca_file, timeout=where.timeout,
                         transcript=debug)  # fmt: skip
    except SieveError as exc:
        hint = f"check the password ({where.password_ref or 'no password_ref'} or ${where.override_env})"
        refused = exc.failure_kind is FailureKind.CREDENTIALS_REFUSED
        raise could_not_evaluate(exc, f"{box.id}: ManageSieve {where.where()}: {exc.message}",
                                 hint=hint if refused else None) from None  # fmt: skip
    try:
        yield client
    except SieveError as exc:
        raise could_not_evaluate(exc, f"{box.id}: ManageSieve {where.where()}: {exc.message}") from None
    finally:
        client.close()


def read_live(client: ManageSieve, box: SieveMailbox) -> Live:
    scripts = client.listscripts()
    active = next((name for name, on in scripts if on), None)
    names = {name for name, _ in scripts}
    script = client.getscript(box.script) if box.script in names else None
    active_text = script if active == box.script else (client.getscript(active) if active else None)
    return Live(client.capabilities, scripts, active, script, active_text)


def normalized(text: str | None) -> str | None:
    return None if text is None else text.replace("\r\n", "\n")


def unified_diff(live: str | None, rendered: str, name: str) -> str:
    return "".join(difflib.unified_diff(
        (normalized(live) or "").splitlines(keepends=True), rendered.splitlines(keepends=True),
        fromfile=f"live/{name}", tofile=f"rendered/{name}",
    ))  # fmt: skip


def extensions_check(box: SieveMailbox, caps: Capabilities, allowed: list[str] | None = None) -> Check:
    needed = required_extensions(box.rules)
    missing = [e for e in needed if e not in caps.sieve and e not in (allowed or [])]
    detail = (f"the server lacks {', '.join(missing)}" if missing
              else f"all supported: {', '.join(needed) or 'none needed'}")  # fmt: skip
    return Check("sieve.extensions", Status.FAIL if missing else Status.OK, detail, box.id, needed,
                 [e for e in needed if e not in missing], {"server": caps.sieve, "missing": missing})  # fmt: skip


# Stalwart's `sieve.untrusted.limits.script-size` default by release line (reference/stalwart.md):
# 1 MiB up to 0.15.5 (crates/common/src/config/scripts.rs 41-45), 100 KiB from 0.16.
STALWART_SCRIPT_LIMIT = {"0.15": 1024 * 1024, "0.16": 100 * 1024}


def script_limit(box: SieveMailbox, caps) -> tuple[int | None, str]:
    """(the script size limit, where it comes from); None when the server's HAVESPACE is the judge."""
    endpoint = box.managesieve
    if endpoint.max_script_bytes:
        return endpoint.max_script_bytes, "managesieve.max_script_bytes"
    if "stalwart" not in (caps.implementation or "").lower():
        return None, "HAVESPACE"  # Dovecot and others check the size in HAVESPACE (RFC 5804 §2.5)
    version = endpoint.server_version
    if version is None:
        return STALWART_SCRIPT_LIMIT["0.16"], "Stalwart, release unknown: the 0.16 line's 100 KiB assumed"
    major, minor = (int(part) for part in version.split(".")[:2])
    line = "0.15" if (major, minor) <= (0, 15) else "0.16"
    return STALWART_SCRIPT_LIMIT[line], f"Stalwart {version} (managesieve.server_version)"


def size_check(box: SieveMailbox, caps, size: int, space) -> Check:
    """The rendered script's size against HAVESPACE and the server's limit (Stalwart's HAVESPACE ignores size)."""
    limit, source = script_limit(box, caps)
    evidence = {"havespace": space.to_dict(), "limit": limit, "limit_from": source}
    if not space.ok:
        return Check("sieve.limits.size", Status.FAIL, f"{size} bytes: HAVESPACE {space}", box.id, "fits", size,
                     evidence)  # fmt: skip
    if limit is not None and size > limit:
        return Check("sieve.limits.size", Status.FAIL,
                     f"{size} bytes is over the {limit}-byte script limit ({source}); the upload would be refused",
                     box.id, f"<= {limit} bytes", size, evidence)  # fmt: skip
    shown = f"; limit {limit} bytes ({source})" if limit is not None else ""
    return Check("sieve.limits.size", Status.OK, f"{size} bytes: HAVESPACE {space}{shown}", box.id,
                 f"<= {limit} bytes" if limit is not None else "fits", size, evidence)  # fmt: skip


@capability("sieve.status", safety="read-only", approval="auto")
def sieve_status(ctx: RunContext, mailbox: MailboxOpt = None, timeout: TimeoutOpt = None) -> Result:
    """Compare each mailbox's live Sieve script with the one rendered from the routing contract:
    equal or a unified diff, the extensions needed against the server's SIEVE capability, the rules
    the live script holds (read back from its markers), its size against the server's limits.
    Drift is a fail (exit 1); a refused login or an unreachable server is an error (exit 3)."""
    result = Result()
    result.data = {"contract": SIEVE_CONTRACT, "mailboxes": {}}
    for box in load(ctx, mailbox):
        where = target(ctx, box, timeout)
        rendered = render(box)
        with session(ctx, box, where) as client:
            live = read_live(client, box)
            space = client.havespace(box.script, len(rendered.encode()))
        result.data["mailboxes"][box.id] = _report(result, box, where, live, rendered, space)
    return result


def _report(result: Result, box: SieveMailbox, where: Target, live: Live, rendered: str, space) -> dict:
    caps = live.capabilities
    result.add(Check("sieve.connect", Status.OK, f"{caps.implementation or 'a ManageSieve server'} "
                     f"(VERSION {caps.version or 'none'}) at {where.where()}", box.id, "logged in over TLS",
                     "logged in over TLS", caps.to_dict()))  # fmt: skip
    result.add(extensions_check(box, caps))
    active_ok = live.active == box.script
    detail = (f"{box.script} is active" if active_ok
              else f"{box.script} is {'present but not active' if live.script is not None else 'not on the server'}; "
              f"active: {live.active or 'none'}")  # fmt: skip
    listed = [{"name": n, "active": a} for n, a in live.scripts]
    result.add(Check("sieve.script.active", Status.OK if active_ok else Status.FAIL, detail, box.id,
                     box.script, live.active, {"scripts": listed}))  # fmt: skip
    equal = normalized(live.script) == rendered
    diff = "" if equal else unified_diff(live.script, rendered, box.script)
    result.add(Check("sieve.script.equal", Status.OK if equal else Status.FAIL,
                     "the live script equals the rendered one" if equal
                     else f"the live script differs from the rendered one ({diff.count(chr(10))} diff lines)",
                     box.id, "rendered", "equal" if equal else "differs", {"diff": diff}))  # fmt: skip
    parsed = parse_script(live.script or "")
    wanted = [r.to_canonical() for r in box.rules]
    held = [r.to_canonical() for r in parsed.rules]
    status = Status.OK if held == wanted and not parsed.unparsed else Status.FAIL
    names_live = [r.name for r in parsed.rules]
    changed = sorted({r["name"] for r in held if r not in wanted} | {r["name"] for r in wanted if r not in held})
    detail = f"live rules: {', '.join(names_live) or 'none'}"
    if changed:
        detail += f"; differ from the contract: {', '.join(changed)}"
    if parsed.unparsed:
        detail += f"; {len(parsed.unparsed)} unparsed part(s)"
    result.add(Check("sieve.script.rules", status, detail, box.id, [r.name for r in box.rules], names_live,
                     parsed.to_dict()))  # fmt: skip
    size = len(rendered.encode())
    result.add(size_check(box, caps, size, space))
    redirects = sum(1 for r in box.rules for a in r.actions if a.kind == "redirect")
    limit = caps.max_redirects
    over = limit is not None and redirects > limit
    result.add(Check("sieve.limits.redirects", Status.WARN if over else Status.OK,
                     f"{redirects} redirect(s); the server allows {limit if limit is not None else 'unstated'}"
                     + (" per message: later ones are ignored (stalwart#706)" if over else ""),
                     box.id, limit, redirects))  # fmt: skip
    state = f"{'active' if active_ok else 'NOT active'}, {'in sync' if equal else 'DRIFT'}"
    result.summary.append(f"{box.id}: {box.script} {state} ({len(box.rules)} rule(s)) at {where.where()}")
    if diff:
        result.summary.extend(diff.rstrip("\n").split("\n"))
    return {"endpoint": where.where(), "login": where.login, "script": box.script, "active": live.active,
            "scripts": listed, "equal": equal, "diff": diff,
            "needed_extensions": required_extensions(box.rules), "server_extensions": caps.sieve,
            "rules_contract": [r.name for r in box.rules], "rules_live": names_live,
            "unparsed": [u.to_dict() for u in parsed.unparsed], "size": size,
            "capabilities": caps.to_dict()}  # fmt: skip
