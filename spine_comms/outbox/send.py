"""communications.mail.send: one mail as a stack mailbox, through the durable outbox.

Compatible with the spine's communications.stalwart.send (--to --subject --body --body-file
--from ops|alerts|noreply --execute --json; a dry run by default) and extended. Everything
is checked before anything is written: addresses, allowed domains, header values, sizes,
the message replied to. With --execute the send is written to the outbox (its exact bytes
and a record keyed by the idempotency key) before the first attempt; the same key again
never sends a second message, it reports the send as it stands (and retries it now if it
is waiting for a retry or stopped on an error that sent nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status

AddressOpt = Annotated[list[str] | None, typer.Option(metavar="ADDRESS", show_default=False)]

# Record states -> the check's status (and so the exit code).
VERDICT = {
    "delivered": Status.OK, "queued": Status.WARN, "deferred": Status.WARN, "attempting": Status.WARN,
    "unknown": Status.WARN, "failed": Status.FAIL, "bounced": Status.FAIL, "expired": Status.FAIL,
    "error": Status.ERROR,
}  # fmt: skip


@capability("communications.mail.send", safety="mutating", approval="auto")
def mail_send(
    ctx: RunContext,
    to: Annotated[list[str] | None, typer.Option("--to", metavar="ADDRESS", help="A recipient; repeat the option "
                  "or give a comma list. Its domain must be allowed (stack contract pilot.send_test."
                  "allowed_recipient_domains).")] = None,
    subject: Annotated[str, typer.Option("--subject", help="The subject (one line).")] = "",
    body: Annotated[str | None, typer.Option("--body", help="The text body.")] = None,
    body_file: Annotated[Path | None, typer.Option("--body-file", metavar="FILE", help="Read the text body from "
                         "FILE (UTF-8).")] = None,
    sender: Annotated[str, typer.Option("--from", metavar="MAILBOX", help="The stack mailbox that sends and logs "
                      "in: ops, alerts or noreply (mailbox ids of the stack contract).")] = "ops",
    cc: Annotated[list[str] | None, typer.Option("--cc", metavar="ADDRESS", help="A Cc recipient (repeatable, or "
                  "a comma list).")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc", metavar="ADDRESS", help="A Bcc recipient: in the "
                   "envelope only, never in the headers.")] = None,
    attach: Annotated[list[Path] | None, typer.Option("--attach", metavar="FILE", help="Attach FILE (repeatable; "
                      "MIME type from the name; limits.max_attachment_bytes each).")] = None,
    html_file: Annotated[Path | None, typer.Option("--html-file", metavar="FILE", help="An HTML version, sent with "
                         "the text as multipart/alternative.")] = None,
    in_reply_to: Annotated[str | None, typer.Option("--in-reply-to", metavar="MESSAGE-ID", help="Reply to this "
                           "stored inbound message: In-Reply-To and References are set so it threads.")] = None,
    key: Annotated[str | None, typer.Option("--idempotency-key", metavar="KEY", help="Sends with the same key are "
                   "one send. Default: derived from sender, recipients, subject, bodies and attachments.")] = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:  # fmt: skip
    """Send a mail as a stack mailbox through the durable outbox (a dry run unless --execute).
    Refused before anything is written: recipients outside the allowed domains, CR/LF in a header
    value, oversize attachments, an unknown --in-reply-to. Delivered: exit 0; waiting for a retry or
    unknown: warn; refused by the server (5xx): fail, exit 1; login refused: error, exit 3."""
    from spine_comms.outbox.compose import (
        Draft,
        build,
        check_header,
        idempotency_key,
        new_message_id,
        preview_headers,
        read_attachment,
        split_addresses,
    )
    from spine_comms.outbox.settings import load_settings
    from spine_comms.outbox.store import OutboxStore, send_id_for

    settings = load_settings(ctx)
    box = settings.mailbox(sender)
    recipients = {"to": split_addresses(to, "--to"), "cc": split_addresses(cc, "--cc"),
                  "bcc": split_addresses(bcc, "--bcc")}  # fmt: skip
    if not recipients["to"]:
        raise UsageError("--to: at least one recipient is needed")
    check_header("--subject", subject)
    if key is not None:
        check_header("--idempotency-key", key)
        if not key.strip() or len(key) > 500:
            raise UsageError("--idempotency-key: give 1 to 500 characters")
    _check_domains(settings.allowed_domains, [a for group in recipients.values() for a in group])
    text = _body(body, body_file)
    limits = settings.outbox.limits
    draft = Draft(sender=box.address, subject=subject, text=text, agent=settings.outbox.agent, **recipients)
    if len(draft.recipients) > limits.max_recipients:
        raise UsageError(f"{len(draft.recipients)} recipients: over limits.max_recipients ({limits.max_recipients})")
    if html_file is not None:
        draft.html = _read_text(html_file, "--html-file")
    draft.attachments = [read_attachment(str(p), limits.max_attachment_bytes) for p in attach or []]
    if in_reply_to:
        from spine_comms.outbox.thread import find_inbound

        original = find_inbound(ctx, in_reply_to)
        draft.in_reply_to, draft.references = original["message_id"], original["references"]
    the_key = key or idempotency_key(draft)
    send_id = send_id_for(the_key)
    store = OutboxStore(settings.state)
    existing = store.load(send_id)
    endpoint = settings.submission(box, ctx.env)
    now = ctx.clock()
    message_id = existing["message_id"] if existing else new_message_id(box.address.rpartition("@")[2], now)
    raw = store.raw(send_id) if existing else build(draft, message_id=message_id, now=now)
    if len(raw) > limits.max_message_bytes:
        raise UsageError(f"the message is {len(raw)} bytes, over limits.max_message_bytes ({limits.max_message_bytes})")
    result = Result(data={
        "from": box.address, "to": recipients["to"], "cc": recipients["cc"], "bcc": recipients["bcc"],
        "subject": subject, "message_id": message_id, "smtp_host": endpoint.host, "smtp_port": endpoint.port,
        "submission": endpoint.where(), "login": endpoint.login, "send_id": send_id, "idempotency_key": the_key,
        "size": len(raw), "outbox": str(store.root), "delivery_log": str(settings.delivery_log),
    })  # fmt: skip
    if dry_run:
        return _dry_run(result, existing, raw, preview_headers)
    if existing is None:
        record = _new_record(settings, draft, box.id, send_id, the_key, message_id, now)
        if store.create(record, raw):
            from spine_comms.outbox.delivery_log import append_events

            append_events(settings.delivery_log, record, "queued", now)
        result.data["new"] = True
    else:
        result.data["new"] = False
    return _attempt(ctx, settings, store, send_id, result)


def _check_domains(allowed: list[str], addresses: list[str]) -> None:
    if not allowed:
        raise UsageError("no allowed recipient domains: set pilot.send_test.allowed_recipient_domains in the stack "
                         "contract (or allowed_recipient_domains in the outbox contract)")  # fmt: skip
    outside = [a for a in addresses if a.rpartition("@")[2].lower() not in allowed]
    if outside:
        raise UsageError(f"recipient(s) outside the allowed domains ({', '.join(allowed)}): {', '.join(outside)}; "
                         "nothing was sent")  # fmt: skip


def _read_text(path: Path, what: str) -> str:
    try:
        return path.expanduser().read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: cannot read {path} as UTF-8 text ({type(exc).__name__})") from None


def _body(body: str | None, body_file: Path | None) -> str:
    if body is not None and body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    if body_file is not None:
        return _read_text(body_file, "--body-file")
    return body or ""


def _new_record(settings, draft, mailbox_id, send_id, key, message_id, now) -> dict:
    from spine_comms.outbox.attempt import stamp

    return {
        "send_id": send_id, "idempotency_key": key, "message_id": message_id, "from_mailbox": mailbox_id,
        "from": draft.sender, "to": draft.to, "cc": draft.cc, "bcc": draft.bcc, "recipients": draft.recipients,
        "subject": draft.subject, "created_at": stamp(now), "updated_at": stamp(now), "status": "queued",
        "attempts": [], "next_attempt_at": stamp(now), "last_error": None,
        "delivery_log": str(settings.delivery_log),
        # The notice switch and where it goes travel with the send: a DSN applied by the inbox
        # pipeline (which knows only the state directory) acts as this send was configured.
        "notice": {"enabled": settings.outbox.bounce_notice.enabled, "mailroom_inbox": str(settings.mailroom_inbox)},
    }  # fmt: skip


def _dry_run(result: Result, existing: dict | None, raw: bytes, preview_headers) -> Result:
    result.data["status"] = "dry-run"
    result.data["headers"] = preview_headers(raw)
    if existing:
        result.data["existing"] = {"status": existing["status"], "attempts": len(existing["attempts"])}
        detail = f"already in the outbox ({existing['status']}); --execute would not send it again"
    else:
        detail = f"would send {len(raw)} bytes to {', '.join(result.data['to'])} via {result.data['submission']}"
    result.add(Check("mail.send.plan", Status.OK, detail, result.data["send_id"]))
    result.summary += [
        "dry run: nothing written or sent; the headers (Date and Message-ID are set anew on --execute):",
        *("  " + h for h in result.data["headers"]),
        "run again with --execute to send",
    ]
    return result


def _attempt(ctx, settings, store, send_id: str, result: Result) -> Result:
    from spine_comms.outbox.attempt import Attempter

    attempter = Attempter(ctx, settings, store)
    with store.locked(send_id, wait=0.0) as held:
        record = store.load(send_id)
        if not held:
            result.data.update(status=record["status"], attempts=len(record["attempts"]), in_progress=True)
            result.add(Check("mail.send.outcome", Status.WARN, "another process is attempting this send now; "
                             "nothing done here", send_id, "delivered", record["status"]))  # fmt: skip
            return result
        record = attempter.run(record)
    state = record["status"]
    result.data.update(status=state, attempts=len(record["attempts"]), history=record["attempts"],
                       last_error=record.get("last_error"), next_attempt_at=record.get("next_attempt_at"),
                       notice_item=record.get("notice_item"))  # fmt: skip
    detail = _detail(record, result.data["new"])
    result.add(Check("mail.send.outcome", VERDICT.get(state, Status.WARN), detail, send_id, "delivered", state,
                     record["attempts"][-1] if record["attempts"] else None))  # fmt: skip
    result.summary.append(f"{send_id}: {detail}")
    return result


def _detail(record: dict, new: bool) -> str:
    state, n = record["status"], len(record["attempts"])
    prefix = "" if new else "already in the outbox (same idempotency key): "
    if state == "delivered":
        return f"{prefix}accepted by the server for {', '.join(record['recipients'])} (attempt {n})"
    if state == "deferred":
        return f"{prefix}not yet: {record.get('last_error')}; retried by flush from {record.get('next_attempt_at')}"
    return f"{prefix}{state}: {record.get('last_error') or 'no error recorded'}"
