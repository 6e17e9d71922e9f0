"""The spine's delivery log: `$SPINE_OUTBOX/communications/communications-delivery-log.jsonl`.

Required fields and statuses come from the spine's communications.delivery.contract.yaml
(log_schema.required_fields, status_lifecycle.allowed). Our finer outcome (deferred,
bounced, unknown ...) goes in extra fields, which the schema allows. One line per
recipient, since the schema's `recipient` is one address.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path

LOG_RELATIVE = Path("communications") / "communications-delivery-log.jsonl"
SPINE_STATUSES = ("pending", "dry-run", "blocked", "simulated", "sent", "delivered", "failed")

# Our record states -> the spine's lifecycle. Accepted by the submission server is "sent": a
# bounce can still come later, so "delivered" would claim more than SMTP told us.
SPINE_STATUS = {
    "queued": "pending", "attempting": "pending", "deferred": "pending", "unknown": "pending",
    "delivered": "sent", "failed": "failed", "bounced": "failed", "expired": "failed", "error": "failed",
    "delayed": "pending", "dry-run": "dry-run", "blocked": "blocked",
}  # fmt: skip


def log_path(outbox_dir: Path) -> Path:
    return Path(outbox_dir) / LOG_RELATIVE


def event_id(now: datetime) -> str:
    return f"comm-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def append_events(path: Path, record: dict, outcome: str, now: datetime, *, error: str | None = None,
                  recipients: list[str] | None = None, extra: dict | None = None) -> list[dict]:  # fmt: skip
    """Append one event per recipient; each line is one write() on an O_APPEND descriptor, so
    concurrent writers never interleave inside a line, and fsync'd before returning."""
    status = SPINE_STATUS.get(outcome, "pending")
    events = []
    for recipient in recipients if recipients is not None else record.get("recipients", []):
        event = {
            "event_id": event_id(now),
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": "email",
            "message_type": "email",
            "provider": "stalwart-smtp",
            "recipient": recipient,
            "status": status,
            "subject": record.get("subject"),
            "provider_message_id": record.get("message_id"),
            "provider_execution_mode": "live",
            "error": error,
            "outcome": outcome,
            "send_id": record.get("send_id"),
            "idempotency_key": record.get("idempotency_key"),
            "from": record.get("from"),
            "attempts": len(record.get("attempts", [])),
            "metadata": extra or {},
        }
        events.append(event)
    if not events:
        return events
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in events).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return events
