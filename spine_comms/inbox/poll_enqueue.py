"""`communications.inbox.poll --enqueue`: the pipeline over the contract's mailboxes, and its report.

Per mailbox: new, enqueued, quarantined (parked, with reasons), dropped,
duplicates, errors, checkpoint before and after per folder, and the items
written. One check per mailbox (`inbox.poll.mailbox`), plus
`inbox.poll.secret_match` when an item would have tripped the watcher's secret
pattern (parked or redacted per policy.secret_match, never silently).
"""

from __future__ import annotations

from contextlib import contextmanager

from spine_comms.contracts.inbox import InboxContract
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status


def enqueue_all(
    ctx: RunContext,
    contract: InboxContract,
    wanted: str | None,
    *,
    limit: int | None,
    dry_run: bool,
    baseline: bool,
    lock_wait: float,
) -> Result:
    from spine_comms.endpoints.mailbox import open_mailbox, pick_mailbox
    from spine_comms.inbox.pipeline import inbox_state_dir

    ids = [pick_mailbox(ctx, contract, wanted).id] if wanted else [m.id for m in contract.mailboxes]
    targets = [open_mailbox(ctx, contract, mailbox_id) for mailbox_id in ids]  # every secret resolved up front
    result = Result(data={"state_directory": str(inbox_state_dir(ctx, contract)), "mailboxes": []})
    if not dry_run:
        result.data["mailroom"] = contract.mailroom.via
    unreachable = []
    for target in targets:
        try:
            if dry_run:
                entry = _dry_run(ctx, contract, target)
                result.add(
                    Check(
                        id="inbox.poll.mailbox",
                        status=Status.OK,
                        detail=_dry_line(entry),
                        subject=target.address,
                        expected=None,
                        actual=entry,
                    )
                )
            else:
                entry = _poll(ctx, contract, target, limit, baseline, lock_wait, result)
        except _Unreachable as exc:
            unreachable.append(exc.error)
            entry = {"mailbox": target.id, "address": target.address, "error": {"stage": "login", "error": str(exc)}}
            result.add(
                Check(
                    id="inbox.poll.login",
                    status=Status.ERROR,
                    detail=exc.error.message,
                    subject=target.address,
                    expected="login",
                    actual=None,
                    evidence={"kind": exc.error.kind},
                )
            )
        result.data["mailboxes"].append(entry)
    if not dry_run:  # DSNs handed to the outbox, over every mailbox
        counts = [m.get("bounces") or {} for m in result.data["mailboxes"]]
        result.data["bounces"] = {key: sum(c.get(key, 0) for c in counts) for key in ("noted", "matched", "errors")}
        if any(m.get("enqueued") or m.get("quarantined") for m in result.data["mailboxes"]):
            # Items were placed: the run changed the mailroom, so it is partial, never "could not evaluate".
            for check in result.checks:
                if check.id == "inbox.poll.mailbox" and check.status is Status.ERROR:
                    check.status = Status.PARTIAL
    if unreachable and len(unreachable) == len(targets):
        raise unreachable[0]  # nothing could be asked: exit 3 with the account named
    return result


class _Unreachable(Exception):
    def __init__(self, error) -> None:
        super().__init__(error.message)
        self.error = error


@contextmanager
def _session(target):
    """An IMAP session; a failure to connect or log in becomes _Unreachable (exit 3 when all are)."""
    from spine_comms.endpoints.mailbox import could_not_evaluate
    from spine_comms.protocols.imap import ImapError, session

    opened = False
    try:
        with session(target.imap) as imap:
            opened = True
            yield imap
    except ImapError as exc:
        if opened:
            raise
        raise _Unreachable(could_not_evaluate(target, exc)) from None


