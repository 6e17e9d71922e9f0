"""communications.inbox.watch: the inbox loop in the foreground, for systemd, launchd or a terminal.

One thread per contract mailbox (or the one named by --mailbox), each running
inbox.watch_loop.MailboxWatch: catch up on everything new, then IMAP IDLE, and
every change through the same pipeline as `communications.inbox.poll --enqueue`.

SIGTERM and SIGINT ask every mailbox to stop: the message in hand is finished
(the pipeline writes nothing half), IDLE is ended, the session logged out, a last
heartbeat says "stopped", and the run exits 0 with a summary. A second signal
exits at once (130); even that loses nothing, since the checkpoint only ever
follows durably written items.

With the JetStream mailroom and `checkpoints: kv`, watches of one mailbox on several hosts share
it through a lease: one polls and renews it while idling, the others stand by and take over when
it stops renewing (watch_loop.py, docs/scale-out.md).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.service_notify import ServiceNotifier

MailboxOpt = Annotated[
    str | None,
    typer.Option(
        "--mailbox",
        help="Watch only this mailbox (an id or address of the inbox or stack contract, e.g. ops). "
        "Default: every mailbox in the inbox contract, one thread each.",
    ),
]
MaxRuntimeOpt = Annotated[
    float | None,
    typer.Option(
        "--max-runtime",
        min=0.1,
        help="Stop by itself after this many seconds, exactly as on SIGTERM (exit 0 with the summary). "
        "For tests and cron-less checks; a service runs without it.",
    ),
]
PollIntervalOpt = Annotated[
    float,
    typer.Option(
        "--poll-interval",
        min=0.5,
        max=3600,
        help="Seconds between polls when the server does not offer IDLE, and for a mailbox's folders "
        "other than the first (IDLE watches one folder per connection).",
    ),
]

TRANSCRIPT_KEEP = 5000  # log lines kept for the receipt's output.txt: the latest ones
_SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


@capability("communications.inbox.watch", safety="mutating", approval="auto")
def inbox_watch(
    ctx: RunContext,
    mailbox: MailboxOpt = None,
    max_runtime: MaxRuntimeOpt = None,
    poll_interval: PollIntervalOpt = 30.0,
) -> Result:
    """Watch the contract's mailboxes with IMAP IDLE until SIGTERM/SIGINT: catch up, then every new
    message through the poll pipeline into the mailroom; reconnect with backoff; a heartbeat file. With the
    JetStream mailroom's KV checkpoints, one watch per mailbox holds its lease (renewed while idling) and the
    others stand by to take over when it dies (docs/scale-out.md)."""
    from spine_comms.contracts.inbox import INBOX_CONTRACT, InboxContract
    from spine_comms.inbox.watch_loop import MailboxWatch

    contract = ctx.contracts.load(INBOX_CONTRACT, InboxContract)
    ids = [mailbox] if mailbox else [m.id for m in contract.mailboxes]

    stop = threading.Event()
    # Resolving targets (secrets, stack defaults) up front: a bad contract fails before any thread starts.
    watches = [MailboxWatch(ctx, contract, mailbox_id, stop, poll_interval=poll_interval) for mailbox_id in ids]
    stopper = _Stopper(ctx, stop)
    started = time.monotonic()
    threads = [
        threading.Thread(target=_guarded(ctx, w, stop), name=f"watch-{w.stats.mailbox}", daemon=True) for w in watches
    ]
    service = ServiceNotifier(ctx.env)  # systemd's Type=notify and WatchdogSec=, when run as a service
    with stopper.installed():
        names = ", ".join(w.stats.mailbox for w in watches)
        ctx.log(f"watching {names} (pid {os.getpid()}); SIGTERM or SIGINT stops cleanly")
        for thread in threads:
            thread.start()
        service.ready(f"watching {names}")
        deadline = started + max_runtime if max_runtime else None
        while any(t.is_alive() for t in threads):
            if deadline is not None and time.monotonic() >= deadline and not stop.is_set():
                stopper.reason = "max-runtime"
                stop.set()
            for thread in threads:
                thread.join(0.1)
            # The watchdog is fed only while every running mailbox loop beats as inbox.health expects.
            stale = contract.health.max_heartbeat_age_seconds
            beating = (w.heartbeat.age() < stale for w, t in zip(watches, threads, strict=True) if t.is_alive())
            service.keepalive(all(beating))
            # The run's transcript (output.txt) would otherwise grow by a line per message for weeks.
            if len(ctx.transcript) > TRANSCRIPT_KEEP * 2:
                del ctx.transcript[:-TRANSCRIPT_KEEP]
        service.stopping(f"stopped by {stopper.reason or 'the mailboxes ending'}")
    return _result(watches, stopper.reason, time.monotonic() - started, max_runtime)


def _guarded(ctx: RunContext, watch, stop: threading.Event):
    """A bug in one mailbox's loop is reported and ends that mailbox, never the others silently."""

    def run() -> None:
        try:
            watch.run()
        except Exception as exc:  # the thread would otherwise die with a traceback no receipt holds
            watch.stats.fatal = f"internal error: {exc.__class__.__name__}: {exc}"
            watch.stats.status = "crashed"
            ctx.log(f"{watch.stats.mailbox}: {watch.stats.fatal}", level="error")

    return run


