"""What a reply, a reply-all or a forward of a received message is: subject, threading, recipients, quote.

Pure functions over a parsed message (mail/message.py); the outbox fetches the message and
builds what is sent. Threading follows RFC 5322 §3.6.4: In-Reply-To is the parent's
Message-ID; References is the parent's References (or, lacking them, its single In-Reply-To)
followed by the parent's Message-ID. Subjects get one `Re: ` / `Fwd: ` (never `Re: Re: `):
the prefixes already there, in English and in the forms other clients write (AW:, SV:, WG:,
RE[2]: ...), are folded into one. Recipients (RFC 5322 §3.6.3): a reply goes to Reply-To when
the parent has one, else to From; a reply to a message we sent ourselves goes to its To again
(as mail clients do); a reply-all adds the parent's To and Cc as Cc. Our own address is never
a recipient and an address appears once (compared without case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_REPLY = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw|odp)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.IGNORECASE)
_FORWARD = re.compile(r"^\s*(?:(?:fwd?|wg|tr|vb)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.IGNORECASE)
MAX_REFERENCES = 20  # the first id (the thread's root) and the latest ones; enough for any client to thread
FORWARD_SEPARATOR = "---------- Forwarded message ---------"


def _one_line(subject: str) -> str:
    return " ".join((subject or "").split())


def reply_subject(subject: str) -> str:
    """`Re: ` and the subject without the reply prefixes it had: `RE: Re: AW: x` -> `Re: x`."""
    rest = _REPLY.sub("", _one_line(subject))
    return f"Re: {rest}" if rest else "Re:"


def forward_subject(subject: str) -> str:
    """`Fwd: ` and the subject without the forward prefixes it had: `FW: x` -> `Fwd: x`; `Re: x` -> `Fwd: Re: x`."""
    rest = _FORWARD.sub("", _one_line(subject))
    return f"Fwd: {rest}" if rest else "Fwd:"


def references_for(message_id: str, references: list[str], in_reply_to: str | None) -> list[str]:
    """The References of a reply to a message with these ids (RFC 5322 §3.6.4), at most MAX_REFERENCES:
    the thread's first id is kept, then the latest ones, so the reply still threads under its root."""
    chain = list(references) or ([in_reply_to] if in_reply_to and " " not in in_reply_to.strip() else [])
    chain = [i for i in dict.fromkeys([*chain, message_id]) if i]
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


@dataclass
class Recipients:
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # ourselves and duplicates, for the plan to show


def _addresses(people) -> list[str]:
    return [p.address for p in people if getattr(p, "address", "")]


def reply_recipients(parent, own: set[str], *, reply_all: bool) -> Recipients:
    """To and Cc of a reply to `parent` (a NormalizedMessage) sent as one of the addresses in `own`."""
    own_l = {a.lower() for a in own}
    author = _addresses(parent.reply_to) or _addresses(parent.from_)
    if author and all(a.lower() in own_l for a in _addresses(parent.from_)) and not _addresses(parent.reply_to):
        author = _addresses(parent.to)  # our own message: its recipients again, not ourselves
    others = [*_addresses(parent.to), *_addresses(parent.cc)] if reply_all else []
    out, seen = Recipients(), set()
    for group, addresses in (("to", author), ("cc", others)):
        for address in addresses:
            key = address.lower()
            if key in own_l or key in seen:
                out.left_out.append(address)
                continue
            seen.add(key)
            getattr(out, group).append(address)
    return out


def _who(people) -> str:
    return ", ".join(f"{p.name} <{p.address}>" if p.name else p.address for p in people)


def quote_reply(parent, text: str) -> str:
    """The attribution line and the parent's text, each line behind `> ` (text as the mailroom cleans it)."""
    who = _who(parent.from_[:1]) or "someone"
    when = parent.date_utc or "an unknown date"
    lines = [f"> {line}" if line else ">" for line in text.splitlines()]
    return f"On {when}, {who} wrote:\n" + "\n".join(lines) + "\n"


def forward_header(parent) -> str:
    """The block above an inline-forwarded message: who wrote it, when, to whom, about what."""
    rows = [("From", _who(parent.from_)), ("Date", parent.date_utc or ""), ("Subject", _one_line(parent.subject)),
            ("To", _who(parent.to)), ("Cc", _who(parent.cc))]  # fmt: skip
    return FORWARD_SEPARATOR + "\n" + "".join(f"{k}: {v}\n" for k, v in rows if v) + "\n"