def _poll(ctx, contract, target, limit, baseline, lock_wait, result: Result) -> dict:
    from spine_comms.inbox.pipeline import process_new

    ctx.log(f"polling {target.address} ({', '.join(target.folders)}) via {target.where()} as {target.login}")
    with _session(target) as imap:
        outcome = process_new(ctx, contract, target, imap, limit=limit, lock_wait=lock_wait, baseline=baseline)
    entry = {**outcome.to_dict(), "endpoint": target.endpoint()}  # read by contract.endpoints.sync
    status, detail = _verdict(outcome)
    # The evidence without the per-message lists: data has them, and the envelope is printed and
    # kept in the receipt with an indent (json's slow Python encoder), so a second copy of ten
    # thousand entries cost more than a second.
    folders = [{k: v for k, v in f.items() if k not in _PER_MESSAGE} for f in entry["folders"]]
    result.add(
        Check(
            id="inbox.poll.mailbox",
            status=status,
            detail=detail,
            subject=target.address,
            expected="every new message committed",
            actual=entry["new"],
            evidence={"folders": folders, "error": outcome.error},
        )
    )
    secrets = [s for f in outcome.folders for s in f.secret_matches]
    if secrets:
        actions = ", ".join(sorted({s["action"] for s in secrets}))
        result.add(
            Check(
                id="inbox.poll.secret_match",
                status=Status.WARN,
                detail=f"{len(secrets)} item(s) would have tripped the mailroom watcher's secret pattern: {actions} "
                f"(policy.secret_match: {contract.policy.secret_match})",
                subject=target.address,
                expected="no secret-like text in items",
                actual=len(secrets),
                evidence=secrets,
            )
        )
    bounces = outcome.bounces()
    if bounces["errors"]:
        result.add(
            Check(
                id="inbox.poll.bounces",
                status=Status.WARN,
                detail=f"{bounces['errors']} bounce(s) were delivered but the outbox could not note them (see the log)",
                subject=target.address,
                expected="every bounce noted",
                actual=bounces,
                evidence=bounces,
            )
        )
    result.summary.append(f"{target.address}: {detail}")
    for folder in outcome.folders:
        for parked in folder.parked:
            result.summary.append(f"  parked UID {parked['uid']} ({parked['run_id']}): {'; '.join(parked['reasons'])}")
        for error in folder.errors:
            result.summary.append(f"  error {error.get('stage')}: {error.get('error')}")
    if outcome.error:
        result.summary.append(f"  stopped: {outcome.error['stage']}: {outcome.error['error']}")
    return entry


_PER_MESSAGE = ("enqueued_messages", "parked", "dropped_messages", "duplicate_messages", "items", "vanished")


def _verdict(outcome) -> tuple[Status, str]:
    if outcome.locked:
        return Status.WARN, f"another poll holds the lock; nothing done ({outcome.locked})"
    counts = outcome.to_dict()
    line = (
        f"{counts['new']} new, {counts['enqueued']} enqueued, {counts['quarantined']} quarantined, "
        f"{counts['dropped']} dropped, {counts['duplicates']} duplicates, {counts['errors']} errors"
    )
    remaining = sum(f.remaining for f in outcome.folders)
    if remaining:
        line += f", {remaining} left for the next run"
    if outcome.error:
        stopped = f"{line}; stopped at {outcome.error['stage']}: {outcome.error['error']}"
        if outcome.error.get("disk_full") and not counts["enqueued"] and not counts["quarantined"]:
            return Status.ERROR, f"the disk is full, nothing was placed: {stopped}"  # exit 3, the path named
        return Status.PARTIAL, stopped
    if outcome.message_errors:
        return Status.PARTIAL, line
    return Status.OK, line


def _dry_run(ctx, contract, target) -> dict:
    """What is above each checkpoint, read with EXAMINE; nothing written, nothing locked."""
    from spine_comms.inbox.checkpoint import CheckpointStore
    from spine_comms.inbox.pipeline import inbox_state_dir
    from spine_comms.protocols.imap import ImapError

    store = CheckpointStore(inbox_state_dir(ctx, contract), target.id)
    if contract.mailroom.via == "jetstream" and contract.mailroom.jetstream.checkpoints == "kv":  # scale-out.md
        from spine_comms.inbox.jetstream_target import kv_checkpoint_reader

        store = kv_checkpoint_reader(ctx, contract.mailroom.jetstream, target.id)
    folders = []
    with _session(target) as imap:
        for folder in target.folders:
            try:
                checkpoint = store.load(folder)
            except ValueError as exc:
                folders.append({"folder": folder, "error": str(exc)})
                continue
            try:
                state = imap.open(folder)
            except ImapError as exc:
                folders.append({"folder": folder, "error": exc.message})
                continue
            last = checkpoint.last_uid if checkpoint and checkpoint.uidvalidity == state.uidvalidity else 0
            uids = imap.uids_after(last) if (state.uidnext or last + 2) - 1 > last else []
            folders.append({
                "folder": folder, "uidvalidity": state.uidvalidity, "uidnext": state.uidnext,
                "checkpoint": checkpoint.to_dict() if checkpoint else None, "new": len(uids),
                "rebaseline": bool(checkpoint and checkpoint.uidvalidity != state.uidvalidity),
            })  # fmt: skip
    return {"mailbox": target.id, "address": target.address, "endpoint": target.endpoint(), "dry_run": True,
            "folders": folders}  # fmt: skip


def _dry_line(entry: dict) -> str:
    new = sum(f.get("new", 0) for f in entry["folders"])
    return f"{new} new message(s) above the checkpoints of {entry['address']} (dry run: nothing done)"
