"""Bounces that arrive as mail: DSNs the inbox pipeline classified, matched to the send they report.

`note_bounce` is what the pipeline calls for every committed message it classified as a
bounce. It first writes the note durably (dsn-pending/), then applies it under the send's
lock and removes it; a note left behind (lock busy, process killed) is applied by the next
`communications.outbox.flush`.

Correlation: the envelope id the DSN quotes (Original-Envelope-Id, RFC 3464 2.2.1), which
is the random ENVID the send gave in MAIL FROM (RFC 3461) and which nobody who only saw the
message knows. Without it (none, or one that is not ours): the original Message-ID the DSN
quotes; only when it quotes none, the failed recipient and time (the latest send to that
address accepted within MATCH_WINDOW and before the DSN's Date). A DSN quoting a Message-ID
that is not ours is not ours, whatever its recipient.

Anyone can mail a message that looks like a DSN and quotes our Message-ID (a recipient has
it). So a failed DSN that does not quote the envelope id, about a send whose MTA took our
ENVID (and so must quote it, RFC 3461 4.4), is recorded as `unverified` and changes nothing else:
outbox.status warns about it. A verified failed DSN, or one about a send made without ENVID
(a server without DSN), marks the send bounced (permanent), logs it and enqueues the bounce
notice; a delayed DSN only records the delay. Applying the same DSN twice changes nothing
(keyed by the DSN's own Message-ID).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from pathlib import Path

from spine_comms.outbox.store import BOUNCED, DELIVERED, OutboxStore, normalize_message_id, send_id_of_envelope_id

MATCH_WINDOW = timedelta(days=7)
UNVERIFIED = "unverified"  # a failed DSN that lacks the envelope id its send's MTA took: maybe forged
LOCK_WAIT = 5.0


def note_bounce(state_root: Path, normalized: dict, *, now: datetime) -> str | None:
    """The send id the DSN in `normalized` (parse_message(...).to_dict()) was matched to, or None.
    `state_root` is the mailroom state directory (ctx.mailroom.state). Never raises on odd input."""
    classification = (normalized or {}).get("classification") or {}
    if classification.get("kind") != "bounce":
        return None
    store = OutboxStore(state_root)
    if not store.sends.is_dir():
        return None  # nothing was ever sent from this mailroom
    note = _note(normalized, classification.get("details") or {}, now)
    path = store.put_pending_dsn(note)
    return apply_note(store, path, now=now)


def _note(normalized: dict, details: dict, now: datetime) -> dict:
    recipients = [r for r in details.get("recipients") or [] if isinstance(r, dict)]
    if not recipients and (details.get("recipient") or details.get("status")):
        recipients = [{"recipient": details.get("recipient"), "action": details.get("action"),
                       "status": details.get("status")}]  # fmt: skip
    return {
        "dsn_message_id": normalized.get("message_id"),
        "original_message_id": details.get("original_message_id"),
        "recipients": recipients[:50],
        "reporting_mta": details.get("reporting_mta"),
        "original_envelope_id": details.get("original_envelope_id"),
        "heuristic": bool(details.get("heuristic")),
        "dsn_date": normalized.get("date_utc"),
        "noted_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "text": (normalized.get("text") or "")[:4000],
    }


def apply_pending(state_root: Path, *, now: datetime) -> list[str]:
    """Apply the notes a busy lock or a crash left behind; the send ids matched."""
    store = OutboxStore(state_root)
    matched = []
    for path in store.pending_dsns():
        send_id = apply_note(store, path, now=now)
        if send_id:
            matched.append(send_id)
    return matched


def apply_note(store: OutboxStore, path: Path, *, now: datetime) -> str | None:
    try:
        note = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        path.unlink(missing_ok=True)
        return None
    send_id = correlate(store, note, now)
    if send_id is None:
        path.unlink(missing_ok=True)  # not one of ours (another client's mail, or long forgotten)
        return None
    with store.locked(send_id, wait=LOCK_WAIT) as held:
        if not held:
            return send_id  # left pending; the next flush applies it
        record = store.load(send_id)
        if record is not None:
            _apply(store, record, note, now)
        path.unlink(missing_ok=True)
    return send_id


def correlate(store: OutboxStore, note: dict, now: datetime) -> str | None:
    quoted = str(note.get("original_envelope_id") or "").strip().lower()
    named = send_id_of_envelope_id(quoted)
    record = store.load(named) if named else None
    if record and record.get("envelope_id") and hmac.compare_digest(str(record["envelope_id"]), quoted):
        note["correlated_by"], note["verified"] = "envelope_id", True
        return record["send_id"]
    # None, or not one of ours: an id an MTA assigned itself (RFC 3464 allows it) for a send made without
    # ENVID, or a guess. The other ways below decide, and a send whose MTA took our id does not take this.
    return _correlate_without_envelope_id(store, note, now)


def _correlate_without_envelope_id(store: OutboxStore, note: dict, now: datetime) -> str | None:
    by_id = store.by_message_id(note.get("original_message_id"))
    if by_id and store.record_path(by_id).exists():
        note["correlated_by"] = "message_id"
        return by_id
    if note.get("original_message_id"):
        return None  # it names the message it reports, and that is not one of ours: no guessing
    # The DSN cannot report a message accepted after it was written (its Date, else when we saw it).
    latest = min(now, _parse(note.get("dsn_date") or "") or now) + timedelta(minutes=5)
    failed = {(r.get("recipient") or "").strip().lower() for r in note.get("recipients", [])} - {""}
    if not failed:
        return None
    best, best_at = None, ""
    for record in store.records():
        if not failed & {a.lower() for a in record.get("recipients", [])}:
            continue
        accepted = [a.get("finished_at") or "" for a in record.get("attempts", []) if a.get("outcome") == DELIVERED]
        if not accepted:
            continue
        at = max(accepted)
        when = _parse(at)
        if when and now - MATCH_WINDOW <= when <= latest and at > best_at:
            best, best_at = record["send_id"], at
    if best:
        note["correlated_by"] = "recipient_time"
    return best


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def _dsn_key(note: dict) -> str:
    """What makes two notes one DSN: its Message-ID, else a hash of what it says (never when it was noted)."""
    message_id = normalize_message_id(note.get("dsn_message_id"))
    if message_id:
        return message_id
    said = {k: v for k, v in note.items() if k != "noted_at"}
    return "sha256:" + hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode()).hexdigest()


def _apply(store: OutboxStore, record: dict, note: dict, now: datetime) -> None:
    from spine_comms.outbox.delivery_log import append_events
    from spine_comms.outbox.notice import enqueue_notice

    dsn_id = _dsn_key(note)
    if dsn_id in {b.get("dsn_key") or normalize_message_id(b.get("dsn_message_id")) for b in record.get("dsn", [])}:
        return  # the same DSN noted again (a rerun after a kill): nothing more to do
    entries = note.get("recipients") or [{}]
    failed = [r for r in entries if (r.get("action") == "failed" or str(r.get("status") or "").startswith("5"))]
    delayed = [r for r in entries if r.get("action") == "delayed"]
    kind = "failed" if failed else ("delayed" if delayed else "report")
    if not note.get("verified"):
        # An MTA that took our ENVID must quote it in a DSN about the send: lacking it, this may be forged.
        took_it = any(a.get("envelope_id") for a in record.get("attempts", []))
        note["verified"] = False if took_it else None
    if kind == "failed" and note["verified"] is False:
        kind = UNVERIFIED  # recorded for outbox.status to warn about; the send's state stays
    record.setdefault("dsn", []).append({
        "kind": kind, "dsn_key": dsn_id, "dsn_message_id": note.get("dsn_message_id"),
        "correlated_by": note.get("correlated_by"), "verified": note.get("verified"),
        "recipients": entries, "reporting_mta": note.get("reporting_mta"), "noted_at": note.get("noted_at"),
    })  # fmt: skip
    record["updated_at"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    log = record.get("delivery_log")
    if kind == "delayed":
        record.setdefault("delays", []).append({"at": note.get("noted_at"), "recipients": delayed})
        store.save(record)
        if log:
            append_events(Path(log), record, "delayed", now, recipients=[r.get("recipient") or "" for r in delayed],
                          extra={"dsn_message_id": note.get("dsn_message_id")})  # fmt: skip
        return
    if kind != "failed":
        store.save(record)
        return
    record["status"] = BOUNCED
    record["bounced_recipients"] = sorted({r.get("recipient") or "" for r in failed} - {""})
    statuses = ", ".join(f"{r.get('recipient')}: {r.get('status')}" for r in failed)
    record["last_error"] = f"bounced ({statuses}) reported by {note.get('reporting_mta') or 'a DSN'}"
    # The notice before the record: a kill in between leaves the DSN unapplied, so the rerun applies it
    # and finds the notice already there (one per send), instead of a bounced send with no notice.
    item = enqueue_notice(record, record["last_error"], note.get("text") or "")
    if item:
        record["notice_item"] = item
    store.save(record)
    if log:
        append_events(Path(log), record, BOUNCED, now, error=record["last_error"],
                      recipients=record["bounced_recipients"] or None,
                      extra={"dsn_message_id": note.get("dsn_message_id"),
                             "correlated_by": note.get("correlated_by")})  # fmt: skip
