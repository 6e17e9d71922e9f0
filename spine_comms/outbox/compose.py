"""The message a send submits: headers checked, Date and Message-ID always set, MIME built.

Every header value is refused if it holds CR, LF or another control character (header
injection); that check runs before anything is written or sent. Bcc recipients go in
the envelope only. The idempotency key, unless given, is a hash of the sender, the
recipients (sorted, lower-cased), the subject, the text and HTML bodies and the
attachments' contents: the same mail twice is one send.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

from spine_comms.core.errors import UsageError

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")  # TAB is legal in a header value
_ADDRESS = re.compile(r"^[^@\s<>,;\"()\[\]\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")


@dataclass
class Draft:
    sender: str
    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (name, mime type, bytes)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    agent: str = "communications.mail.send"

    @property
    def recipients(self) -> list[str]:
        seen: dict[str, str] = {}
        for address in [*self.to, *self.cc, *self.bcc]:
            seen.setdefault(address.lower(), address)
        return list(seen.values())


def split_addresses(values: list[str] | None, what: str) -> list[str]:
    """`--to a@x --to b@x,c@x` -> [a@x, b@x, c@x]; each one checked as a bare address."""
    out = []
    for value in values or []:
        if _CONTROL.search(value):
            raise UsageError(f"{what}: a control character (CR or LF?) in {value!r}: refused (header injection)")
        for part in value.split(","):
            address = part.strip()
            if not address:
                continue
            if not _ADDRESS.match(address):
                raise UsageError(f"{what}: {address!r} is not a plain address (user@domain)")
            out.append(address)
    return out


def check_header(name: str, value: str) -> str:
    if _CONTROL.search(value):
        raise UsageError(f"{name}: a control character (CR or LF?) in the value: refused (header injection); "
                         "nothing was sent")  # fmt: skip
    return value


def idempotency_key(draft: Draft) -> str:
    material = {
        "from": draft.sender.lower(),
        "to": sorted(a.lower() for a in draft.to), "cc": sorted(a.lower() for a in draft.cc),
        "bcc": sorted(a.lower() for a in draft.bcc), "subject": draft.subject, "text": draft.text,
        "html": draft.html, "attachments": [[n, hashlib.sha256(d).hexdigest()] for n, _, d in draft.attachments],
        "in_reply_to": draft.in_reply_to,
    }  # fmt: skip
    return "auto-" + hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def new_message_id(domain: str, now: datetime) -> str:
    return f"<{now:%Y%m%d%H%M%S}.{secrets.token_hex(10)}@{domain}>"


def build(draft: Draft, *, message_id: str, now: datetime) -> bytes:
    """The message as submitted, CRLF line ends (email.policy.SMTP)."""
    check_header("Subject", draft.subject)
    for header in (draft.in_reply_to or "", *draft.references):
        check_header("In-Reply-To/References", header)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = draft.sender
    msg["To"] = ", ".join(draft.to)
    if draft.cc:
        msg["Cc"] = ", ".join(draft.cc)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
        msg["References"] = " ".join([*draft.references, draft.in_reply_to][-20:])
    msg["X-Spine-Agent"] = draft.agent
    msg.set_content(draft.text if draft.text.endswith("\n") else draft.text + "\n")
    if draft.html is not None:
        msg.add_alternative(draft.html, subtype="html")
    for name, mime, data in draft.attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def read_attachment(path: str, limit: int) -> tuple[str, str, bytes]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"--attach: {path} is not a readable file")
    size = file.stat().st_size
    if size > limit:
        raise UsageError(f"--attach: {path} is {size} bytes, over the limit of {limit} (limits.max_attachment_bytes)")
    mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if "/" not in mime:
        mime = "application/octet-stream"
    return check_header("attachment name", file.name), mime, file.read_bytes()


def preview_headers(raw: bytes) -> list[str]:
    """The header lines exactly as they will be sent (unfolded for display)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return re.sub(r"\r\n[ \t]+", " ", head).split("\r\n")
