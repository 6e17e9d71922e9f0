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
from spine_comms.outbox.respond import (
    ForwardAs,
    ForwardAsOpt,
    ForwardOpt,
    OriginalFolderOpt,
    QuoteOpt,
    ReplyAllOpt,
    ReplyOpt,
    chosen,
)

# Record states -> the check's status (and so the exit code).
VERDICT = {
    "delivered": Status.OK, "queued": Status.WARN, "deferred": Status.WARN, "attempting": Status.WARN,
    "unknown": Status.WARN, "failed": Status.FAIL, "bounced": Status.FAIL, "expired": Status.FAIL,
    "error": Status.ERROR,
}  # fmt: skip


ToOpt = Annotated[list[str] | None, typer.Option("--to", metavar="ADDRESS", help="A recipient; repeat the option "
                  "or give a comma list. Its domain must be allowed (stack contract pilot.send_test."
                  "allowed_recipient_domains).")]  # fmt: skip
SubjectOpt = Annotated[str, typer.Option("--subject", help="The subject (one line). With --reply or --forward: "
                       "`Re:`/`Fwd:` and the original's, unless given.")]  # fmt: skip
BodyOpt = Annotated[str | None, typer.Option("--body", help="The text body.")]
BodyFileOpt = Annotated[Path | None, typer.Option("--body-file", metavar="FILE", help="Read the text body from "
                        "FILE (UTF-8).")]  # fmt: skip
FromOpt = Annotated[str, typer.Option("--from", metavar="MAILBOX", help="The stack mailbox that sends and logs "
                    "in: ops, alerts or noreply (mailbox ids of the stack contract).")]  # fmt: skip
CcOpt = Annotated[list[str] | None, typer.Option("--cc", metavar="ADDRESS", help="A Cc recipient (repeatable, or "
                  "a comma list).")]  # fmt: skip
BccOpt = Annotated[list[str] | None, typer.Option("--bcc", metavar="ADDRESS", help="A Bcc recipient: in the "
                   "envelope only, never in the headers.")]  # fmt: skip
AttachOpt = Annotated[list[Path] | None, typer.Option("--attach", metavar="FILE", help="Attach FILE (repeatable; "
                      "MIME type from the name; limits.max_attachment_bytes each).")]  # fmt: skip
HtmlFileOpt = Annotated[Path | None, typer.Option("--html-file", metavar="FILE", help="An HTML version, sent with "
                        "the text as multipart/alternative.")]  # fmt: skip
InReplyToOpt = Annotated[str | None, typer.Option("--in-reply-to", metavar="MESSAGE-ID", help="Reply to this "
                         "stored inbound message: In-Reply-To and References are set so it threads.")]  # fmt: skip


@capability("communications.mail.send", safety="mutating", approval="auto")
def mail_send(
    ctx: RunContext,
    to: ToOpt = None,
    subject: SubjectOpt = "",
    body: BodyOpt = None,
    body_file: BodyFileOpt = None,
    sender: FromOpt = "ops",
    cc: CcOpt = None,
    bcc: BccOpt = None,
    attach: AttachOpt = None,
    html_file: HtmlFileOpt = None,
    in_reply_to: InReplyToOpt = None,
    reply: ReplyOpt = None,
    reply_all: ReplyAllOpt = None,
    forward: ForwardOpt = None,
    original_folder: OriginalFolderOpt = "INBOX",
    forward_as: ForwardAsOpt = ForwardAs.attachment,
    quote: QuoteOpt = False,
    key: Annotated[str | None, typer.Option("--idempotency-key", metavar="KEY", help="Sends with the same key are "
                   "one send. Default: derived from sender, recipients, subject, bodies and attachments.")] = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:  # fmt: skip
    """Send a mail as a stack mailbox through the durable outbox (a dry run unless --execute).
    Reply, reply-all or forward a received message with --reply, --reply-all or --forward.
    Refused before anything is written: recipients outside the allowed domains, CR/LF in a header
    value, oversize attachments, an unknown --in-reply-to or --reply message, a password that cannot
    be resolved. Delivered: exit 0; waiting for a retry or unknown: warn; refused by the server (5xx):
    fail, exit 1; login refused: error, exit 3."""
    from spine_comms.outbox.attempt import Attempter
    from spine_comms.outbox.compose import build, check_header, idempotency_key, new_message_id, preview_headers
    from spine_comms.outbox.settings import load_settings
    from spine_comms.outbox.store import OutboxStore, send_id_for

    settings = load_settings(ctx)
    box = settings.mailbox(sender)
    response = chosen(in_reply_to, reply, reply_all, forward)
    draft, answered = compose(ctx, settings, box, to=to, cc=cc, bcc=bcc, subject=subject, body=body,
                              body_file=body_file, html_file=html_file, attach=attach, response=response,
                              original_folder=original_folder, forward_as=forward_as, quote=quote)  # fmt: skip
    if key is not None:
        check_header("--idempotency-key", key)
        if not key.strip() or len(key) > 500:
            raise UsageError("--idempotency-key: give 1 to 500 characters")
    limits = settings.outbox.limits
    recipients = {"to": draft.to, "cc": draft.cc, "bcc": draft.bcc}
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
        "subject": draft.subject, "message_id": message_id, "smtp_host": endpoint.host, "smtp_port": endpoint.port,
        "submission": endpoint.where(), "login": endpoint.login, "send_id": send_id, "idempotency_key": the_key,
        "size": len(raw), "outbox": str(store.root), "delivery_log": str(settings.delivery_log),
    })  # fmt: skip
    if answered:
        result.data["original"] = answered
    attempter = Attempter(ctx, settings, store)
    if dry_run:
        return _dry_run(result, existing, raw, preview_headers, credentials_problem(attempter, box, endpoint))
    # The password before the outbox entry: a send that cannot log in now must not wait in the outbox for a
    # later flush (with other credentials in its environment) to deliver it. SecretError: exit 2, nothing written.
    attempter.password(box.id, endpoint)
    if existing is None:
        record = new_record(settings, draft, box.id, send_id, the_key, message_id, now)
        if store.create(record, raw):
            from spine_comms.outbox.delivery_log import append_events

            append_events(settings.delivery_log, record, "queued", now)
        result.data["new"] = True
    else:
        result.data["new"] = False
    return attempt_send(attempter, store, send_id, result)


