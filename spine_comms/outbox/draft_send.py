"""communications.draft.send: send an approved draft, as it stands in Drafts, through the durable outbox, once.

Manual approval: the runner refuses it without --yes (or the spine's approval variables), and the
MCP server without confirm=true, so an agent that drafted a mail cannot also send it. The draft
is the newest message in the mailbox's Drafts folder carrying its X-Spine-Draft-Id: a draft a
person edited in a mail client (saved again: a new UID, the header kept) is sent as edited.
What is sent is that message with the header and Bcc taken out, a fresh Date and Message-ID,
and recipients read from its To, Cc and Bcc, checked like any send (allowed domains, count,
size, header values); its From must still be the mailbox's own address.

Exactly once: the outbox's idempotency key is `draft:<id>`, so a second draft.send of the same
id finds the send in the outbox and reports it, sending nothing (and then only removes copies
left in Drafts by an interrupted run). After the send is in the outbox every copy of the draft
is removed from Drafts (\\Deleted and UID EXPUNGE), so nobody approves it twice by mistake.

Exit codes: 0 delivered or already sent; warn when waiting for a retry; 1 refused by the server or
no draft in Drafts; 2 no such draft id, refused content, or no approval; 3 the mailbox cannot be reached.
"""

from __future__ import annotations

from email.utils import getaddresses
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status

KEEP_DRAFT_WHEN = ("failed", "bounced", "expired", "error")  # nothing will deliver it: the person should see it
# Taken out before sending: Bcc (the envelope has them), our draft id, Date and Message-ID (set anew), and the
# draft bookkeeping mail clients add to what they save in Drafts (Thunderbird, Apple Mail).
HIDDEN_HEADERS = ("Bcc", "X-Spine-Draft-Id", "Date", "Message-ID", "X-Mozilla-Draft-Info", "X-Identity-Key",
                  "X-Account-Key", "X-Uniform-Type-Identifier", "X-Universally-Unique-Identifier",
                  "X-Apple-Mail-Remote-Attachments", "X-Apple-Base-Url", "X-Apple-Windows-Friendly")  # fmt: skip


