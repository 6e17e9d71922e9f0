"""The inbox pipeline: new messages of a mailbox into the mailroom, each exactly once.

For each folder of the mailbox, under the mailbox's poll lock:

    SELECT (CONDSTORE where offered) -> compare with the checkpoint (UIDVALIDITY, last UID)
    -> UID SEARCH last+1:* -> FETCH RFC822.SIZE INTERNALDATE (no body yet)
    -> per batch: FETCH BODY.PEEK[] of what fits policy.max_message_bytes (a capped header of
       the rest; the next batch's FETCH runs on a second thread while this one is processed:
       fetch.py) -> intake (dedup, normalize, decide, stage; see intake.py) -> commit (commit.py)
    -> the post-commit action on the server (none, \\Seen, move) -> the checkpoint advanced

The server is changed only after the batch's items and markers are on disk; the
checkpoint only after that. A crash anywhere leaves the checkpoint behind, never
ahead, and what is fetched again is recognised by its delivery marker or its run
id in the mailroom. A poll with nothing new is SELECT plus one checkpoint write:
UIDNEXT says there is nothing above the checkpoint, so nothing is searched.

Public entry points (the poll capability and the watch loop use these):

    open_mailbox(ctx, contract, mailbox_id) -> MailboxTarget
    process_new(ctx, contract, mailbox, session, *, limit=None, stop=None, lock_wait=0.0,
                baseline=False) -> PollOutcome
"""

from __future__ import annotations

import threading
from pathlib import Path

from spine_comms.contracts.inbox import InboxContract
from spine_comms.core.context import RunContext
from spine_comms.core.errors import DISK_FULL_ERRNOS as DISK_FULL
from spine_comms.core.errors import CouldNotEvaluate
from spine_comms.endpoints.mailbox import MailboxTarget, open_mailbox
from spine_comms.inbox.checkpoint import CheckpointStore, FolderCheckpoint, LockHeld, poll_lock
from spine_comms.inbox.fetch import Fetched, Prefetch, batches
from spine_comms.inbox.intake import Intake
from spine_comms.inbox.normalize import utc_stamp
from spine_comms.inbox.outcome import FolderOutcome, PollOutcome

__all__ = ["MailboxTarget", "PollOutcome", "inbox_state_dir", "make_target", "open_mailbox", "process_new"]


def inbox_state_dir(ctx: RunContext, contract: InboxContract) -> Path:
    return contract.state_path(ctx.mailroom.state)


def make_target(ctx: RunContext, contract: InboxContract, mailbox_id: str):
    """The contract's mailroom target: the filesystem lanes, the bridge (token resolved, redacted), or JetStream."""
    from spine_comms.inbox.delivery import BridgeTarget, FilesystemTarget

    if contract.mailroom.via == "filesystem":
        return FilesystemTarget(ctx.mailroom.inbox)
    if contract.mailroom.via == "jetstream":  # docs/scale-out.md
        from spine_comms.inbox.jetstream_target import make_jetstream_target

        return make_jetstream_target(ctx, contract.mailroom.jetstream, mailbox_id, inbox_state_dir(ctx, contract))
    from spine_comms.mailroom.bridge import bridge_client

    client, _token = bridge_client(ctx, contract.mailroom.bridge)
    return BridgeTarget(client, inbox_state_dir(ctx, contract) / mailbox_id / "parked")


