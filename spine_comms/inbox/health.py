"""communications.inbox.health: the loop's inbox gate, read-only.

Per mailbox: the login works; per folder, the checkpoint agrees with the server
(same UIDVALIDITY, last UID below UIDNEXT) and no message above it is older than
health.max_unprocessed_minutes; the last successful poll (the checkpoints'
last_poll_at) or the watch loop's heartbeat (<state dir>/<mailbox>.heartbeat.json)
is younger than health.max_heartbeat_age_seconds; and the mailroom's queued lane
is writable. Folders are opened with EXAMINE and nothing is written anywhere.

Exit codes: 0 ok or warn, 1 fail, 3 when no mailbox could be asked.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status

UNPROCESSED_SCAN = 1000  # the lowest UIDs above a checkpoint are the oldest; this many tell the story
MIN_FREE_BYTES = 16 * 1024 * 1024


@capability("communications.inbox.health", safety="read-only", approval="auto")
def inbox_health(
    ctx: RunContext,
    mailbox: Annotated[
        str | None, typer.Option(help="Only this mailbox (id or address). Default: every inbox-contract mailbox.")
    ] = None,
) -> Result:
    """Is the inbox loop healthy? Login, checkpoints consistent with the server, a fresh poll or watch heartbeat,
    nothing left unprocessed too long, the mailroom writable."""
    from spine_comms.inbox.mailboxes import load_inbox_contract, open_mailbox, pick_mailbox
    from spine_comms.inbox.pipeline import inbox_state_dir, make_target

    contract = load_inbox_contract(ctx, required=True)
    ids = [pick_mailbox(ctx, contract, mailbox).id] if mailbox else [m.id for m in contract.mailboxes]
    targets = [open_mailbox(ctx, contract, i) for i in ids]
    state_dir = inbox_state_dir(ctx, contract)
    result = Result(data={"state_directory": str(state_dir), "mailboxes": []})
    _mailroom_check(ctx, contract, result, make_target)
    unreachable = []
    for target in targets:
        entry = {"mailbox": target.id, "address": target.address, "endpoint": target.endpoint(), "folders": []}
        result.data["mailboxes"].append(entry)
        error = _mailbox_checks(ctx, contract, target, state_dir, result, entry)
        if error is not None:
            unreachable.append(error)
    if unreachable and len(unreachable) == len(targets):
        raise unreachable[0]
    return result


def _mailbox_checks(ctx, contract, target, state_dir, result: Result, entry: dict):
    from spine_comms.inbox.checkpoint import CheckpointStore, read_heartbeat
    from spine_comms.inbox.poll import could_not_evaluate
    from spine_comms.protocols.imap import ImapError, session

    store = CheckpointStore(state_dir, target.id)
    if contract.mailroom.via == "jetstream" and contract.mailroom.jetstream.checkpoints == "kv":  # scale-out.md
        from spine_comms.inbox.jetstream_target import kv_checkpoint_reader

        store = kv_checkpoint_reader(ctx, contract.mailroom.jetstream, target.id)
    now = ctx.clock()
    limits = contract.health
    polls = []
    try:
        with session(target.imap) as imap:
            result.add(Check("inbox.health.login", Status.OK, f"logged in as {target.login}", target.address))
            for folder in target.folders:
                checkpoint = _folder_checks(imap, store, folder, target, now, limits, result, entry)
                when = _parse_time(checkpoint.last_poll_at) if checkpoint is not None else None
                if when is not None:
                    polls.append(when)
    except ImapError as exc:
        error = could_not_evaluate(target, exc)
        if not any(c.id == "inbox.health.login" and c.subject == target.address for c in result.checks):
            result.add(Check("inbox.health.login", Status.ERROR, error.message, target.address, "login", None,
                             {"kind": error.kind}))  # fmt: skip
            entry["error"] = error.message
            return error
        result.add(Check("inbox.health.folder", Status.ERROR, error.message, target.address, None, None,
                         {"kind": error.kind}))  # fmt: skip
        return None

    heartbeat = read_heartbeat(state_dir, target.id)
    beat = _parse_time(str(heartbeat.get("at"))) if heartbeat else None
    latest = max([t for t in [*polls, beat] if t is not None], default=None)
    entry["last_poll_at"] = max(polls).strftime("%Y-%m-%dT%H:%M:%SZ") if polls else None
    entry["heartbeat"] = heartbeat
    max_age = limits.max_heartbeat_age_seconds
    if latest is None:
        status, detail, age = Status.FAIL, "never polled: no checkpoint with a successful poll, no heartbeat", None
    else:
        age = round((now - latest).total_seconds(), 1)
        source = "watch heartbeat" if latest == beat else "poll"
        status = Status.OK if age <= max_age else Status.FAIL
        detail = f"last {source} {age:g} s ago (at most {max_age:g} s)"
    result.add(Check("inbox.health.fresh", status, detail, target.address, f"<= {max_age:g} s", age,
                     {"last_poll_at": entry["last_poll_at"], "heartbeat": heartbeat}))  # fmt: skip
    return None


def _folder_checks(imap, store, folder, target, now, limits, result: Result, entry: dict):
    from spine_comms.protocols.imap import ImapError

    subject = f"{target.address} {folder}"
    try:
        checkpoint = store.load(folder)
    except ValueError as exc:
        result.add(Check("inbox.health.checkpoint", Status.FAIL, str(exc), subject))
        return None
    try:
        state = imap.open(folder)
    except ImapError as exc:
        result.add(Check("inbox.health.checkpoint", Status.FAIL, f"cannot open {folder}: {exc.message}", subject))
        return checkpoint
    info = {"folder": folder, "uidvalidity": state.uidvalidity, "uidnext": state.uidnext,
            "checkpoint": checkpoint.to_dict() if checkpoint else None}  # fmt: skip
    entry["folders"].append(info)
    server = {"uidvalidity": state.uidvalidity, "uidnext": state.uidnext}
    if checkpoint is None:
        result.add(Check("inbox.health.checkpoint", Status.WARN, "no checkpoint yet: never polled", subject,
                         "a checkpoint", None, server))  # fmt: skip
        last = 0
    elif checkpoint.uidvalidity != state.uidvalidity:
        result.add(Check(
            "inbox.health.checkpoint", Status.WARN,
            f"UIDVALIDITY is {state.uidvalidity}, the checkpoint has {checkpoint.uidvalidity}: the next poll "
            "re-baselines (nothing is enqueued twice)", subject, checkpoint.uidvalidity, state.uidvalidity, server,
        ))  # fmt: skip
        last = 0
    elif state.uidnext is not None and checkpoint.last_uid > state.uidnext - 1:
        result.add(Check(
            "inbox.health.checkpoint", Status.FAIL,
            f"the checkpoint's last UID {checkpoint.last_uid} is at or above UIDNEXT {state.uidnext}: the server "
            "lost messages or the checkpoint belongs elsewhere", subject, f"<= {state.uidnext - 1}",
            checkpoint.last_uid, server,
        ))  # fmt: skip
        return checkpoint
    else:
        result.add(Check(
            "inbox.health.checkpoint", Status.OK,
            f"UIDVALIDITY {state.uidvalidity}, last UID {checkpoint.last_uid}, UIDNEXT {state.uidnext}",
            subject, state.uidvalidity, checkpoint.uidvalidity, server,
        ))  # fmt: skip
        last = checkpoint.last_uid
    _unprocessed(imap, state, last, now, limits, subject, result, info)
    return checkpoint


def _unprocessed(imap, state, last: int, now, limits, subject: str, result: Result, info: dict) -> None:
    waiting = [] if state.uidnext is not None and state.uidnext - 1 <= last else imap.uids_after(last)
    metas = imap.fetch_meta(waiting[:UNPROCESSED_SCAN]) if waiting else {}
    cutoff = now - timedelta(minutes=limits.max_unprocessed_minutes)
    old = sorted((m for m in metas.values() if m.internaldate and m.internaldate < cutoff), key=lambda m: m.uid)
    info["waiting"] = len(waiting)
    info["waiting_too_long"] = len(old)
    if old:
        oldest = min(m.internaldate for m in old)
        minutes = round((now - oldest).total_seconds() / 60, 1)
        result.add(Check(
            "inbox.health.unprocessed", Status.FAIL,
            f"{len(old)} message(s) above the checkpoint arrived more than {limits.max_unprocessed_minutes:g} min "
            f"ago (the oldest {minutes:g} min ago, UID {old[0].uid})", subject,
            f"none older than {limits.max_unprocessed_minutes:g} min", len(old),
            {"uids": [m.uid for m in old[:50]], "waiting": len(waiting)},
        ))  # fmt: skip
    else:
        result.add(Check(
            "inbox.health.unprocessed", Status.OK,
            f"{len(waiting)} message(s) waiting, none older than {limits.max_unprocessed_minutes:g} min",
            subject, 0, 0, {"waiting": len(waiting)},
        ))  # fmt: skip


def _mailroom_check(ctx, contract, result: Result, make_target) -> None:
    target = make_target(ctx, contract, contract.mailboxes[0].id) if contract.mailroom.via == "filesystem" else None
    if target is None:
        room = contract.mailroom
        where = room.bridge.url if room.via == "bridge" else room.jetstream.servers[0]
        result.add(Check("inbox.health.mailroom", Status.SKIP, f"via {contract.mailroom.via} {where}: "
                         f"writability is the {contract.mailroom.via}'s (not checked from here)"))  # fmt: skip
        return
    ok, where = target.writable()
    if not ok:
        result.add(Check("inbox.health.mailroom", Status.FAIL, where, "queued lane", "writable", "not writable"))
        return
    probe = where
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    free = None
    try:
        stat = os.statvfs(probe)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        pass
    if free is not None and free < MIN_FREE_BYTES:
        result.add(Check("inbox.health.mailroom", Status.FAIL, f"{where} is writable but only {free} bytes are free",
                         "queued lane", f">= {MIN_FREE_BYTES} bytes free", free))  # fmt: skip
        return
    result.add(Check("inbox.health.mailroom", Status.OK, f"{where} is writable ({free} bytes free)", "queued lane",
                     "writable", "writable"))  # fmt: skip


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when