@capability("communications.draft.send", safety="mutating", approval="manual")
def draft_send(
    ctx: RunContext,
    draft_id: Annotated[str, typer.Option("--id", metavar="DRAFT-ID", help="The draft (D..., from "
                        "communications.mail.draft or its approval item).")],
    dry_run: bool = True,  # the runner's: --dry-run, or acting only with --yes
) -> Result:  # fmt: skip
    """Send an approved draft (manual approval: --yes) as it now stands in the Drafts folder, through the
    durable outbox exactly once, then remove it from Drafts. A second send of the same id sends nothing."""
    from spine_comms.outbox.attempt import Attempter
    from spine_comms.outbox.draft import load_record, save_record
    from spine_comms.outbox.send import attempt_send, credentials_problem
    from spine_comms.outbox.settings import load_settings
    from spine_comms.outbox.store import OutboxStore, send_id_for

    if not draft_id.startswith("D") or not draft_id[1:].isalnum() or len(draft_id) > 64:
        raise UsageError(f"--id {draft_id[:80]!r}: a draft id looks like D followed by letters and digits")
    settings = load_settings(ctx)
    record = load_record(settings, draft_id)
    if record is None:
        raise UsageError(f"--id {draft_id}: no such draft in this outbox", hint="communications.mail.draft names it")
    box = settings.mailbox(record["mailbox"])
    store = OutboxStore(settings.state)
    send_id = send_id_for(f"draft:{draft_id}")
    result = Result(data={"draft_id": draft_id, "send_id": send_id, "from": box.address, "folder": record["folder"]})
    existing = store.load(send_id)
    if existing is not None:
        return _already_sent(ctx, settings, box, record, existing, result, dry_run)
    raw, uid, stale = _newest(ctx, settings, box, record)
    if raw is None:
        result.add(Check(id="draft.send.found", status=Status.FAIL, subject=draft_id, expected="a draft in Drafts",
                         detail=f"no message with X-Spine-Draft-Id {draft_id} in {box.address} {record['folder']}: "
                                "discarded by a person? nothing was sent"))  # fmt: skip
        return result
    now = ctx.clock()
    message, recipients = _outgoing(raw, box.address, settings, now)
    result.data.update(uid=uid, older_copies=stale, to=recipients["to"], cc=recipients["cc"], bcc=recipients["bcc"],
                       subject=str(message["Subject"] or ""), message_id=message["Message-ID"])  # fmt: skip
    found = f"UID {uid} in {record['folder']}" + (f" (newer than {stale})" if stale else "")
    result.add(Check(id="draft.send.found", status=Status.OK, subject=draft_id, detail=found))
    out = message.as_bytes()
    endpoint = settings.submission(box, ctx.env)
    attempter = Attempter(ctx, settings, store)
    if dry_run:
        from spine_comms.outbox.compose import preview_headers

        result.data.update(status="dry-run", headers=preview_headers(out))
        problem = credentials_problem(attempter, box, endpoint)
        if problem:
            result.add(Check(id="draft.send.credentials", status=Status.WARN, detail=f"--yes would refuse: {problem}",
                             subject=endpoint.login))  # fmt: skip
        result.summary.append(f"dry run: would send {len(out)} bytes to {', '.join(_all(recipients))}")
        return result
    attempter.password(box.id, endpoint)
    record_new = _outbox_record(settings, box, record, recipients, message, send_id, now)
    with store.locked(send_id, wait=10.0) as held:
        created = held and store.load(send_id) is None and store.create(record_new, out)
    if not created and store.load(send_id) is None:  # another process holds the send and has not stored it yet
        busy = "another process is sending this draft now; nothing done here"
        result.add(Check(id="draft.send.outcome", status=Status.WARN, subject=send_id, expected="delivered",
                         actual="in progress", detail=busy))  # fmt: skip
        return result
    if created:
        from spine_comms.outbox.delivery_log import append_events

        append_events(settings.delivery_log, record_new, "queued", now)
    result.data["new"] = bool(created)
    record.update(status="sent", send_id=send_id, sent_uid=uid, sent_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    save_record(settings, record)
    result = attempt_send(attempter, store, send_id, result)
    if result.data.get("status") in KEEP_DRAFT_WHEN:
        result.add(Check(id="draft.send.removed", status=Status.WARN, subject=draft_id,
                         detail=f"the send is {result.data['status']}: the draft stays in {record['folder']} to be "
                                "looked at (this id will not send again)"))  # fmt: skip
        return result
    _clean_drafts(ctx, settings, box, record, result)
    return result


def _all(recipients: dict) -> list[str]:
    return [a for group in recipients.values() for a in group]


def _already_sent(ctx, settings, box, record: dict, existing: dict, result: Result, dry_run: bool) -> Result:
    from spine_comms.outbox.send import VERDICT

    state = existing["status"]
    result.data.update(status=state, already_sent=True, message_id=existing["message_id"], to=existing["to"],
                       cc=existing["cc"], attempts=len(existing["attempts"]), new=False)  # fmt: skip
    detail = f"already sent ({state}, {len(existing['attempts'])} attempt(s)); nothing sent again"
    if state in ("queued", "deferred", "attempting", "unknown"):
        detail = f"already in the outbox ({state}); not sent again here: communications.outbox.flush delivers it"
    result.add(Check(id="draft.send.outcome", status=VERDICT.get(state, Status.WARN), subject=result.data["send_id"],
                     expected="delivered", actual=state, detail=detail))  # fmt: skip
    result.summary.append(f"{record['draft_id']}: already sent ({state}); nothing sent again")
    if not dry_run and not record.get("removed_from_drafts"):
        _clean_drafts(ctx, settings, box, record, result)
    return result


def _newest(ctx, settings, box, record: dict) -> tuple[bytes | None, int | None, list[int]]:
    """The newest copy of the draft in its folder, its UID, and the older copies' UIDs."""
    from spine_comms.core.outcomes import could_not_evaluate
    from spine_comms.outbox.compose import DRAFT_HEADER
    from spine_comms.outbox.original import imap_target
    from spine_comms.protocols.imap import ImapError, session
    from spine_comms.protocols.imap_search import search

    target = imap_target(ctx, settings, box)
    try:
        with session(target) as imap:
            imap.open(record["folder"])
            uids = _exact(imap, search(imap, ["HEADER", DRAFT_HEADER, record["draft_id"]]), record["draft_id"])
            if not uids:
                return None, None, []
            limit = settings.outbox.limits.max_message_bytes
            meta = imap.fetch_meta(uids[-1:]).get(uids[-1])
            if meta is not None and meta.size > limit:
                raise UsageError(f"the draft is {meta.size} bytes, over limits.max_message_bytes ({limit})")
            raw = imap.fetch_raw(uids[-1:]).get(uids[-1])
    except ImapError as exc:
        raise could_not_evaluate(exc, f"IMAP {target.host}:{target.port} as {target.login}: {exc.message}") from None
    return raw, uids[-1], uids[:-1]


def _exact(imap, uids: list[int], draft_id: str) -> list[int]:
    """The UIDs whose header is exactly this id (SEARCH HEADER matches substrings)."""
    from email.parser import BytesHeaderParser

    from spine_comms.outbox.compose import DRAFT_HEADER

    heads = imap.fetch_headers(uids)
    return sorted(u for u, h in heads.items() if (BytesHeaderParser().parsebytes(h)[DRAFT_HEADER] or "").strip()
                  == draft_id)  # fmt: skip


def _outgoing(raw: bytes, own: str, settings, now):
    """The message to submit, from the draft as it stands, and its recipients; every value checked."""
    from email.parser import BytesParser
    from email.policy import SMTP
    from email.utils import format_datetime

    from spine_comms.outbox.compose import check_header, new_message_id, split_addresses
    from spine_comms.outbox.send import check_domains

    message = BytesParser(policy=SMTP).parsebytes(raw)
    senders = [a for _, a in getaddresses([str(v) for v in message.get_all("From", [])])]
    if [a.lower() for a in senders] != [own.lower()]:
        raise UsageError(f"the draft's From is now {', '.join(senders) or 'empty'}, not {own}: refused; nothing was "
                         "sent (a draft is sent by the mailbox it was drafted in)")  # fmt: skip
    recipients = {}
    for name in ("To", "Cc", "Bcc"):
        values = [str(v) for v in message.get_all(name, [])]
        recipients[name.lower()] = split_addresses([a for _, a in getaddresses(values) if a], f"the draft's {name}")
    if not recipients["to"] and not recipients["cc"] and not recipients["bcc"]:
        raise UsageError("the draft has no recipients (To, Cc, Bcc): nothing was sent")
    everyone = list(dict.fromkeys(a.lower() for a in _all(recipients)))
    check_domains(settings.allowed_domains, everyone)
    if len(everyone) > settings.outbox.limits.max_recipients:
        raise UsageError(f"{len(everyone)} recipients: over limits.max_recipients")
    for name in HIDDEN_HEADERS:
        del message[name]
    for part in message.walk():
        for name, value in part.items():
            check_header(f"the draft's {name}", str(value))
    message["Date"] = format_datetime(now)
    message["Message-ID"] = new_message_id(own.rpartition("@")[2], now)
    return message, recipients


def _outbox_record(settings, box, record: dict, recipients: dict, message, send_id: str, now) -> dict:
    from spine_comms.outbox.compose import Draft
    from spine_comms.outbox.send import new_record

    draft = Draft(sender=box.address, subject=str(message["Subject"] or ""), **recipients)
    made = new_record(settings, draft, box.id, send_id, f"draft:{record['draft_id']}", message["Message-ID"], now)
    made["draft_id"] = record["draft_id"]
    return made


def _clean_drafts(ctx, settings, box, record: dict, result: Result) -> None:
    """Remove every copy of the draft from Drafts; a failure here is a warning (the outbox already holds the send)."""
    from spine_comms.outbox.compose import DRAFT_HEADER
    from spine_comms.outbox.draft import save_record
    from spine_comms.outbox.original import imap_target
    from spine_comms.protocols.imap import ImapError, session
    from spine_comms.protocols.imap_append import remove
    from spine_comms.protocols.imap_search import search

    try:
        with session(imap_target(ctx, settings, box)) as imap:
            imap.open(record["folder"], writable=True)
            uids = _exact(imap, search(imap, ["HEADER", DRAFT_HEADER, record["draft_id"]]), record["draft_id"])
            how = remove(imap, uids)
    except ImapError as exc:
        detail = f"sent, but not removed from {record['folder']}: {exc.message}; remove it by hand"
        result.add(Check(id="draft.send.removed", status=Status.WARN, subject=record["draft_id"], detail=detail))
        return
    record["removed_from_drafts"] = True
    save_record(settings, record)
    result.data["removed_from_drafts"] = {"uids": uids, "how": how}
    result.add(Check(id="draft.send.removed", status=Status.OK, subject=record["draft_id"],
                     detail=f"{len(uids)} copy(ies) removed from {record['folder']} ({how})"))  # fmt: skip