def process_new(
    ctx: RunContext,
    contract: InboxContract,
    mailbox: MailboxTarget,
    session,
    *,
    limit: int | None = None,
    stop: threading.Event | None = None,
    lock_wait: float = 0.0,
    baseline: bool = False,
    target=None,
) -> PollOutcome:
    """Every message above the checkpoints of `mailbox`'s folders, through the pipeline.

    `session` is an open spine_comms.protocols.imap.ImapSession logged in to the mailbox.
    `limit` caps the messages considered in this call (None: all); `stop`, when set, ends the
    run after the message in hand, cleanly. Another process polling the same mailbox: the
    outcome says `locked` and nothing is done (after waiting up to `lock_wait` seconds).
    `baseline`: a folder without a checkpoint starts after its current last message.
    Never raises for a message; IMAP, disk and bridge failures end up in `outcome.error`.
    """
    from spine_comms.protocols.imap import ImapError

    state_dir = inbox_state_dir(ctx, contract)
    target = target or make_target(ctx, contract, mailbox.id)
    outcome = PollOutcome(mailbox.id, mailbox.address, target.via)
    try:
        with poll_lock(state_dir, mailbox.id, wait=lock_wait), _Run(ctx, contract, mailbox, session, state_dir,
                                                                     target, stop, baseline) as run:  # fmt: skip
            budget = limit
            for folder in mailbox.folders:
                if stop is not None and stop.is_set():
                    outcome.stopped = True
                    break
                result = FolderOutcome(folder)
                outcome.folders.append(result)
                try:
                    budget = run.folder(result, budget)
                except ImapError as exc:
                    if exc.stage == "select":  # this folder is missing or refused; the others may be fine
                        result.errors.append({"stage": "select", "error": exc.message})
                        continue
                    outcome.error = {"stage": f"imap {exc.stage}", "folder": folder, "error": exc.message}
                    break
                except _Halt as halt:
                    outcome.error = {"stage": halt.stage, "folder": folder, "error": halt.message}
                    if halt.disk_full:
                        outcome.error["disk_full"] = True
                    break
            outcome.stopped = outcome.stopped or run.stopped
    except LockHeld as exc:
        outcome.locked = str(exc)
    except OSError as exc:
        outcome.error = {"stage": "state", "error": _os_text(exc, str(state_dir))}
        if exc.errno in DISK_FULL:
            outcome.error["disk_full"] = True
    return outcome


