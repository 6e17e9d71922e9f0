"""communications.outbox.status: every send, its state and its attempt history.

Read-only (no lock taken, no network). A send that failed for good (failed, bounced,
expired, error) within --since-hours is a fail; one whose outcome is unknown, that is
overdue for its retry (flush not running?), that was interrupted, or that got a bounce report
without its envelope id (outbox/bounces.py: maybe forged, not applied) is a warn.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status

OVERDUE = timedelta(minutes=30)


@capability("communications.outbox.status", safety="read-only", approval="auto")
def outbox_status(
    ctx: RunContext,
    send: Annotated[str | None, typer.Option("--send", metavar="SEND-ID", help="Only this send, with its full "
                    "history.")] = None,
    since_hours: Annotated[float, typer.Option("--since-hours", metavar="HOURS", min=0, help="Failures older than "
                           "this are listed but do not fail the run.")] = 24.0,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Show the N most recent sends.")] = 50,
) -> Result:  # fmt: skip
    """Every send in the outbox with its state (queued, delivered, deferred, failed, bounced, delayed,
    unknown, expired, error) and its attempts; fails on recent failed or bounced sends, warns on
    unknown or stuck ones and on bounce reports that lack the send's envelope id (maybe forged)."""
    from spine_comms.outbox.attempt import parse_stamp
    from spine_comms.outbox.settings import load_settings
    from spine_comms.outbox.store import OutboxStore

    settings = load_settings(ctx)
    store = OutboxStore(settings.state)
    now = ctx.clock()
    records = store.records()
    if send:
        records = [r for r in records if r["send_id"] == send]
        if not records:
            from spine_comms.core.errors import UsageError

            raise UsageError(f"--send {send}: no such send in {store.root}")
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    shown = records[-limit:]
    result = Result(data={"outbox": str(store.root), "counts": counts, "total": len(records),
                          "pending_bounce_notes": len(store.pending_dsns()),
                          "sends": [_entry(r, full=bool(send)) for r in reversed(shown)]})  # fmt: skip
    for record in records:
        check = _judge(record, now, since_hours, parse_stamp)
        if check:
            result.add(check)
    counted = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    result.add(
        Check(
            id="outbox.status.summary",
            status=Status.OK,
            detail=f"{len(records)} send(s): {counted}",
            subject=str(store.root),
        )
    )
    result.summary.append(f"outbox {store.root}: {counted}")
    for record in reversed(shown):
        line = f"{record['send_id']} {record['status']:<10} {len(record['attempts'])} attempt(s) "
        result.summary.append(line + f"{record['from']} -> {', '.join(record['recipients'])}: {record['subject']!r}")
        if record.get("last_error"):
            result.summary.append(f"    {record['last_error']}")
    return result


def _entry(record: dict, full: bool) -> dict:
    keep = ("send_id", "status", "idempotency_key", "message_id", "from", "to", "cc", "subject", "created_at",
            "updated_at", "next_attempt_at", "last_error", "bounced_recipients", "notice_item")  # fmt: skip
    entry = {k: record.get(k) for k in keep}
    entry["attempts"] = record["attempts"] if full else len(record["attempts"])
    entry["delays"] = len(record.get("delays", []))
    if full:
        entry.update(dsn=record.get("dsn", []), lookups=record.get("lookups", []), bcc=record.get("bcc", []))
    return entry


def _judge(record: dict, now, since_hours: float, parse_stamp) -> Check | None:
    state, send_id = record["status"], record["send_id"]
    updated = parse_stamp(record.get("updated_at")) or now
    recent = now - updated <= timedelta(hours=since_hours)
    if state in ("failed", "bounced", "expired", "error"):
        status = Status.FAIL if recent else Status.OK
        return Check(
            id="outbox.status.send",
            status=status,
            detail=f"{state}: {record.get('last_error')}",
            subject=send_id,
            expected="delivered",
            actual=state,
        )
    unverified = [d for d in record.get("dsn", []) if d.get("kind") == "unverified"]
    if unverified and recent:
        return Check(
            id="outbox.status.send",
            status=Status.WARN,
            detail=f"{state}, but {len(unverified)} message(s) reporting a bounce came without the envelope id "
            "this send's server took (forged, or an MTA that dropped it): not applied; read the DSN",
            subject=send_id,
            expected="no unverified bounce report",
            actual=[d.get("dsn_message_id") for d in unverified],
        )
    if state == "unknown":
        return Check(
            id="outbox.status.send",
            status=Status.WARN,
            detail=f"outcome unknown: {record.get('last_error')}",
            subject=send_id,
            expected="delivered",
            actual=state,
        )
    if state == "deferred":
        due = parse_stamp(record.get("next_attempt_at"))
        if due and now - due > OVERDUE:
            return Check(
                id="outbox.status.send",
                status=Status.WARN,
                detail=f"overdue since {record['next_attempt_at']}: is communications.outbox.flush scheduled?",
                subject=send_id,
                expected="delivered",
                actual=state,
            )
    if state in ("attempting", "queued") and now - updated > OVERDUE:
        return Check(
            id="outbox.status.send",
            status=Status.WARN,
            detail=f"{state} since {record.get('updated_at')}: interrupted? run communications.outbox.flush",
            subject=send_id,
            expected="delivered",
            actual=state,
        )
    if record.get("delays"):
        return Check(
            id="outbox.status.send",
            status=Status.OK,
            detail=f"{state}; {len(record['delays'])} delay report(s)",
            subject=send_id,
            expected="delivered",
            actual=state,
        )
    return None
