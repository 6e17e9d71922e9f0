"""The spine's unseen listing (spine-conventions §6.5), kept compatible: what `poll` does without --enqueue.

SEARCH UNSEEN, newest first, at most --limit, bodies fetched with BODY.PEEK (the
folder is only opened read-write for --mark-seen, which then flags exactly the
listed messages). Bodies over policy.max_message_bytes are not fetched: the
listing shows their header. The JSON keys are the spine's: mailbox, imap_host,
unseen_count, fetched_count, limit, messages[{message_id, from, subject, date, body}].
"""

from __future__ import annotations

from spine_comms.inbox.fetch import HEADER_CAP
from spine_comms.inbox.normalize import MAX_TEXT_BYTES

BODY_CHARS = 2000  # the spine's truncation
TRUNCATED = "\n... [truncated]"


def list_unseen(session, mailbox, folder: str, *, limit: int, mark_seen: bool, dry_run: bool, policy) -> dict:
    from spine_comms.mail.message import parse_message

    session.open(folder, writable=mark_seen and not dry_run)
    unseen = session.search_unseen()
    data = {
        "mailbox": mailbox.address,
        "imap_host": mailbox.imap.host,
        "folder": folder,
        "unseen_count": len(unseen),
        "limit": limit,
    }
    if dry_run:
        data["dry_run"] = True
        return data
    chosen = list(reversed(unseen))[:limit]
    metas = session.fetch_meta(chosen)
    fits = [u for u in chosen if u in metas and metas[u].size <= policy.max_message_bytes]
    bodies = session.fetch_raw(fits)
    headers = session.fetch_headers([u for u in chosen if u in metas and u not in fits], HEADER_CAP)
    messages = []
    for uid in chosen:
        raw = bodies.get(uid) or headers.get(uid)
        if raw is None:
            continue  # expunged meanwhile
        parsed = parse_message(
            raw, max_attachment_bytes=0, max_attachments=0, max_text_bytes=MAX_TEXT_BYTES
        )  # the listing shows no attachments: none is decoded
        body = parsed.text or ""
        if uid in headers:
            body = f"[not fetched: {metas[uid].size} bytes is over policy.max_message_bytes]"
        if len(body) > BODY_CHARS:
            body = body[:BODY_CHARS] + TRUNCATED
        sender = parsed.from_[0] if parsed.from_ else None
        shown = (f"{sender.name} <{sender.address}>" if sender.name else sender.address) if sender else ""
        messages.append({
            "uid": uid,
            "message_id": parsed.message_id,
            "from": shown,
            "subject": parsed.subject,
            "date": parsed.date_utc or "",
            "body": body,
        })  # fmt: skip
    if mark_seen and messages:
        session.add_seen([m["uid"] for m in messages])
    data["fetched_count"] = len(messages)
    data["messages"] = messages
    if mark_seen:
        data["marked_seen"] = len(messages)
    return data
