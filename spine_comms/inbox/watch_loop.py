"""One mailbox watched for as long as the process runs: connect, catch up, IDLE, repeat.

The loop trusts UIDs, not notifications. After every wake-up (a change, a renew,
a heartbeat tick, a poll interval) it compares the folder's UIDNEXT with the one
it last caught up to, and runs the poll pipeline when they differ or when the
server said something changed. Catching up ends only when UIDNEXT stays put
across a whole pipeline run, so a message that lands while the pipeline is busy
(its EXISTS swallowed by another command's response) is never left waiting for
the next renew.

Any drop (reset, BYE, timeout, a server that goes away) closes the session and
reconnects after the contract's backoff; the checkpoint the pipeline keeps makes
a reconnect lose and duplicate nothing. A refused login on the very first
connection is a configuration error and ends this mailbox's watch at once; later
it is retried like any other drop (a server being restarted refuses logins too).

With the JetStream mailroom and `checkpoints: kv`, a mailbox has one lease for every host
(inbox/jetstream_checkpoints.py). The watch that holds it renews it while it idles, every third of
the lease time, from the loop itself (as the heartbeat: a loop stuck anywhere stops renewing and
is taken over). A watch that finds it held stands by: connected and idling, it polls nothing and
tries to take the lease every tenth of the lease time, so it takes over within the lease time
(plus that tenth) of the holder's last renewal. An unreachable cluster is a drop like an IMAP one.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spine_comms.core.atomic import write_atomic
from spine_comms.core.errors import CouldNotEvaluate
from spine_comms.inbox.jetstream_checkpoints import RENEW_FRACTION
from spine_comms.protocols.imap import ImapError

# Messages per pipeline call while catching up: between calls the heartbeat is written and
# SIGTERM is noticed, so a 10,000-message backlog does not make the watch look dead.
CATCH_UP_CHUNK = 200
LEASE_RETRY_FRACTION = 10  # a stand-by tries every lease_seconds / 10: takeover soon after the lease lapses


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MailboxStats:
    """What one mailbox's watch did; the capability's result is built from these."""

    mailbox: str
    folder: str
    processed: int = 0  # messages the pipeline committed (enqueued, parked, quarantined, dropped, duplicate)
    enqueued: int = 0
    connects: int = 0
    reconnects: int = 0
    idle: bool | None = None  # None until a connection has said whether it offers IDLE
    last_uid: int | None = None
    status: str = "starting"
    last_error: str | None = None
    last_error_kind: str | None = None  # core.outcomes.FailureKind of last_error
    fatal: str | None = None  # the watch of this mailbox gave up (refused login on the first connection)
    drops: list[str] = field(default_factory=list)
    lease: str | None = None  # None (no lease: files checkpoints) | "held" | "standing by"
    lease_holder: str | None = None  # who holds it while this watch stands by
    takeovers: int = 0  # times this watch took the lease after standing by

    def to_dict(self) -> dict:
        return {
            "mailbox": self.mailbox,
            "folder": self.folder,
            "processed": self.processed,
            "enqueued": self.enqueued,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "idle": self.idle,
            "last_uid": self.last_uid,
            "status": self.status,
            "last_error": self.last_error,
            "fatal": self.fatal,
            "drops": self.drops[-20:],
            "lease": self.lease,
            "lease_holder": self.lease_holder,
            "takeovers": self.takeovers,
        }


class Heartbeat:
    """`<state>/<mailbox>.heartbeat.json`, rewritten atomically: health reads `at` to know the loop lives.

    Written by the loop itself (never by a side thread), so a loop stuck anywhere
    stops refreshing it and health notices."""

    def __init__(self, path: Path, stats: MailboxStats, every: float, started_at: str) -> None:
        self.path, self.stats, self.every, self.started_at = path, stats, every, started_at
        self.next_due = 0.0

    def beat(self, status: str | None = None, *, force: bool = False) -> None:
        if status is not None and status != self.stats.status:
            self.stats.status = status
            force = True  # a change of state is written at once; the same state, every `every` seconds
        now = time.monotonic()
        if not force and now < self.next_due:
            return
        self.next_due = now + self.every
        doc = {
            "at": utc_now(),
            "pid": os.getpid(),
            "host": socket.gethostname(),  # health checks the pid only on this host
            "mailbox": self.stats.mailbox,
            "folder": self.stats.folder,
            "last_uid": self.stats.last_uid,
            "status": self.stats.status,
            "idle": self.stats.idle,
            "started_at": self.started_at,
            "processed": self.stats.processed,
            "reconnects": self.stats.reconnects,
            "last_error": self.stats.last_error,
            "lease": self.stats.lease,
            "lease_holder": self.stats.lease_holder,
        }
        with suppress(OSError):  # a full disk must not kill the watch; health sees the stale heartbeat
            write_atomic(self.path, json.dumps(doc, indent=2) + "\n")

    def age(self) -> float:
        """Seconds since the last beat (infinite before the first)."""
        return time.monotonic() - (self.next_due - self.every) if self.next_due else float("inf")

    def seconds_to_next(self) -> float:
        return max(self.next_due - time.monotonic(), 0.05)


class MailboxWatch:
    """The watch of one contract mailbox; `run()` is a thread's target and returns when `stop` is set."""

    def __init__(self, ctx, contract, mailbox_id: str, stop: threading.Event, *, poll_interval: float) -> None:
        from spine_comms.endpoints.mailbox import open_mailbox
        from spine_comms.inbox import pipeline
        from spine_comms.inbox.checkpoint import heartbeat_path

        self.ctx, self.contract, self.stop = ctx, contract, stop
        self.pipeline = pipeline
        self.target = open_mailbox(ctx, contract, mailbox_id)
        self.delivery = pipeline.make_target(ctx, contract, self.target.id)  # once: the bridge token is resolved here
        mailbox_id = self.target.id  # --mailbox may have named it by address
        self.folder = self.target.folders[0]
        self.poll_interval = poll_interval
        self.stats = MailboxStats(mailbox_id, self.folder)
        state_dir = contract.state_path(ctx.mailroom.state)
        self.heartbeat = Heartbeat(
            heartbeat_path(state_dir, mailbox_id), self.stats, contract.watch.heartbeat_seconds, utc_now()
        )
        self.caught_up_uidnext: int | None = None
        self.settled = False  # this connection reached IDLE (or its poll wait): a drop now is a fresh start
        # checkpoints: kv: the mailbox's lease (jetstream_checkpoints.MailboxLease), held across IDLE
        self.lease = getattr(getattr(self.delivery, "checkpoint_store", None), "lease", None)

    # The outer loop: connect, serve, back off ---------------------------------------------------

    def run(self) -> None:
        backoff = list(self.contract.watch.reconnect_backoff_seconds) or [5.0]
        failures = attempts = 0
        while not self.stop.is_set():
            attempts += 1
            self.settled = False  # set by _serve once this connection is caught up and waiting (IDLE)
            self.heartbeat.beat("connecting", force=True)
            try:
                self._serve()
                failures = 0
            except ImapError as exc:
                failures = 0 if self.settled else failures  # a healthy connection ended: the backoff starts over
                self.stats.last_error = f"{exc.stage}: {exc.message}"
                self.stats.last_error_kind = str(exc.failure_kind)
                # A refused login or a missing folder on the very first connection is the contract's fault;
                # later, the same errors come from a server being restarted or migrated: retried.
                if exc.stage in ("auth", "select") and attempts == 1:
                    self.stats.fatal = self.stats.last_error
                    self.ctx.log(f"{self.stats.mailbox}: {self.stats.last_error}; not retrying", level="error")
                    break
                failures += 1
            except OSError as exc:  # a socket error outside the IMAP layer's wrapping
                self.stats.last_error = f"connection: {exc}"
                self.stats.last_error_kind = "timeout" if isinstance(exc, TimeoutError) else "unreachable"
                failures = (0 if self.settled else failures) + 1
            except CouldNotEvaluate as exc:  # the mailroom's cluster (lease, KV checkpoints) did not answer
                self.stats.last_error = f"mailroom: {exc.message}"
                self.stats.last_error_kind = "unreachable"
                failures = (0 if self.settled else failures) + 1
            if self.stop.is_set():
                break
            self.stats.drops.append(f"{utc_now()} {self.stats.last_error}")
            delay = backoff[min(failures - 1, len(backoff) - 1)] if failures else backoff[0]
            self.ctx.log(
                f"{self.stats.mailbox}: connection lost ({self.stats.last_error}); reconnecting in {delay:g} s",
                level="warn",
            )
            self.heartbeat.beat("reconnecting", force=True)
            self.stop.wait(delay)
        self._release_lease()
        self.heartbeat.beat("stopped", force=True)

    def _serve(self) -> None:
        from spine_comms.protocols.imap import session
        from spine_comms.protocols.imap_idle import IdleChannel

        with session(self.target.imap) as imap:
            if self.stats.connects:
                self.stats.reconnects += 1
                self.ctx.log(f"{self.stats.mailbox}: reconnected")
            self.stats.connects += 1
            self.caught_up_uidnext = None  # a new connection proves nothing about what arrived meanwhile
            imap.open(self.folder)
            channel = IdleChannel(
                imap.client, renew_seconds=self.contract.watch.idle_renew_seconds, poll_interval=self.poll_interval
            )
            if self.stats.idle is None:
                how = "IDLE" if channel.supported else f"polling every {self.poll_interval:g} s (no IDLE offered)"
                self.ctx.log(f"{self.stats.mailbox}: watching {self.folder} with {how}")
            self.stats.idle = channel.supported
            reason = "connect"
            while not self.stop.is_set():
                holding, took_over = self._tend_lease()
                if holding:
                    others = len(self.target.folders) > 1  # folders not idled on are polled at every wake-up
                    woken = reason in ("connect", "changes", "renew", "interval")
                    self._catch_up(imap, force=took_over or others or woken)
                if self.stop.is_set():
                    return
                self.heartbeat.beat("idle" if channel.supported else "polling")
                self.settled = True  # connected, caught up, IDLE entered: the next drop starts the backoff over
                wake = channel.wait(self._wait_budget(), self.stop)
                reason = wake.reason
                if reason == "stop":
                    return

    def _wait_budget(self) -> float:
        # Wake for the heartbeat (each wake-up is also a DONE the server must answer: a liveness
        # probe); with more folders than the one idled on, poll the others at the poll interval.
        budget = self.heartbeat.seconds_to_next()
        if len(self.target.folders) > 1:
            budget = min(budget, self.poll_interval)
        if self.lease is not None:
            if self.lease.revision is None:  # standing by
                due = self.lease.seconds / LEASE_RETRY_FRACTION
            else:
                due = self.lease.renewed_at + self.lease.seconds / RENEW_FRACTION - time.monotonic()
            budget = min(budget, max(due, 0.05))
        return budget

    # The mailbox's lease (checkpoints: kv) -------------------------------------------------------

    def _tend_lease(self) -> tuple[bool, bool]:
        """(this watch may poll, it has just taken the lease over). Renews a held lease when due, tries to
        take a free one; the pipeline renews it too at every folder and batch. An unreachable cluster
        raises (CouldNotEvaluate): a drop, retried with the backoff."""
        from spine_comms.inbox.jetstream_checkpoints import LeaseHeld, LeaseLost

        lease = self.lease
        if lease is None:
            return True, False
        name = self.stats.mailbox
        try:
            if lease.revision is None:
                lease.acquire()
            else:
                lease.keep()
        except LeaseHeld as exc:
            holder = str(exc.record.get("holder", "?"))
            if self.stats.lease != "standing by" or self.stats.lease_holder != holder:
                self.ctx.log(f"{name}: standing by; the lease is held by {holder}")
            self.stats.lease, self.stats.lease_holder = "standing by", holder
            return False, False
        except LeaseLost as exc:
            self.ctx.log(f"{name}: {exc}; standing by", level="warn")
            self.stats.lease, self.stats.lease_holder = "standing by", None
            self.caught_up_uidnext = None  # whoever polled meanwhile: look again once the lease is back
            return False, False
        took_over = self.stats.lease == "standing by"
        if self.stats.lease != "held":
            self.ctx.log(f"{name}: {'took the lease over' if took_over else 'holds the lease'} as {lease.holder}")
            self.stats.takeovers += took_over
        self.stats.lease, self.stats.lease_holder = "held", lease.holder
        return True, took_over

    def _release_lease(self) -> None:
        """A clean stop hands the mailbox over at once (a stand-by takes it at its next try)."""
        if self.lease is None or self.lease.revision is None:
            return
        try:
            self.lease.release()
            self.ctx.log(f"{self.stats.mailbox}: lease released")
        except CouldNotEvaluate as exc:  # it lapses by itself after the lease time
            self.ctx.log(f"{self.stats.mailbox}: could not release the lease ({exc.message})", level="warn")

    # Catching up ---------------------------------------------------------------------------------

    def _catch_up(self, imap, *, force: bool) -> None:
        """Run the pipeline until the idled folder's UIDNEXT holds still across a run."""
        state = imap.open(self.folder)
        if not force and state.uidnext is not None and state.uidnext == self.caught_up_uidnext:
            return
        while not self.stop.is_set():
            before = state.uidnext
            self.heartbeat.beat("catching-up")
            more, settled = self._process_chunk(imap)
            state = imap.open(self.folder)  # back on the idled folder, read-only, whatever the pipeline selected
            if not settled:
                return  # another poller holds the lock: the next wake-up tries again
            if not more and (state.uidnext is None or state.uidnext == before):
                self.caught_up_uidnext = state.uidnext
                return

    def _process_chunk(self, imap) -> tuple[bool, bool]:
        """One pipeline call of at most CATCH_UP_CHUNK messages: (more to do, the run counted)."""
        from spine_comms.protocols.imap import ImapError

        outcome = self.pipeline.process_new(
            self.ctx, self.contract, self.target, imap, limit=CATCH_UP_CHUNK, stop=self.stop, target=self.delivery
        )
        if outcome.locked:
            if self.stats.last_error != outcome.locked:
                self.ctx.log(f"{self.stats.mailbox}: {outcome.locked}; retrying at the next wake-up", level="warn")
            self.stats.last_error = outcome.locked
            return False, False
        committed = sum(f.committed() for f in outcome.folders)
        self._log_messages(outcome)
        self.stats.processed += committed
        self.stats.enqueued += outcome.total("enqueued")
        for folder in outcome.folders:
            if folder.folder == self.folder and folder.checkpoint_after:
                self.stats.last_uid = folder.checkpoint_after.get("last_uid")
        if outcome.error:
            # The connection (or the server) failed under the pipeline: reconnect like any other drop. A full
            # disk is retried the same way (it may clear), said as what it is; health sees the watch reconnecting.
            error = outcome.error
            if error.get("disk_full"):
                self.ctx.log(f"{self.stats.mailbox}: the disk is full: {error.get('error')}; retrying", level="error")
            raise ImapError(str(error.get("stage") or "poll"), str(error.get("error") or error))
        self.stats.last_error = None
        # More only when this run made progress: a message that fails every time must not spin the loop.
        more = committed > 0 and any(f.remaining > 0 for f in outcome.folders)
        return more, True

    def _log_messages(self, outcome) -> None:
        """One line per message committed, on stderr and in output.txt."""
        name = self.stats.mailbox
        for folder in outcome.folders:
            for entry in folder.enqueued:
                self.ctx.log(f"{name}/{folder.folder}: UID {entry['uid']} enqueued as {Path(entry['path']).name}")
            for entry in folder.parked:
                self.ctx.log(f"{name}/{folder.folder}: UID {entry['uid']} quarantined: {_reasons(entry)}", level="warn")
            for entry in folder.dropped:
                self.ctx.log(f"{name}/{folder.folder}: UID {entry['uid']} dropped: {_reasons(entry)}", level="warn")
            for entry in folder.duplicates:
                self.ctx.log(f"{name}/{folder.folder}: UID {entry['uid']} already delivered ({entry.get('how')})")
            for entry in folder.errors:
                self.ctx.log(f"{name}/{folder.folder}: {entry.get('stage')}: {entry.get('error')}", level="warn")


def _reasons(entry: dict) -> str:
    reasons = entry.get("reasons") or []
    return "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