class _Halt(Exception):
    """The batch cannot go on (disk full, bridge unreachable): stop, keep the checkpoint behind it."""

    def __init__(self, stage: str, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.disk_full = disk_full


def _os_text(exc: OSError, where: str = "") -> str:
    """What failed and where: the file the system named, else `where` (a syncfs names no file)."""
    path = exc.filename or where
    return f"{exc.strerror or exc}" + (f" ({path})" if path else "")


class _Run:
    def __init__(self, ctx, contract, mailbox, session, state_dir, target, stop, baseline) -> None:
        self.ctx = ctx
        self.contract = contract
        self.mailbox = mailbox
        self.session = session
        # A JetStream target with checkpoints: kv brings its own store (compare-and-set, the mailbox lease).
        self.checkpoints = getattr(target, "checkpoint_store", None) or CheckpointStore(state_dir, mailbox.id)
        self.intake = Intake(contract, mailbox, state_dir, target, ctx.clock)
        self.stop = stop
        self.baseline = baseline
        self.stopped = False
        # Where the batch writes, for an error the system reports without a file name (syncfs, a full disk).
        inbox = getattr(getattr(target, "mailroom", None), "inbox", None)
        self.where = f"{state_dir}" + (f" or {inbox}" if inbox is not None else "")

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc) -> None:
        self.intake.close()

    def _stopping(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            self.stopped = True
        return self.stopped

    def folder(self, result: FolderOutcome, budget: int | None) -> int | None:
        folder = result.folder
        try:
            checkpoint = self.checkpoints.load(folder)
        except ValueError as exc:
            result.errors.append({"stage": "checkpoint", "error": str(exc)})
            return budget
        result.checkpoint_before = checkpoint.to_dict() if checkpoint else None
        action = self.mailbox.after_enqueue
        state = self.session.open(folder, writable=action.action != "none")
        result.uidvalidity, result.uidnext, result.highestmodseq = state.uidvalidity, state.uidnext, state.highestmodseq
        now = utc_stamp(self.ctx.clock())
        existed = checkpoint is not None
        if checkpoint is None:
            start = (state.uidnext or 1) - 1 if self.baseline else 0
            checkpoint = FolderCheckpoint(folder, state.uidvalidity, start)
            if self.baseline:
                result.rebaselined = f"no checkpoint; --baseline starts after UID {start}"
        elif checkpoint.uidvalidity != state.uidvalidity:
            result.rebaselined = (
                f"UIDVALIDITY changed from {checkpoint.uidvalidity} to {state.uidvalidity}: every message is "
                "read again and matched against the delivery index (none is enqueued twice)"
            )
            checkpoint = FolderCheckpoint(folder, state.uidvalidity, 0, None, checkpoint.last_poll_at, now)
            self._save(checkpoint)
        loaded = checkpoint.to_dict() if existed else {}  # what is on disk
        if state.uidnext is not None and state.uidnext - 1 <= checkpoint.last_uid:
            uids: list[int] = []  # UIDNEXT says nothing is above the checkpoint: no SEARCH
        else:
            uids = self.session.uids_after(checkpoint.last_uid)
        result.new = len(uids)
        if budget is not None:
            uids, rest = uids[: max(budget, 0)], uids[max(budget, 0) :]
            result.remaining = len(rest)
            budget -= len(uids)
        metas = self.session.fetch_meta(uids) if uids else {}
        cap = self.contract.policy.max_message_bytes
        planned = batches(uids, metas, cap)
        self.intake.expect(len(uids))
        ahead = Prefetch(self.session, metas, cap)
        if planned:
            ahead.start(planned[0])
        try:
            with self.ctx.progress(f"{self.mailbox.id}/{folder}", total=len(uids)) as self.advance:
                finished = self._batches(result, checkpoint, state, uids, planned, metas, ahead)
        finally:
            ahead.idle()  # a batch fetched for nothing (stopped, halted) must not hold the connection
        if finished and uids:
            # Every UID considered is committed or was expunged before its FETCH: pass them all.
            checkpoint.last_uid = max(checkpoint.last_uid, uids[-1])
        checkpoint.highestmodseq = state.highestmodseq
        only_time = checkpoint.to_dict() | {"last_poll_at": None} == loaded | {"last_poll_at": None}
        if not result.errors and not self.stopped:
            checkpoint.last_poll_at = now
        # Nothing new: only last_poll_at moves (health reads it), and a timestamp needs no fsync.
        self._save(checkpoint, durable=not only_time)
        result.checkpoint_after = checkpoint.to_dict()
        return budget

    def _batches(self, result, checkpoint, state, uids, planned, metas, ahead: Prefetch) -> bool:
        """Every batch in turn; False when stopped before the last one. A _Halt propagates."""
        for number, batch in enumerate(planned):
            if self._stopping():
                result.remaining += len([u for u in uids if u > checkpoint.last_uid])
                return False
            fetched = ahead.take()
            if number + 1 < len(planned):
                ahead.start(planned[number + 1])  # fetched while this batch is parsed and written
            last, halt = self._batch(result, state.uidvalidity, batch, metas, fetched, ahead)
            self.advance(len(batch))
            if last is not None:
                checkpoint.last_uid = max(checkpoint.last_uid, last)
            checkpoint.highestmodseq = state.highestmodseq
            if halt is not None:
                result.remaining += len([u for u in uids if u > checkpoint.last_uid])
                self._save(checkpoint, quiet=True)
                result.checkpoint_after = checkpoint.to_dict()
                raise halt
            self._save(checkpoint)
            if self.stopped:
                result.remaining += len([u for u in uids if u > checkpoint.last_uid])
                return False
        return True

    def _batch(self, result: FolderOutcome, uidvalidity: int, batch: list[int], metas: dict, fetched, ahead):
        """(the highest UID up to which everything is committed, a _Halt or None)."""
        bodies, headers = fetched
        staged = self.intake.begin()
        considered: list[int] = []  # in UID order: staged, or expunged since the SEARCH
        halt = None
        try:
            for uid in batch:
                if self._stopping():
                    break
                self._keep()
                meta = metas[uid]
                raw, header = bodies.get(uid), headers.get(uid)
                if raw is None and header is None:
                    result.vanished.append(uid)  # expunged since the SEARCH: it cannot come back under this UID
                    considered.append(uid)
                    continue
                try:
                    self.intake.stage(staged, result.folder, uidvalidity, Fetched(uid, meta.size, meta.internaldate,
                                                                                  raw, header))  # fmt: skip
                except OSError as exc:
                    done = considered[-1] if considered else None
                    halt = _Halt("store", f"UID {uid}: {_os_text(exc, self.where)}; nothing after UID {done or '-'} "
                                 "was committed", disk_full=exc.errno in DISK_FULL)  # fmt: skip
                    result.errors.append({"uid": uid, "stage": halt.stage, "error": halt.message})
                    break
                considered.append(uid)
            placed: list = []  # what the commit put in the mailroom, even when it stops halfway
            try:
                taken = self.intake.commit(staged, placed=placed,
                                           bounce=lambda found: self._note_bounces(result, found))  # fmt: skip
            except OSError as exc:
                self._record(result, placed)
                failed = _Halt("store", f"{_os_text(exc, self.where)}; {_unmarked(placed)}",
                               disk_full=exc.errno in DISK_FULL)  # fmt: skip
                return None, self._failed(result, failed)
            except CouldNotEvaluate as exc:  # the bridge: unreachable, refused token
                self._record(result, placed)
                return None, self._failed(result, _Halt("mailroom", f"{exc.message}; {_unmarked(placed)}"))
        finally:
            staged.close()
        self._record(result, taken)
        if taken:
            ahead.idle()  # the connection is this thread's again
            self._post_commit(result, [uid for uid, _ in taken])
        return (considered[-1] if considered else None), halt

    @staticmethod
    def _record(result: FolderOutcome, taken: list) -> None:
        for _uid, item in taken:
            {"enqueued": result.enqueued, "parked": result.parked, "dropped": result.dropped,
             "duplicate": result.duplicates}[item.kind].append(item.record)  # fmt: skip
            if item.secret:
                result.secret_matches.append(item.secret)

    def _note_bounces(self, result: FolderOutcome, bounces: list[dict]) -> None:
        """DSNs whose items are placed, to the outbox, which matches them to what it sent; called by the
        commit just before their markers are written. Never stops the intake."""
        from datetime import UTC

        from spine_comms.outbox.bounces import note_bounce

        for normalized in bounces:
            try:
                matched = note_bounce(self.ctx.mailroom.state, normalized, now=self.ctx.clock().astimezone(UTC))
            except Exception as exc:  # the outbox's trouble; the message itself is safely delivered
                result.bounces["errors"] += 1
                self.ctx.log(f"{result.folder}: bounce {normalized.get('message_id')} not noted by the outbox: "
                             f"{type(exc).__name__}: {exc}")  # fmt: skip
                continue
            result.bounces["noted"] += 1
            result.bounces["matched"] += matched is not None

    @staticmethod
    def _failed(result: FolderOutcome, halt: _Halt) -> _Halt:
        result.errors.append({"stage": halt.stage, "error": halt.message})
        return halt

    def _post_commit(self, result: FolderOutcome, uids: list[int]) -> None:
        """Only now, with the items and markers on disk, may the server be changed."""
        after = self.mailbox.after_enqueue
        if after.action == "none":
            return
        if after.action == "move" and after.folder == result.folder:
            result.post_commit = {"action": "move", "uids": 0, "method": f"skipped: {after.folder} is the source"}
            return
        method = "store +flags \\Seen"
        if after.action == "seen":
            self.session.add_seen(uids)
        else:
            method = self.session.move(uids, after.folder)
        done = (result.post_commit or {}).get("uids", 0) + len(uids)
        result.post_commit = {"action": after.action, "folder": after.folder, "uids": done, "method": method}

    def _keep(self) -> None:
        """Renew the mailbox's lease (checkpoints: kv) once a third of it has passed: a batch may take
        longer than the lease, and a lapsed lease lets another poller take the mailbox mid-batch."""
        try:
            self.checkpoints.keep()
        except OSError as exc:  # LeaseLost: stop before committing anything more
            raise _Halt("checkpoint", f"cannot keep the mailbox: {_os_text(exc)}") from None

    def _save(self, checkpoint: FolderCheckpoint, *, quiet: bool = False, durable: bool = True) -> None:
        try:
            self.checkpoints.save(checkpoint, durable=durable)
        except OSError as exc:
            if not quiet:  # behind is safe: the next run fetches again and finds the markers
                raise _Halt(
                    "checkpoint", f"cannot write the checkpoint: {_os_text(exc)}", disk_full=exc.errno in DISK_FULL
                ) from None


def _unmarked(placed: list) -> str:
    """What a commit stopped halfway leaves: items the watcher will see, whose messages are not yet marked."""
    if not placed:
        return "nothing of this batch was committed"
    return (f"{len(placed)} item(s) of this batch are in the mailroom (counted above) without their delivery "
            "markers: the next run finds and marks them; the rest of the batch was not committed")  # fmt: skip
