"""communications.inbox.health: the loop's inbox gate, read-only.

Per mailbox: the login works; per folder, the checkpoint agrees with the server
(same UIDVALIDITY, last UID below UIDNEXT) and no message above it is older than
health.max_unprocessed_minutes; the last successful poll (the checkpoints'
last_poll_at) or the heartbeat of a live, connected watch loop
(<state dir>/<mailbox>.heartbeat.json) is younger than health.max_heartbeat_age_seconds;
and the mailroom's queued lane is writable. Folders are opened with EXAMINE and
nothing is written anywhere.

A heartbeat counts only when it says the watch is connected (idle, polling or
catching up) and, on this host, its pid is running: a watch stuck reconnecting
rewrites its heartbeat all the same, and a SIGKILLed one leaves `status: idle`
behind. Without a heartbeat that counts, the last successful poll decides, so the
gate turns red within max_heartbeat_age_seconds of the last real work.

Exit codes: 0 ok or warn, 1 fail, 3 when no mailbox could be asked.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status

UNPROCESSED_SCAN = 1000  # the lowest UIDs above a checkpoint are the oldest; this many tell the story
MIN_FREE_BYTES = 16 * 1024 * 1024
MIN_FREE_INODES = 1000  # a message costs three to five files


@capability("communications.inbox.health", safety="read-only", approval="auto")
def inbox_health(
    ctx: RunContext,
    mailbox: Annotated[
        str | None, typer.Option(help="Only this mailbox (id or address). Default: every inbox-contract mailbox.")
    ] = None,
) -> Result:
    """Is the inbox loop healthy? Login, checkpoints consistent with the server, a fresh poll or watch heartbeat,
    nothing left unprocessed too long, the mailroom writable."""
    from spine_comms.endpoints.mailbox import load_inbox_contract, open_mailbox, pick_mailbox
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
    from spine_comms.endpoints.mailbox import could_not_evaluate
    from spine_comms.inbox.checkpoint import CheckpointStore, read_heartbeat
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
            result.add(
                Check(
                    id="inbox.health.login",
                    status=Status.OK,
                    detail=f"logged in as {target.login}",
                    subject=target.address,
                )
            )
            for folder in target.folders:
                checkpoint = _folder_checks(imap, store, folder, target, now, limits, result, entry)
                when = _parse_time(checkpoint.last_poll_at) if checkpoint is not None else None
                if when is not None:
                    polls.append(when)
    except ImapError as exc:
        error = could_not_evaluate(target, exc)
        if not any(c.id == "inbox.health.login" and c.subject == target.address for c in result.checks):
            result.add(
                Check(
                    id="inbox.health.login",
                    status=Status.ERROR,
                    detail=error.message,
                    subject=target.address,
                    expected="login",
                    actual=None,
                    evidence={"kind": error.kind},
                )
            )
            entry["error"] = error.message
            return error
        result.add(
            Check(
                id="inbox.health.folder",
                status=Status.ERROR,
                detail=error.message,
                subject=target.address,
                expected=None,
                actual=None,
                evidence={"kind": error.kind},
            )
        )
        return None

    heartbeat = read_heartbeat(state_dir, target.id)
    ignored = watch_problem(heartbeat) if heartbeat else None
    beat = _parse_time(str(heartbeat.get("at"))) if heartbeat and ignored is None else None
    latest = max([t for t in [*polls, beat] if t is not None], default=None)
    entry["last_poll_at"] = max(polls).strftime("%Y-%m-%dT%H:%M:%SZ") if polls else None
    entry["heartbeat"] = heartbeat
    max_age = limits.max_heartbeat_age_seconds
    aside = f"; the watch heartbeat does not count: {ignored}" if ignored else ""
    if latest is None:
        status, age = Status.FAIL, None
        detail = "never polled: no checkpoint with a successful poll, no heartbeat of a connected watch" + aside
    else:
        age = round((now - latest).total_seconds(), 1)
        source = "watch heartbeat" if latest == beat else "successful poll"
        status = Status.OK if age <= max_age else Status.FAIL
        detail = f"last {source} {age:g} s ago (at most {max_age:g} s){aside}"
    result.add(
        Check(
            id="inbox.health.fresh",
            status=status,
            detail=detail,
            subject=target.address,
            expected=f"<= {max_age:g} s",
            actual=age,
            evidence={"last_poll_at": entry["last_poll_at"], "heartbeat": heartbeat, "heartbeat_ignored": ignored},
        )
    )
    return None


CONNECTED = ("idle", "polling", "catching-up")  # the watch loop's states while it holds a working connection


def watch_problem(heartbeat: dict) -> str | None:
    """Why a heartbeat does not show a live, connected watch; None when it does. The pid is checked only
    on the host that wrote it (a heartbeat without a host is from before hosts were recorded: this one)."""
    from spine_comms.core.atomic import running

    status = heartbeat.get("status")
    if status not in CONNECTED:
        return f"the watch is {status or 'in an unknown state'}" + (
            f" ({heartbeat['last_error']})" if heartbeat.get("last_error") else "")  # fmt: skip
    pid = heartbeat.get("pid")
    here = heartbeat.get("host") in (None, socket.gethostname())
    if here and (not isinstance(pid, int) or pid <= 0 or not running(pid)):
        return f"its process (pid {pid}) is not running (it said {status})"
    return None


def _folder_checks(imap, store, folder, target, now, limits, result: Result, entry: dict):
    from spine_comms.protocols.imap import ImapError

    subject = f"{target.address} {folder}"
    try:
        checkpoint = store.load(folder)
    except ValueError as exc:
        result.add(Check(id="inbox.health.checkpoint", status=Status.FAIL, detail=str(exc), subject=subject))
        return None
    try:
        state = imap.open(folder)
    except ImapError as exc:
        result.add(
            Check(
                id="inbox.health.checkpoint",
                status=Status.FAIL,
                detail=f"cannot open {folder}: {exc.message}",
                subject=subject,
            )
        )
        return checkpoint
    info = {"folder": folder, "uidvalidity": state.uidvalidity, "uidnext": state.uidnext,
            "checkpoint": checkpoint.to_dict() if checkpoint else None}  # fmt: skip
    entry["folders"].append(info)
    server = {"uidvalidity": state.uidvalidity, "uidnext": state.uidnext}
    if checkpoint is None:
        result.add(
            Check(
                id="inbox.health.checkpoint",
                status=Status.WARN,
                detail="no checkpoint yet: never polled",
                subject=subject,
                expected="a checkpoint",
                actual=None,
                evidence=server,
            )
        )
        last = 0
    elif checkpoint.uidvalidity != state.uidvalidity:
        result.add(
            Check(
                id="inbox.health.checkpoint",
                status=Status.WARN,
                detail=f"UIDVALIDITY is {state.uidvalidity}, the checkpoint has {checkpoint.uidvalidity}: "
                "the next poll "
                "re-baselines (nothing is enqueued twice)",
                subject=subject,
                expected=checkpoint.uidvalidity,
                actual=state.uidvalidity,
                evidence=server,
            )
        )
        last = 0
    elif state.uidnext is not None and checkpoint.last_uid > state.uidnext - 1:
        result.add(
            Check(
                id="inbox.health.checkpoint",
                status=Status.FAIL,
                detail=f"the checkpoint's last UID {checkpoint.last_uid} is at or above UIDNEXT {state.uidnext}: "
                "the server "
                "lost messages or the checkpoint belongs elsewhere",
                subject=subject,
                expected=f"<= {state.uidnext - 1}",
                actual=checkpoint.last_uid,
                evidence=server,
            )
        )
        return checkpoint
    else:
        result.add(
            Check(
                id="inbox.health.checkpoint",
                status=Status.OK,
                detail=f"UIDVALIDITY {state.uidvalidity}, last UID {checkpoint.last_uid}, UIDNEXT {state.uidnext}",
                subject=subject,
                expected=state.uidvalidity,
                actual=checkpoint.uidvalidity,
                evidence=server,
            )
        )
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
        result.add(
            Check(
                id="inbox.health.unprocessed",
                status=Status.FAIL,
                detail=f"{len(old)} message(s) above the checkpoint arrived more than "
                f"{limits.max_unprocessed_minutes:g} min "
                f"ago (the oldest {minutes:g} min ago, UID {old[0].uid})",
                subject=subject,
                expected=f"none older than {limits.max_unprocessed_minutes:g} min",
                actual=len(old),
                evidence={"uids": [m.uid for m in old[:50]], "waiting": len(waiting)},
            )
        )
    else:
        result.add(
            Check(
                id="inbox.health.unprocessed",
                status=Status.OK,
                detail=f"{len(waiting)} message(s) waiting, none older than {limits.max_unprocessed_minutes:g} min",
                subject=subject,
                expected=0,
                actual=0,
                evidence={"waiting": len(waiting)},
            )
        )


def _mailroom_check(ctx, contract, result: Result, make_target) -> None:
    target = make_target(ctx, contract, contract.mailboxes[0].id) if contract.mailroom.via == "filesystem" else None
    if target is None:
        room = contract.mailroom
        where = room.bridge.url if room.via == "bridge" else room.jetstream.servers[0]
        result.add(
            Check(
                id="inbox.health.mailroom",
                status=Status.SKIP,
                detail=f"via {room.via} {where}: writability is the {room.via}'s (not checked from here)",
            )
        )
        return
    ok, where = target.writable()
    if not ok:
        result.add(
            Check(
                id="inbox.health.mailroom",
                status=Status.FAIL,
                detail=where,
                subject="queued lane",
                expected="writable",
                actual="not writable",
            )
        )
        return
    # The queued lane and the state directory (messages, markers, checkpoints) may sit on two file systems;
    # either one full, of space or of inodes, stops the poll (exit 3, nothing placed).
    state = str(contract.state_path(ctx.mailroom.state))
    for label, path in (("queued lane", where), ("state directory", state)):
        free, inodes = _room(path)
        if free is not None and free < MIN_FREE_BYTES:
            result.add(
                Check(
                    id="inbox.health.mailroom",
                    status=Status.FAIL,
                    detail=f"{path} has only {free} bytes free",
                    subject=label,
                    expected=f">= {MIN_FREE_BYTES} bytes free",
                    actual=free,
                )
            )
            return
        if inodes is not None and inodes < MIN_FREE_INODES:
            result.add(
                Check(
                    id="inbox.health.mailroom",
                    status=Status.FAIL,
                    detail=f"{path} has only {inodes} free inodes (files)",
                    subject=label,
                    expected=f">= {MIN_FREE_INODES} free inodes",
                    actual=inodes,
                )
            )
            return
    free, inodes = _room(where)
    result.add(
        Check(
            id="inbox.health.mailroom",
            status=Status.OK,
            detail=f"{where} is writable ({free} bytes, {inodes} inodes free)",
            subject="queued lane",
            expected="writable",
            actual="writable",
        )
    )


def _room(path: str) -> tuple[int | None, int | None]:
    """(free bytes, free inodes) of the file system holding `path` (or its nearest existing parent); an inode
    count of None where the file system has no fixed number of them (btrfs reports 0 files)."""
    probe = path
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        stat = os.statvfs(probe)
    except OSError:
        return None, None
    return stat.f_bavail * stat.f_frsize, (stat.f_favail if stat.f_files else None)


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