class _Stopper:
    """SIGTERM/SIGINT set the stop event once; a second signal means now (KeyboardInterrupt, exit 130)."""

    def __init__(self, ctx: RunContext, stop: threading.Event) -> None:
        self.ctx, self.stop = ctx, stop
        self.reason: str | None = None

    def handle(self, signum, frame) -> None:
        name = _SIGNALS.get(signum, str(signum))
        if self.stop.is_set() and self.reason != "max-runtime":
            raise KeyboardInterrupt
        self.reason = name
        self.ctx.log(f"{name}: finishing the message in hand, then stopping")
        self.stop.set()

    def installed(self):
        from contextlib import contextmanager

        @contextmanager
        def scope():
            if threading.current_thread() is not threading.main_thread():
                yield  # signals are delivered to the main thread only; an embedding caller stops us itself
                return
            previous = {sig: signal.signal(sig, self.handle) for sig in _SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        return scope()


def _result(watches, reason: str | None, uptime: float, max_runtime: float | None) -> Result:
    result = Result()
    per = [w.stats.to_dict() for w in watches]
    processed = sum(s["processed"] for s in per)
    enqueued = sum(s["enqueued"] for s in per)
    reconnects = sum(s["reconnects"] for s in per)
    result.data = {
        "mailboxes": per,
        "processed": processed,
        "enqueued": enqueued,
        "reconnects": reconnects,
        "uptime_seconds": round(uptime, 1),
        "stopped_by": reason or "all mailboxes ended",
        "max_runtime": max_runtime,
    }
    for stats in (w.stats for w in watches):
        subject = f"{stats.mailbox}/{stats.folder}"
        if stats.fatal:
            status, detail = Status.ERROR, stats.fatal
        elif stats.connects == 0:
            status, detail = Status.ERROR, f"never connected: {stats.last_error or 'stopped before connecting'}"
        elif stats.idle is False:
            status, detail = Status.WARN, "the server offers no IDLE: polled at the poll interval instead"
        else:
            status, detail = Status.OK, "watched with IDLE"
        detail += f"; {stats.processed} processed, {stats.enqueued} enqueued, {stats.reconnects} reconnects"
        if stats.lease == "standing by":  # checkpoints: kv, another host's watch polls this mailbox
            detail += f"; standing by (the lease is held by {stats.lease_holder or 'another poller'})"
        elif stats.lease == "held":
            detail += f"; held the mailbox's lease ({stats.takeovers} takeover(s))"
        result.add(
            Check(
                id="inbox.watch.session",
                status=status,
                detail=detail,
                subject=subject,
                expected="connected and watching",
                actual=stats.status,
                evidence={
                    "drops": stats.drops[-20:],
                    "last_uid": stats.last_uid,
                    "kind": stats.last_error_kind if status is Status.ERROR else None,
                },
            )
        )
    result.summary.append(
        f"{processed} messages processed ({enqueued} enqueued) from {len(watches)} mailbox(es), "
        f"{reconnects} reconnects, up {uptime:.0f} s; stopped by {reason or 'the mailboxes ending'}"
    )
    return result
