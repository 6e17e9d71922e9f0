"""communications.outbox.flush: retry what is due, resolve what was interrupted, apply late bounces.

Cron-friendly: each send is locked while it is worked on and skipped when another process
holds it, so two flushes (or a flush and a send) never attempt one send at once. Order:
bounce notes the inbox pipeline could not apply yet; then every send still pending
(queued, deferred when due, attempting with its process gone, unknown for another look in
the sender's folders). Nothing that was accepted, refused or given up is attempted again.
"""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status

FLUSHABLE = ("queued", "deferred", "attempting", "unknown")
VERDICT = {"delivered": Status.OK, "deferred": Status.WARN, "unknown": Status.WARN, "queued": Status.WARN,
           "failed": Status.FAIL, "expired": Status.FAIL, "bounced": Status.FAIL, "error": Status.ERROR}  # fmt: skip


@capability("communications.outbox.flush", safety="mutating", approval="auto")
def outbox_flush(
    ctx: RunContext,
    send: Annotated[str | None, typer.Option("--send", metavar="SEND-ID", help="Only this send (snd-...).")] = None,
    ignore_backoff: Annotated[bool, typer.Option("--ignore-backoff", help="Attempt deferred sends now, before "
                              "their next_attempt_at (max attempts and time to live still apply).")] = False,
    resend_unknown: Annotated[bool, typer.Option("--resend-unknown", help="Send again the sends whose outcome is "
                              "unknown (not found in the sender's folders): accepts a possible duplicate.")] = False,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Attempt at most N sends this run.")] = 100,
) -> Result:  # fmt: skip
    """Retry the outbox's due sends with backoff, max attempts and time to live; resolve interrupted
    attempts (before DATA: retried; after: looked up in the sender's Sent folder, else unknown);
    apply bounce notes left pending. Exit 0 when nothing failed; 1 when a send failed for good."""
    from spine_comms.outbox.attempt import Attempter
    from spine_comms.outbox.bounces import apply_pending
    from spine_comms.outbox.settings import load_settings
    from spine_comms.outbox.store import OutboxStore

    settings = load_settings(ctx)
    store = OutboxStore(settings.state)
    result = Result(data={"outbox": str(store.root), "bounces_applied": [], "sends": []})
    result.data["temporaries_removed"] = store.sweep()  # a killed send or flush leaves them (kill -9)
    result.data["bounces_applied"] = apply_pending(settings.state, now=ctx.clock())
    attempter = Attempter(ctx, settings, store)
    pending = [r for r in store.records() if r["status"] in FLUSHABLE and (send is None or r["send_id"] == send)]
    if send and not pending:
        found = store.load(send)
        state = found["status"] if found else "not in the outbox"
        result.add(
            Check(
                id="outbox.flush.send",
                status=Status.OK if found else Status.WARN,
                detail=f"{send}: {state}; nothing to do",
                subject=send,
            )
        )
        return result
    acted = 0
    for candidate in pending:
        if acted >= limit:
            result.summary.append(f"limit of {limit} reached; the rest waits for the next flush")
            break
        send_id = candidate["send_id"]
        with store.locked(send_id) as held:
            if not held:
                result.data["sends"].append({"send_id": send_id, "status": candidate["status"], "busy": True})
                continue
            before = store.load(send_id)
            tries = len(before["attempts"])
            record = attempter.run(before, resend_unknown=resend_unknown, ignore_backoff=ignore_backoff)
        if len(record["attempts"]) == tries and record["status"] == candidate["status"] and not record.get("lookups"):
            continue  # not due yet: nothing happened, nothing to report
        acted += 1
        entry = {"send_id": send_id, "before": candidate["status"], "status": record["status"],
                 "attempts": len(record["attempts"]), "last_error": record.get("last_error"),
                 "next_attempt_at": record.get("next_attempt_at")}  # fmt: skip
        result.data["sends"].append(entry)
        detail = f"{candidate['status']} -> {record['status']}" + (
            f": {record['last_error']}" if record.get("last_error") else "")  # fmt: skip
        result.add(
            Check(
                id="outbox.flush.send",
                status=VERDICT.get(record["status"], Status.WARN),
                detail=detail,
                subject=send_id,
                expected="delivered",
                actual=record["status"],
            )
        )
        result.summary.append(f"{send_id}: {detail}")
    if not result.checks:
        waiting = sum(1 for r in pending if r["status"] == "deferred")
        result.add(
            Check(
                id="outbox.flush.send",
                status=Status.OK,
                detail=f"nothing due ({waiting} waiting for their retry time)",
                subject=str(store.root),
            )
        )
        result.summary.append(result.checks[-1].detail)
    return result