def compose(ctx, settings, box, *, to, cc, bcc, subject, body, body_file, html_file, attach, response,
            original_folder, forward_as, quote, agent: str | None = None):  # fmt: skip
    """The Draft the options describe (a reply or forward filled in from the original), every value checked,
    and what the original was (None without --reply/--reply-all/--forward)."""
    from spine_comms.outbox.compose import Draft, check_header, read_attachment, split_addresses

    recipients = {"to": split_addresses(to, "--to"), "cc": split_addresses(cc, "--cc"),
                  "bcc": split_addresses(bcc, "--bcc")}  # fmt: skip
    if not recipients["to"] and (response is None or response[0] in ("in-reply-to", "forward")):
        raise UsageError("--to: at least one recipient is needed")
    check_header("--subject", subject)
    text = _body(body, body_file)
    limits = settings.outbox.limits
    draft = Draft(sender=box.address, subject=subject, text=text, agent=agent or settings.outbox.agent, **recipients)
    if html_file is not None:
        draft.html = _read_text(html_file, "--html-file")
    draft.attachments = [read_attachment(str(p), limits.max_attachment_bytes) for p in attach or []]
    answered = None
    if response is not None and response[0] == "in-reply-to":
        from spine_comms.outbox.thread import find_inbound

        original = find_inbound(ctx, response[1])
        draft.in_reply_to, draft.references = original["message_id"], original["references"]
    elif response is not None:
        from spine_comms.outbox.respond import respond

        answered = respond(ctx, settings, box, draft, response[0], response[1], folder=original_folder,
                           forward_as=forward_as, quote=quote, subject_given=bool(subject))  # fmt: skip
        check_header("Subject", draft.subject)
    check_domains(settings.allowed_domains, draft.recipients)
    if len(draft.recipients) > limits.max_recipients:
        raise UsageError(f"{len(draft.recipients)} recipients: over limits.max_recipients ({limits.max_recipients})")
    return draft, answered


def credentials_problem(attempter, box, endpoint) -> str | None:
    """Why --execute would refuse for want of a password (the dry run says so), or None."""
    from spine_comms.core.errors import SecretError

    try:
        attempter.password(box.id, endpoint)
    except SecretError as exc:
        return exc.message
    return None


def check_domains(allowed: list[str], addresses: list[str]) -> None:
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


def new_record(settings, draft, mailbox_id, send_id, key, message_id, now) -> dict:
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


def _dry_run(result: Result, existing: dict | None, raw: bytes, preview_headers, no_password: str | None) -> Result:
    result.data["status"] = "dry-run"
    result.data["headers"] = preview_headers(raw)
    if no_password:
        result.add(
            Check(
                id="mail.send.credentials",
                status=Status.WARN,
                detail=f"--execute would refuse: {no_password}",
                subject=result.data["login"],
                expected="a password",
            )
        )
    if existing:
        result.data["existing"] = {"status": existing["status"], "attempts": len(existing["attempts"])}
        detail = f"already in the outbox ({existing['status']}); --execute would not send it again"
    else:
        detail = f"would send {len(raw)} bytes to {', '.join(result.data['to'])} via {result.data['submission']}"
    result.add(Check(id="mail.send.plan", status=Status.OK, detail=detail, subject=result.data["send_id"]))
    result.summary += [
        "dry run: nothing written or sent; the headers (Date and Message-ID are set anew on --execute):",
        *("  " + h for h in result.data["headers"]),
        "run again with --execute to send",
    ]
    return result


def attempt_send(attempter, store, send_id: str, result: Result) -> Result:
    with store.locked(send_id, wait=0.0) as held:
        record = store.load(send_id)
        if not held:
            result.data.update(status=record["status"], attempts=len(record["attempts"]), in_progress=True)
            result.add(
                Check(
                    id="mail.send.outcome",
                    status=Status.WARN,
                    detail="another process is attempting this send now; nothing done here",
                    subject=send_id,
                    expected="delivered",
                    actual=record["status"],
                )
            )
            return result
        record = attempter.run(record)
    state = record["status"]
    result.data.update(status=state, attempts=len(record["attempts"]), history=record["attempts"],
                       last_error=record.get("last_error"), next_attempt_at=record.get("next_attempt_at"),
                       notice_item=record.get("notice_item"))  # fmt: skip
    detail = _detail(record, result.data["new"])
    result.add(
        Check(
            id="mail.send.outcome",
            status=VERDICT.get(state, Status.WARN),
            detail=detail,
            subject=send_id,
            expected="delivered",
            actual=state,
            evidence=record["attempts"][-1] if record["attempts"] else None,
        )
    )
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
