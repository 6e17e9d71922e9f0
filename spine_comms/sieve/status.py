"""sieve.status: is the routing the server runs the routing the contract says?

For each contract mailbox: log in over ManageSieve (STARTTLS, then PLAIN), read
the capabilities and Sieve extensions, list the scripts and the active one,
fetch the contract's script, and compare it with the rendered one. The shared
parts (where to connect, what the server holds) live here; sieve.apply uses them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from spine_comms.contracts.sieve import SIEVE_CONTRACT, SieveContract, SieveMailbox
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.endpoints.managesieve import SieveTarget, session, target
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
    return Check(
        id="sieve.extensions",
        status=Status.FAIL if missing else Status.OK,
        detail=detail,
        subject=box.id,
        expected=needed,
        actual=[e for e in needed if e not in missing],
        evidence={"server": caps.sieve, "missing": missing},
    )


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
        return Check(
            id="sieve.limits.size",
            status=Status.FAIL,
            detail=f"{size} bytes: HAVESPACE {space}",
            subject=box.id,
            expected="fits",
            actual=size,
            evidence=evidence,
        )
    if limit is not None and size > limit:
        return Check(
            id="sieve.limits.size",
            status=Status.FAIL,
            detail=f"{size} bytes is over the {limit}-byte script limit ({source}); the upload would be refused",
            subject=box.id,
            expected=f"<= {limit} bytes",
            actual=size,
            evidence=evidence,
        )
    shown = f"; limit {limit} bytes ({source})" if limit is not None else ""
    return Check(
        id="sieve.limits.size",
        status=Status.OK,
        detail=f"{size} bytes: HAVESPACE {space}{shown}",
        subject=box.id,
        expected=f"<= {limit} bytes" if limit is not None else "fits",
        actual=size,
        evidence=evidence,
    )


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


def _report(result: Result, box: SieveMailbox, where: SieveTarget, live: Live, rendered: str, space) -> dict:
    caps = live.capabilities
    result.add(
        Check(
            id="sieve.connect",
            status=Status.OK,
            detail=f"{caps.implementation or 'a ManageSieve server'} "
            f"(VERSION {caps.version or 'none'}) at {where.where()}",
            subject=box.id,
            expected="logged in over TLS",
            actual="logged in over TLS",
            evidence=caps.to_dict(),
        )
    )
    result.add(extensions_check(box, caps))
    active_ok = live.active == box.script
    detail = (f"{box.script} is active" if active_ok
              else f"{box.script} is {'present but not active' if live.script is not None else 'not on the server'}; "
              f"active: {live.active or 'none'}")  # fmt: skip
    listed = [{"name": n, "active": a} for n, a in live.scripts]
    result.add(
        Check(
            id="sieve.script.active",
            status=Status.OK if active_ok else Status.FAIL,
            detail=detail,
            subject=box.id,
            expected=box.script,
            actual=live.active,
            evidence={"scripts": listed},
        )
    )
    equal = normalized(live.script) == rendered
    diff = "" if equal else unified_diff(live.script, rendered, box.script)
    result.add(
        Check(
            id="sieve.script.equal",
            status=Status.OK if equal else Status.FAIL,
            detail="the live script equals the rendered one"
            if equal
            else f"the live script differs from the rendered one ({diff.count(chr(10))} diff lines)",
            subject=box.id,
            expected="rendered",
            actual="equal" if equal else "differs",
            evidence={"diff": diff},
        )
    )
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
    result.add(
        Check(
            id="sieve.script.rules",
            status=status,
            detail=detail,
            subject=box.id,
            expected=[r.name for r in box.rules],
            actual=names_live,
            evidence=parsed.to_dict(),
        )
    )
    size = len(rendered.encode())
    result.add(size_check(box, caps, size, space))
    redirects = sum(1 for r in box.rules for a in r.actions if a.kind == "redirect")
    limit = caps.max_redirects
    over = limit is not None and redirects > limit
    result.add(
        Check(
            id="sieve.limits.redirects",
            status=Status.WARN if over else Status.OK,
            detail=f"{redirects} redirect(s); the server allows {limit if limit is not None else 'unstated'}"
            + (" per message: later ones are ignored (stalwart#706)" if over else ""),
            subject=box.id,
            expected=limit,
            actual=redirects,
        )
    )
    state = f"{'active' if active_ok else 'NOT active'}, {'in sync' if equal else 'DRIFT'}"
    result.summary.append(f"{box.id}: {box.script} {state} ({len(box.rules)} rule(s)) at {where.where()}")
    if diff:
        result.summary.extend(diff.rstrip("\n").split("\n"))
    return {
        "endpoint": where.where(),
        "login": where.login,
        "script": box.script,
        "active": live.active,
        "scripts": listed,
        "equal": equal,
        "diff": diff,
        "needed_extensions": required_extensions(box.rules),
        "server_extensions": caps.sieve,
        "rules_contract": [r.name for r in box.rules],
        "rules_live": names_live,
        "unparsed": [u.to_dict() for u in parsed.unparsed],
        "size": size,
        "capabilities": caps.to_dict(),
    }
