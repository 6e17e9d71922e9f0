"""sieve.apply: put the rendered routing script on the server, or put the previous one back.

A dry run unless --execute (which needs approval). With --execute, per mailbox:
refuse when the server lacks an extension the rules need; CHECKSCRIPT (RFC 5804
servers with VERSION "1.0") so a syntax error comes back with the server's
message and line before anything changes; keep the active script under
`<script>.previous` with a first comment line naming what it was (or that none
was active); PUTSCRIPT; SETACTIVE; read back and compare. `--rollback
--execute` restores that backup under its old name and activates it (or
deactivates when nothing was active before).
"""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer

from spine_comms.contracts.sieve import SieveMailbox
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status
from spine_comms.sieve.render import render
from spine_comms.sieve.status import (
    MailboxOpt,
    TimeoutOpt,
    extensions_check,
    load,
    normalized,
    read_live,
    session,
    target,
    unified_diff,
)  # fmt: skip

_BACKUP_HEAD = re.compile(r'^# spine-comms backup: (?:was active as ("(?:[^"\\]|\\.)*")|no script was active)[^\n]*\n')
_LINE = re.compile(r"\bline (\d+)\b")


@capability("sieve.apply", safety="mutating", approval="manual")
def sieve_apply(
    ctx: RunContext,
    mailbox: MailboxOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute, approval asked
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="Put back the script kept as <script>.previous by the last apply and "
                     "activate it (with --execute; alone it shows what would be restored)."),
    ] = False,
    allow_extension: Annotated[
        list[str] | None,
        typer.Option("--allow-extension", metavar="NAME", help="Treat this Sieve extension as supported though "
                     "the server does not advertise it (servers can under-advertise); its CHECKSCRIPT still has "
                     "the last word."),
    ] = None,
    timeout: TimeoutOpt = None,
) -> Result:  # fmt: skip
    """Render the routing contract into each mailbox's Sieve script and apply it over ManageSieve.
    Dry run by default (the script and the diff with the live one); --execute --yes checks it on the
    server, keeps the active script as <script>.previous, uploads, activates and reads it back.
    A missing extension or a server-side syntax error is a fail (exit 1), naming it and the line."""
    execute = not dry_run  # decided by the runner, which also asked for approval
    mode = "execute" if execute else "dry-run"
    result = Result()
    result.data = {"mode": mode, "rollback": rollback, "mailboxes": {}}
    for box in load(ctx, mailbox):
        where = target(ctx, box, timeout)
        with session(ctx, box, where) as client:
            if rollback:
                entry = _rollback(ctx, client, box, result, execute)
            else:
                entry = _apply(ctx, client, box, result, execute, [e.lower() for e in allow_extension or []])
        result.data["mailboxes"][box.id] = {"endpoint": where.where(), "login": where.login, **entry}
    return result


def _apply(ctx, client, box: SieveMailbox, result: Result, execute: bool, allowed: list[str]) -> dict:
    rendered = render(box)
    live = read_live(client, box)
    diff = unified_diff(live.script, rendered, box.script)
    in_place = normalized(live.script) == rendered and live.active == box.script
    entry = {"script": box.script, "backup": box.backup_name, "rendered": rendered, "diff": diff,
             "active_before": live.active, "done": []}  # fmt: skip
    result.summary.append(f"{box.id}: {box.script} ({len(box.rules)} rule(s), {len(rendered.encode())} bytes)")
    extensions = result.add(extensions_check(box, live.capabilities, allowed))
    if extensions.status is not Status.OK:
        result.summary.append(f"{box.id}: refused: {extensions.detail}")
        return entry
    if in_place:
        result.add(Check("sieve.apply.script", Status.OK, f"{box.script} is already active and equal", box.id,
                         "rendered, active", "rendered, active"))  # fmt: skip
        result.summary.append(f"{box.id}: nothing to do: {box.script} is active and equal to the contract")
        return entry
    if not execute:
        result.add(Check("sieve.apply.script", Status.WARN, f"would upload and activate {box.script}"
                         + (f" (keeping {live.active} as {box.backup_name})" if live.active else ""), box.id,
                         "rendered, active", "differs", {"diff": diff}))  # fmt: skip
        result.summary += ["dry run: the script:", *rendered.rstrip("\n").split("\n"), "the diff (live -> rendered):",
                           *(diff.rstrip("\n").split("\n") if diff else ["(same text; not active)"]),
                           "run again with --execute --yes to apply"]  # fmt: skip
        return entry
    if live.capabilities.checkscript:
        verdict = client.checkscript(rendered)
        if not verdict.ok:
            result.add(_syntax_check(box, verdict))
            result.summary.append(f"{box.id}: the server refused the script: {verdict.text}")
            return entry
        entry["done"].append("checkscript")
    if live.active:
        client.putscript(box.backup_name, _backup_text(ctx, live.active, live.active_text or ""))
        entry["done"].append(f"backup {live.active} -> {box.backup_name}")
    else:
        client.putscript(box.backup_name, _backup_text(ctx, None, ""))
        entry["done"].append(f"backup (nothing active) -> {box.backup_name}")
    _put_and_activate(client, box.script, rendered, entry, result, box)
    return entry


