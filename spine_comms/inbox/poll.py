"""communications.inbox.poll: the spine's unseen listing, and with --enqueue the inbox pipeline.

Without --enqueue it is the spine's capability (spine-conventions §6.5): same
flags, same environment variables, same JSON keys, read-only unless --mark-seen.
With --enqueue every new message of every contract mailbox (or --mailbox) goes
through spine_comms.inbox.pipeline into the mailroom exactly once.

Exit codes: 0 ok (and warn: another poll held the lock); 1 partial (a message or a
mailbox could not be processed: the rest was, and a rerun picks up what was not);
2 usage, contract or secret problems; 3 login refused or server unreachable (the
account is named, never the password).
"""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import CouldNotEvaluate, UsageError
from spine_comms.core.result import Check, Result, Status

LISTING_LIMIT = 10


@capability("communications.inbox.poll", safety="mutating", approval="auto")
def inbox_poll(
    ctx: RunContext,
    limit: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="At most this many messages: the newest unseen ones when listing (default 10, as the spine's), "
            "the oldest new ones per run with --enqueue (default: all; the rest waits for the next run).",
        ),
    ] = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
    mailbox: Annotated[
        str | None,
        typer.Option(
            help="A mailbox id (ops) or address of the inbox or stack contract. Default: ops when listing, "
            "every inbox-contract mailbox with --enqueue."
        ),
    ] = None,
    mark_seen: Annotated[
        bool, typer.Option("--mark-seen", help="Listing only: flag the listed messages \\Seen (as the spine's does).")
    ] = False,
    enqueue: Annotated[
        bool,
        typer.Option(
            "--enqueue",
            help="Run the pipeline: parse, classify, apply policy, dedup, store and enqueue every new message into "
            "the mailroom exactly once, then the contract's after_enqueue action and the checkpoint.",
        ),
    ] = False,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="With --enqueue: a folder without a checkpoint starts after its current last message, so old "
            "mail is not enqueued (the first run on a long-used mailbox).",
        ),
    ] = False,
    lock_wait: Annotated[
        float,
        typer.Option(
            min=0, max=3600, help="Seconds to wait when another poll or watch holds a mailbox's lock (default: none)."
        ),
    ] = 0.0,
) -> Result:
    """List the newest unseen mail (the spine's poll), or with --enqueue put every new message into the mailroom
    exactly once: parsed, classified, checked against policy, deduplicated, stored, checkpointed."""
    from spine_comms.inbox.mailboxes import load_inbox_contract

    if mark_seen and enqueue:
        raise UsageError("--mark-seen is for the listing; with --enqueue the contract's after_enqueue decides")
    if baseline and not enqueue:
        raise UsageError("--baseline only means something with --enqueue")
    contract = load_inbox_contract(ctx, required=enqueue)
    if not enqueue:
        return _listing(ctx, contract, mailbox, LISTING_LIMIT if limit is None else limit, mark_seen, dry_run)
    from spine_comms.inbox.poll_enqueue import enqueue_all

    return enqueue_all(ctx, contract, mailbox, limit=limit, dry_run=dry_run, baseline=baseline, lock_wait=lock_wait)


def could_not_evaluate(target, exc) -> CouldNotEvaluate:
    """Exit 3 naming the account and where (the kind from the outcome map); the password never appears."""
    from spine_comms.core.outcomes import FailureKind
    from spine_comms.core.outcomes import could_not_evaluate as outcome_error

    hint = None
    if exc.failure_kind is FailureKind.CREDENTIALS_REFUSED:
        hint = f"check the password of mailbox {target.id} ({target.password_source})"
    elif exc.failure_kind in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT, FailureKind.TLS_UNTRUSTED):
        hint = "check the host and port (the stack contract, STALWART_IMAP_HOST/STALWART_IMAP_PORT) and the CA file"
    return outcome_error(exc, f"IMAP {target.where()} as {target.login}: {exc.stage}: {exc.message}", hint=hint)


def _default_mailbox(ctx: RunContext, contract) -> str:
    if contract.mailbox("ops") is not None:
        return "ops"
    return contract.mailboxes[0].id


def _listing(ctx: RunContext, contract, wanted: str | None, limit: int, mark_seen: bool, dry_run: bool) -> Result:
    from spine_comms.inbox.listing import list_unseen
    from spine_comms.inbox.mailboxes import open_mailbox
    from spine_comms.protocols.imap import ImapError, session

    target = open_mailbox(ctx, contract, wanted or _default_mailbox(ctx, contract))
    folder = target.folders[0]
    ctx.log(f"listing unseen mail in {folder} of {target.address} via {target.where()} as {target.login}")
    try:
        with session(target.imap) as imap:
            data = list_unseen(
                imap, target, folder, limit=limit, mark_seen=mark_seen, dry_run=dry_run, policy=contract.policy
            )
    except ImapError as exc:
        raise could_not_evaluate(target, exc) from None
    result = Result(data=data)
    result.add(Check(
        "inbox.poll.unseen", Status.OK,
        f"{data['unseen_count']} unseen in {folder}" + ("" if dry_run else f", {data['fetched_count']} listed"),
        target.address, None, data["unseen_count"],
    ))  # fmt: skip
    result.summary += [
        f"mailbox: {target.address}",
        f"imap_host: {target.imap.host}",
        f"unseen_count: {data['unseen_count']}",
    ]
    if not dry_run:
        result.summary.append(f"fetched: {data['fetched_count']}")
    result.summary.append(f"limit: {limit}")
    for message in data.get("messages", []):
        result.summary.append(f"- {message['date']} {message['from']}: {message['subject']}")
    return result
