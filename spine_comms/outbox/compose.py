"""The message a send submits: headers checked, Date and Message-ID always set, MIME built.

Every header value is refused if it holds CR, LF or another control character (header
injection), as given AND as the mail library will read it: email.policy decodes RFC 2047
encoded words (`=?utf-8?q?x=0D=0ABcc:...?=`) into the characters they stand for, and would
write those out as real line breaks. Message-ids (In-Reply-To, References: from a received
message) must be plain RFC 5322 msg-ids that no decoding changes. The built message is read
back, and any header it did not set refuses the send. Folding is the library's (email.policy),
never done here. All of this runs before anything is written or sent. Bcc recipients go in
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
from spine_comms.mail.reply_forward import MAX_REFERENCES, references_for

DRAFT_HEADER = "X-Spine-Draft-Id"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")  # TAB is legal in a header value
# dot-atom-text "@" (dot-atom-text / no-fold-literal), in angle brackets: the msg-id of RFC 5322 §3.6.4.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MSG_ID = re.compile(rf"<{_ATEXT}(?:\.{_ATEXT})*@(?:{_ATEXT}(?:\.{_ATEXT})*|\[[\x21-\x5a\x5e-\x7e]*\])>\Z")
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
    forwarded: bytes | None = None  # a forwarded message, attached whole as message/rfc822
    draft_id: str | None = None  # a draft for approval (outbox/draft.py): found again in Drafts by this header
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
    """The value, if neither it nor what the mail library decodes it to holds a control character."""
    if _CONTROL.search(value):
        raise UsageError(f"{name}: a control character (CR or LF?) in the value: refused (header injection); "
                         "nothing was sent")  # fmt: skip
    decoded = _as_read(name, value)
    if _CONTROL.search(decoded):
        raise UsageError(f"{name}: an RFC 2047 encoded word in the value decodes to a control character (CR or "
                         "LF?): refused (header injection); nothing was sent")  # fmt: skip
    return value


def check_message_id(name: str, value: str) -> str:
    """A msg-id (RFC 5322 §3.6.4) written exactly as received: no encoded word, nothing the library would change."""
    check_header(name, value)
    if not _MSG_ID.match(value) or _as_read(name, value) != value:
        raise UsageError(f"{name}: {value[:80]!r} is not a plain message id (<left@right>): refused; nothing was sent")
    return value


def _as_read(name: str, value: str) -> str:
    """What email.policy makes of a header value: encoded words decoded, as it would write them out."""
    try:
        return str(SMTP.header_factory(name.lstrip("-").replace("-", " ").title().replace(" ", "-"), value))
    except Exception:  # a value the parser chokes on is not a header we write
        raise UsageError(f"{name}: the value cannot be read as a mail header: refused") from None


def idempotency_key(draft: Draft) -> str:
    material = {
        "from": draft.sender.lower(),
        "to": sorted(a.lower() for a in draft.to), "cc": sorted(a.lower() for a in draft.cc),
        "bcc": sorted(a.lower() for a in draft.bcc), "subject": draft.subject, "text": draft.text,
        "html": draft.html, "attachments": [[n, hashlib.sha256(d).hexdigest()] for n, _, d in draft.attachments],
        "in_reply_to": draft.in_reply_to,
    }  # fmt: skip
    if draft.forwarded is not None:  # only then: the keys of plain sends stay what they were
        material["forwarded"] = hashlib.sha256(draft.forwarded).hexdigest()
        material["references"] = draft.references
    return "auto-" + hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def new_message_id(domain: str, now: datetime) -> str:
    return f"<{now:%Y%m%d%H%M%S}.{secrets.token_hex(10)}@{domain}>"


def build(draft: Draft, *, message_id: str, now: datetime, bcc_header: bool = False) -> bytes:
    """The message as submitted, CRLF line ends (email.policy.SMTP). With bcc_header (a draft kept in the
    Drafts folder, as mail clients keep them) the Bcc recipients are written too; a send never writes them."""
    check_header("Subject", draft.subject)
    check_header("X-Spine-Agent", draft.agent)
    check_message_id("Message-ID", message_id)
    if draft.in_reply_to:
        check_message_id("In-Reply-To", draft.in_reply_to)
    # References come from a received message: one that is not a plain msg-id is left out, not sent on.
    references = [r for r in draft.references if _is_plain_message_id(r)]
    msg = EmailMessage(policy=SMTP)
    msg["From"] = draft.sender
    msg["To"] = ", ".join(draft.to)
    if draft.cc:
        msg["Cc"] = ", ".join(draft.cc)
    if draft.bcc and bcc_header:
        msg["Bcc"] = ", ".join(draft.bcc)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
        references = references_for(draft.in_reply_to, references, None)
    if references:  # a reply's chain, or a forward's (which threads in the sender's client, with no In-Reply-To)
        msg["References"] = " ".join(references[:MAX_REFERENCES])
    msg["X-Spine-Agent"] = draft.agent
    if draft.draft_id is not None:
        msg[DRAFT_HEADER] = check_header(DRAFT_HEADER, draft.draft_id)
    msg.set_content(draft.text if draft.text.endswith("\n") else draft.text + "\n")
    if draft.html is not None:
        msg.add_alternative(draft.html, subtype="html")
    for name, mime, data in draft.attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    if draft.forwarded is not None:
        from email.parser import BytesParser

        msg.add_attachment(BytesParser(policy=SMTP).parsebytes(draft.forwarded), filename="forwarded-message.eml")
    raw = msg.as_bytes()
    _read_back(msg, raw)
    return raw


def _is_plain_message_id(value: str) -> bool:
    try:
        check_message_id("References", value)
    except UsageError:
        return False
    return True


def _read_back(msg: EmailMessage, raw: bytes) -> None:
    """Parse what will be sent: the same header fields, in the same order, in every part, or no send.

    The last line of defence against a value the checks above missed: whatever a header value
    holds, it can only ever be written as the header it was set as."""
    from email.parser import BytesParser

    sent = BytesParser(policy=SMTP).parsebytes(raw)
    made_parts, sent_parts = list(msg.walk()), list(sent.walk())
    if len(made_parts) != len(sent_parts):
        raise UsageError("the built message has another MIME structure than was made: refused (header injection)")
    for made, read in zip(made_parts, sent_parts, strict=True):
        made_names, read_names = [k for k, _ in made.items()], [k for k, _ in read.items()]
        if [k.lower() for k in made_names] != [k.lower() for k in read_names]:
            extra = sorted(set(read_names) - set(made_names))
            raise UsageError(f"the built message carries header(s) that were not set ({', '.join(extra) or 'order'}): "
                             "refused (header injection); nothing was sent")  # fmt: skip
        for name, value in read.items():
            if _CONTROL.search(str(value)):
                raise UsageError(f"{name}: decodes to a control character: refused (header injection)")


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