def _put_and_activate(client, name: str, text: str, entry: dict, result: Result, box: SieveMailbox) -> None:
    from spine_comms.protocols.managesieve import SieveError

    try:
        client.putscript(name, text)
        entry["done"].append(f"putscript {name}")
        client.setactive(name)
        entry["done"].append(f"setactive {name}")
    except SieveError as exc:
        if exc.response is None:
            raise
        status = Status.PARTIAL if any(d.startswith("putscript") for d in entry["done"]) else Status.FAIL
        result.add(Check("sieve.apply.script", status, f"{exc.message}", box.id, "uploaded and active",
                         entry["done"], exc.response.to_dict()))  # fmt: skip
        result.summary.append(f"{box.id}: {exc.message}")
        return
    back = client.getscript(name)
    active = next((n for n, on in client.listscripts() if on), None)
    same = normalized(back) == text and active == name
    result.add(Check("sieve.apply.script", Status.OK if same else Status.FAIL,
                     f"{name} uploaded, active and read back equal" if same
                     else f"read back: active={active}, equal={normalized(back) == text}",
                     box.id, "uploaded and active", "uploaded and active" if same else "differs",
                     {"done": entry["done"]}))  # fmt: skip
    result.summary.append(f"{box.id}: {'applied' if same else 'NOT applied as rendered'}: {', '.join(entry['done'])}")


def _backup_text(ctx: RunContext, active: str | None, text: str) -> str:
    stamp = ctx.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    what = f"was active as {json.dumps(active)}" if active else "no script was active"
    return f"# spine-comms backup: {what} before sieve.apply at {stamp}\n{text}"


def _syntax_check(box: SieveMailbox, verdict) -> Check:
    line = _LINE.search(verdict.text)
    return Check("sieve.apply.checkscript", Status.FAIL,
                 f"CHECKSCRIPT refused it: {verdict.text.splitlines()[0] if verdict.text else verdict}", box.id,
                 "OK", str(verdict), {**verdict.to_dict(), "line": int(line.group(1)) if line else None})  # fmt: skip


def _rollback(ctx, client, box: SieveMailbox, result: Result, execute: bool) -> dict:
    names = {n for n, _ in client.listscripts()}
    entry = {"script": box.script, "backup": box.backup_name, "done": []}
    if box.backup_name not in names:
        result.add(Check("sieve.apply.rollback", Status.FAIL, f"no {box.backup_name} on the server to restore",
                         box.id, box.backup_name, None))  # fmt: skip
        result.summary.append(f"{box.id}: nothing to roll back to ({box.backup_name} is not on the server)")
        return entry
    backup = client.getscript(box.backup_name)
    head = _BACKUP_HEAD.match(normalized(backup))
    if head is None:
        result.add(Check("sieve.apply.rollback", Status.FAIL, f"{box.backup_name} was not written by sieve.apply",
                         box.id, "a spine-comms backup", backup[:200]))  # fmt: skip
        return entry
    restore = json.loads(head.group(1)) if head.group(1) else None
    text = normalized(backup)[head.end() :]
    entry["restore"] = restore
    plan = f"restore {restore} and activate it" if restore else "deactivate (nothing was active before)"
    if not execute:
        result.add(Check("sieve.apply.rollback", Status.WARN, f"would {plan}", box.id, plan, None))
        result.summary += [f"{box.id}: dry run: would {plan}", "run again with --execute --yes to roll back"]
        return entry
    if restore is None:
        client.setactive("")
        entry["done"].append("setactive none")
        active = next((n for n, on in client.listscripts() if on), None)
        ok = active is None
        result.add(Check("sieve.apply.rollback", Status.OK if ok else Status.FAIL, f"deactivated; active: {active}",
                         box.id, None, active))  # fmt: skip
        result.summary.append(f"{box.id}: rolled back: no script active")
        return entry
    client.putscript(restore, text)
    entry["done"].append(f"putscript {restore}")
    client.setactive(restore)
    entry["done"].append(f"setactive {restore}")
    same = normalized(client.getscript(restore)) == text
    active = next((n for n, on in client.listscripts() if on), None)
    ok = same and active == restore
    result.add(Check("sieve.apply.rollback", Status.OK if ok else Status.FAIL,
                     f"restored {restore} from {box.backup_name} and activated it" if ok
                     else f"read back: active={active}, equal={same}", box.id, restore, active))  # fmt: skip
    result.summary.append(f"{box.id}: rolled back to {restore}")
    return entry
