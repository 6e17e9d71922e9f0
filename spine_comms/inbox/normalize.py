"""The parse/normalize stage: one fetched message as plain data (the stored .json) and as the spine's item.

Pure functions: nothing here touches the network or the disk, or decides a lane (policy.py does).
The parser (spine_comms.mail.message.parse_message) never raises; what a message holds that the
renderer chokes on is caught by the intake, which parks the message with the reason
(`unprocessable`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MAX_TEXT_BYTES = 256 * 1024  # the body an item shows; the whole message stays in the .eml


def utc_stamp(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def parse(raw: bytes, policy):
    """The normalized message (spine_comms.mail.message.NormalizedMessage), within the policy's attachment caps."""
    from spine_comms.mail.message import parse_message

    return parse_message(
        raw, max_attachment_bytes=policy.max_attachment_bytes, max_attachments=policy.max_attachments,
        max_text_bytes=MAX_TEXT_BYTES,
    )  # fmt: skip


def normalized(message, mailbox, folder: str, uidvalidity: int, fetched, *, identity: str, rid: str, verdict) -> dict:
    """The .json: the parse, and a `spine_comms` block saying where the message came from and its lane."""
    data = message.to_dict()
    data["spine_comms"] = {
        "mailbox": mailbox.id, "address": mailbox.address, "folder": folder, "uid": fetched.uid,
        "uidvalidity": uidvalidity, "internaldate": utc_stamp(fetched.internaldate), "size": fetched.size,
        "identity": identity, "run_id": rid, "lane": verdict.lane, "reasons": list(verdict.reasons),
        "authentication": verdict.auth_summary, "truncated_to_header": fetched.raw is None,
    }  # fmt: skip
    return data


def render(item_header, message, mailbox, folder: str, fetched, *, stored: list[dict], eml, json_path,
           auth_summary: str) -> str:  # fmt: skip
    """The spine's email item (spine_comms.mailroom.items): header block, who and what, the quoted body."""
    from spine_comms.mailroom.items import render_email_item

    return render_email_item(
        header=item_header,
        sender=_sender(message),
        subject=message.subject or "",
        received=utc_stamp(fetched.internaldate) or str(message.date_utc or ""),
        body=message.text or "",
        attachments=stored,
        message_ref={
            "message_id": message.message_id,
            "mailbox": f"{mailbox.address} {folder}",
            "uid": fetched.uid,
            "eml": str(eml),
            "json": str(json_path),
        },
        classification=_classification(message),
        auth_summary=auth_summary,
        hidden_html=message.hidden_html,
    )


def unprocessable(item_header, mailbox, folder: str, fetched, rid: str, reason: str) -> tuple[str, dict]:
    """(item text, .json) for a message the parser, the policy or the renderer choked on."""
    from spine_comms.mailroom.items import header_block, one_line

    lines = header_block(item_header, "Inspect an inbound email spine-comms could not process")
    lines += ["", "## Event: email_received", "",
              f"**Mailbox:** {one_line(mailbox.address)} {one_line(folder)}", f"**UID:** {fetched.uid}",
              f"**Size:** {fetched.size} bytes", f"**Run:** {rid}", ""]  # fmt: skip
    data = {"message_id": None, "problems": [reason], "spine_comms": {
        "mailbox": mailbox.id, "folder": folder, "uid": fetched.uid, "size": fetched.size, "run_id": rid,
        "lane": "parked", "reasons": [reason]}}  # fmt: skip
    return "\n".join(lines), data


def with_reasons(text: str, reasons: list[str]) -> str:
    """A parked item ends with why it was parked, for the person who decides."""
    from spine_comms.mailroom.items import one_line

    lines = ["", "## Parked by spine-comms", "", "Reasons (a person decides whether this goes to the queue):"]
    lines += [f"- {one_line(r, 600)}" for r in reasons]
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


_ADDRESS_LIKE = re.compile(r"[^\s<>@\"'(),;:]+@[^\s<>@\"'(),;:]+\.[^\s<>@\"'(),;:]+")


def _sender(message) -> str:
    senders = message.from_ or []
    if not senders:
        return ""
    first = senders[0]
    name, address = getattr(first, "name", "") or "", getattr(first, "address", "") or ""
    shown = f"{name} <{address}>" if name else address
    shown += f" (+{len(senders) - 1} more)" if len(senders) > 1 else ""
    # A display name that shows another address ("ceo@spine.test" <x@elsewhere>) is the oldest
    # disguise in mail: say which address really sent it.
    others = sorted({a for a in _ADDRESS_LIKE.findall(name) if a.lower() != address.lower()})
    if others:
        shown += f" [the name shows {', '.join(others[:3])}, but the address is {address or 'none'}]"
    return shown


def _classification(message) -> str:
    found = getattr(message, "classification", None)
    if found is None:
        return "normal"
    kind = getattr(found, "kind", None) or "normal"
    details = getattr(found, "details", None) or {}
    if isinstance(details, dict) and details:
        shown = ", ".join(f"{k} {v}" for k, v in list(details.items())[:4] if v not in (None, "", [], {}))
        return f"{kind} ({shown})" if shown else kind
    return kind
