"""communications.thread.show: a conversation, oldest first, each message's new text only. Read-only.

Starting from one Message-ID (a message's own, or a thread id, which is its thread's first
Message-ID), the thread is the closure over Message-ID, References and In-Reply-To (RFC 5322
§3.6.4) in the folders given (default INBOX and Sent, so both sides of a conversation are
there): each round searches for the ids known so far (HEADER Message-ID, References,
In-Reply-To) and adds the ids the messages found name, until nothing new turns up or --limit
messages are found. A message in two folders is shown once (the same Message-ID, From, Subject
and Date); different messages that carry one Message-ID are all shown, marked `shares_message_id`,
with a warning: one of them may be forged to take another's place in the thread. When the message found has no
threading headers at all but its subject is a reply's ("Re: ..."), messages with the same base
subject are joined, marked `linked_by: subject` (the usual fallback for clients that drop
References). Each body is split into new text, signature and quoted history
(mail/reply_split.py); the quoted part is shown with --quoted.

Exit codes: 0; 1 when no message has that Message-ID (fail) or warn when --limit cut the
thread; 2 bad input; 3 when the mailbox cannot be reached.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status

MAX_IDS = 1000  # Message-IDs to look for, at most: a thread naming more is shown as incomplete
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|tr|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def base_subject(subject: str) -> str:
    """The subject without reply and forward prefixes (Re:, Fwd:, AW:, SV: ...), spaces folded, lower case."""
    return " ".join(_REPLY_PREFIX.sub("", subject).split()).lower()


def _norm(message_id: str | None) -> str:
    from spine_comms.outbox.store import normalize_message_id

    return normalize_message_id(message_id)


@capability("communications.thread.show", safety="read-only", approval="auto")
def thread_show(
    ctx: RunContext,
    message_id: Annotated[
        str, typer.Option(help="A message's Message-ID, or a thread id (the first Message-ID of its thread).")
    ],
    mailbox: Annotated[
        str | None, typer.Option(help="The mailbox (id or address). Default: ops, else the inbox contract's first.")
    ] = None,
    folder: Annotated[
        list[str] | None, typer.Option(help="A folder to look in (repeatable). Default: INBOX and Sent.")
    ] = None,
    quoted: Annotated[bool, typer.Option(help="Show each message's quoted history too.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many messages.")] = 50,
    body_chars: Annotated[
        int, typer.Option(min=0, max=20000, help="Show at most this many characters of each part.")
    ] = 4000,
) -> Result:
    """Show a conversation by Message-ID: every message of the thread (References, In-Reply-To; subject as a
    fallback), oldest first, each with its new text only (quoted history and signature separated), as
    untrusted text. Never changes the mailbox."""
    from spine_comms.endpoints.mailbox import load_inbox_contract, open_mailbox
    from spine_comms.inbox.poll import could_not_evaluate
    from spine_comms.protocols.imap import ImapError, session
    from spine_comms.protocols.imap_search import folder_exists

    seed = _norm(message_id)
    if not seed or any(c in seed for c in "\r\n\x00<> "):
        raise UsageError(f"--message-id {message_id!r}: give one Message-ID, e.g. <abc@example.org>")
    folders = list(dict.fromkeys(folder or ["INBOX", "Sent"]))
    contract = load_inbox_contract(ctx, required=False)
    wanted = mailbox or ("ops" if contract.mailbox("ops") is not None else contract.mailboxes[0].id)
    target = open_mailbox(ctx, contract, wanted)
    try:
        with session(target.imap) as imap:
            present = [f for f in folders if folder_exists(imap, f)]
            found, complete = _gather(imap, present, seed, limit)
            messages = _render(imap, found, quoted, body_chars)
    except ImapError as exc:
        raise could_not_evaluate(target, exc) from None
    from spine_comms.conversations.search import UNTRUSTED

    data = {
        "mailbox": target.id, "address": target.address,
        "message_id": next((m["message_id"] for m in messages if _norm(m["message_id"]) == seed), f"<{seed}>"),
        "folders": present, "folders_missing": [f for f in folders if f not in present],
        "thread_id": messages[0]["message_id"] if messages else None, "count": len(messages),
        "complete": complete, "untrusted": UNTRUSTED, "messages": messages,
    }  # fmt: skip
    result = Result(data=data)
    if not any(_norm(m["message_id"]) == seed for m in messages):
        result.add(
            Check(
                id="thread.seed",
                status=Status.FAIL,
                detail=f"no message <{seed}> in {', '.join(present) or 'no folder'}",
                subject=target.address,
            )
        )
        return result
    result.add(Check(id="thread.seed", status=Status.OK, detail=f"<{seed}> found", subject=target.address))
    shared = sorted({m["message_id"] for m in messages if m["shares_message_id"]})
    if shared:  # one id, different From, Subject or Date: both shown, neither trusted to be the original
        result.add(
            Check(
                id="thread.message_ids",
                status=Status.WARN,
                detail=f"{len(shared)} Message-ID(s) carried by different messages, all shown (one may be forged): "
                + ", ".join(shared[:5]),
                subject=target.address,
                expected="one message per Message-ID",
                actual=shared,
            )
        )
    detail = f"{len(messages)} message(s) in the thread" + ("" if complete else f", cut at --limit {limit}")
    result.add(
        Check(
            id="thread.complete", status=Status.OK if complete else Status.WARN, detail=detail, subject=target.address
        )
    )
    result.summary.append(detail)
    return result


def _headers(imap, folder: str, uids: list[int]) -> dict[int, object]:
    from spine_comms.mail.message import parse_message

    return {uid: parse_message(raw, max_attachments=0, max_attachment_bytes=0, max_text_bytes=1024)
            for uid, raw in imap.fetch_headers(uids).items()}  # fmt: skip


def _naming(wanted: str) -> list:
    """Messages that are `wanted` or name it as a parent: OR (Message-ID) (OR (References) (In-Reply-To))."""
    parents = ["OR", ["HEADER", "References", wanted], ["HEADER", "In-Reply-To", wanted]]
    return ["OR", ["HEADER", "Message-ID", wanted], parents]


def _gather(imap, folders: list[str], seed: str, limit: int) -> tuple[dict[tuple[str, int], dict], bool]:
    """(folder, uid) -> {parsed header, linked_by} for the thread of `seed`; and whether it is complete
    (False when --limit distinct messages were reached with more to come, or MAX_IDS ids to look for)."""
    from spine_comms.protocols.imap_search import search

    known, frontier, found, ids, cut = {seed}, [seed], {}, set(), False
    while frontier and not cut:
        fresh: list[str] = []
        for folder in folders:
            imap.open(folder)
            uids: set[int] = set()
            for mid in frontier:
                uids |= set(search(imap, _naming(f"<{mid}>")))
            new = sorted(u for u in uids if (folder, u) not in found)
            for uid, parsed in _headers(imap, folder, new).items():
                key = _norm(parsed.message_id)
                if key not in ids and len(ids) >= limit and key != seed:  # the asked-for message always shows
                    cut = True
                    continue
                ids.add(key)
                found[(folder, uid)] = {"parsed": parsed, "linked_by": "message-id"}
                for mid in map(_norm, [parsed.message_id, parsed.in_reply_to, *parsed.references]):
                    if mid and mid not in known:
                        known.add(mid)
                        fresh.append(mid)
        cut = cut or len(known) > MAX_IDS
        frontier = fresh
    if not cut:
        cut = _subject_fallback(imap, folders, found, limit)
    return found, not cut


def _subject_fallback(imap, folders: list[str], found: dict, limit: int) -> bool:
    """Join the messages with the same base subject to a lone reply without threading headers; True if cut."""
    from spine_comms.protocols.imap_search import search

    if len(found) != 1:
        return False
    only = next(iter(found.values()))["parsed"]
    subject = only.subject or ""
    probe = " ".join(_REPLY_PREFIX.sub("", subject).split())
    if only.in_reply_to or only.references or not _REPLY_PREFIX.match(subject) or not probe:
        return False
    if any(c in probe for c in "\r\n\x00"):
        return False
    ids = {_norm(only.message_id)}
    for folder in folders:
        imap.open(folder)
        uids = [u for u in search(imap, ["SUBJECT", probe]) if (folder, u) not in found]
        for uid, parsed in _headers(imap, folder, uids).items():
            if base_subject(parsed.subject or "") != base_subject(subject):
                continue
            if _norm(parsed.message_id) not in ids and len(ids) >= limit:
                return True
            ids.add(_norm(parsed.message_id))
            found[(folder, uid)] = {"parsed": parsed, "linked_by": "subject"}
    return False


def _copy_key(parsed) -> tuple:
    """What makes two messages with one Message-ID the same message (a copy in Sent and INBOX, a list's
    second delivery): the same id, From, Subject and Date. Anything else is another message reusing the
    id (a forgery, a broken client) and is shown, not merged away."""
    return (_norm(parsed.message_id), tuple(a.address.lower() for a in parsed.from_), parsed.subject or "",
            parsed.date_utc or "")  # fmt: skip


def _render(imap, found: dict, quoted: bool, body_chars: int) -> list[dict]:
    from spine_comms.conversations.search import MAX_FETCH_BYTES

    by_id: dict[tuple, dict] = {}
    for (folder, uid), entry in found.items():
        key = _copy_key(entry["parsed"])
        if key in by_id:
            by_id[key]["folders"].append(folder)
            continue
        by_id[key] = {"folder": folder, "uid": uid, "folders": [folder], "linked_by": entry["linked_by"]}
    reused = Counter(key[0] for key in by_id)
    for key, entry in by_id.items():
        entry["shares_message_id"] = reused[key[0]] > 1
    rows = []
    for folder in dict.fromkeys(e["folder"] for e in by_id.values()):
        imap.open(folder)
        mine = [e for e in by_id.values() if e["folder"] == folder]
        metas = imap.fetch_meta([e["uid"] for e in mine])
        fits = [e["uid"] for e in mine if e["uid"] in metas and metas[e["uid"]].size <= MAX_FETCH_BYTES]
        raws = imap.fetch_raw(fits)
        heads = imap.fetch_headers([e["uid"] for e in mine if e["uid"] not in raws])
        for entry in mine:
            raw = raws.get(entry["uid"]) or heads.get(entry["uid"])
            if raw is not None:
                rows.append(_message(entry, raw, metas.get(entry["uid"]), entry["uid"] in raws, quoted, body_chars))
    return sorted(rows, key=lambda m: (m["date"] or m["received"] or "", m["uid"]))


def _message(entry: dict, raw: bytes, meta, whole: bool, quoted: bool, body_chars: int) -> dict:
    from spine_comms.inbox.intake import MAX_TEXT_BYTES
    from spine_comms.mail.message import parse_message
    from spine_comms.mail.reply_split import split_reply
    from spine_comms.mailroom.items import body_text, one_line

    parsed = parse_message(raw, max_attachment_bytes=0, max_attachments=0, max_text_bytes=MAX_TEXT_BYTES)
    parts = split_reply(body_text(parsed.text or "")) if whole else None
    people = lambda found: [{"name": one_line(a.name, 200), "address": one_line(a.address, 320)} for a in found]  # noqa: E731
    new = parts.new if parts else ""
    body = {"untrusted": True, "new_text": new[:body_chars], "truncated": len(new) > body_chars,
            "signature": (parts.signature if parts else "")[:body_chars],
            "quoted_chars": len(parts.quoted) if parts else 0, "fetched": whole}  # fmt: skip
    if quoted:
        body["quoted"] = (parts.quoted if parts else "")[:body_chars]
    return {
        "folder": entry["folder"], "folders": entry["folders"], "uid": entry["uid"],
        "message_id": parsed.message_id, "linked_by": entry["linked_by"],
        "shares_message_id": entry["shares_message_id"],
        "from": people(parsed.from_), "to": people(parsed.to), "cc": people(parsed.cc),
        "subject": one_line(parsed.subject), "date": parsed.date_utc,
        "received": meta.internaldate.strftime("%Y-%m-%dT%H:%M:%SZ") if meta and meta.internaldate else None,
        "in_reply_to": parsed.in_reply_to, "references": parsed.references,
        "attachments": [{"name": one_line(a["name"], 200), "size": a["size"]} for a in parsed.skipped_attachments],
        "body": body, "problems": parsed.problems,
    }  # fmt: skip
