"""Reply, reply-all and forward on a send: the options, and what they make of the draft.

`--reply`, `--reply-all` and `--forward` name a received message of the sending mailbox (a
Message-ID or a UID of --original-folder, as communications.mail.search shows them); the
message is read over IMAP (outbox/original.py) and mail/reply_forward.py says what the
answer is: threading headers, one `Re:`/`Fwd:`, recipients computed. A forward carries the
original whole as a message/rfc822 attachment (its own attachments inside it, untouched) or,
with --forward-as inline, its text below the new text and its attachments re-attached.
Whatever is computed goes through the same checks as what is typed: allowed domains,
header values, sizes. Shared by communications.mail.send and communications.mail.draft.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from spine_comms.core.errors import UsageError

REFERENCE = "MESSAGE-ID|UID"


class ForwardAs(StrEnum):
    attachment = "attachment"
    inline = "inline"


ReplyOpt = Annotated[str | None, typer.Option("--reply", metavar=REFERENCE, help="Reply to this received message "
                     "of the sending mailbox (its Message-ID, or its UID in --original-folder): To is its Reply-To "
                     "or From, the subject `Re: ...`, In-Reply-To and References set so it threads.")]  # fmt: skip
ReplyAllOpt = Annotated[str | None, typer.Option("--reply-all", metavar=REFERENCE, help="As --reply, and its To and "
                        "Cc (less the sending mailbox, each address once) are copied in Cc.")]  # fmt: skip
ForwardOpt = Annotated[str | None, typer.Option("--forward", metavar=REFERENCE, help="Forward this received "
                       "message to --to: subject `Fwd: ...`, with its attachments (see --forward-as).")]  # fmt: skip
OriginalFolderOpt = Annotated[str, typer.Option("--original-folder", metavar="FOLDER", help="The folder of the "
                              "message --reply, --reply-all or --forward names.")]  # fmt: skip
ForwardAsOpt = Annotated[ForwardAs, typer.Option("--forward-as", help="attachment: the whole "
                         "message as a message/rfc822 attachment; inline: its text below yours, its attachments "
                         "re-attached.")]  # fmt: skip
QuoteOpt = Annotated[bool, typer.Option("--quote", help="Below the text of a reply, quote the message replied to.")]


def chosen(in_reply_to: str | None, reply: str | None, reply_all: str | None, forward: str | None):
    """(kind, reference) of the one response option given, or None; two of them are a usage error."""
    given = [(k, v) for k, v in (("in-reply-to", in_reply_to), ("reply", reply), ("reply-all", reply_all),
                                 ("forward", forward)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise UsageError(
            f"give one of --in-reply-to, --reply, --reply-all, --forward (got {', '.join(k for k, _ in given)})"
        )
    return given[0] if given else None


def respond(ctx, settings, box, draft, kind: str, reference: str, *, folder: str, forward_as: ForwardAs,
            quote: bool, subject_given: bool) -> dict:  # fmt: skip
    """Fill `draft` (outbox.compose.Draft) as the reply or forward `kind` to `reference`; return the plan's view."""
    from spine_comms.mail.message import parse_message
    from spine_comms.mail.reply_forward import forward_subject, references_for, reply_subject
    from spine_comms.outbox.original import fetch_original

    option = f"--{kind}"
    limits = settings.outbox.limits
    original = fetch_original(ctx, settings, box, reference, folder, option)
    parent = parse_message(original.raw, max_attachment_bytes=limits.max_attachment_bytes, max_attachments=100)
    # A reply must thread under the message; a forward of one without a usable Message-ID just has no References.
    message_id = _plain_id(parent.message_id, option) if kind != "forward" else _plain_or_none(parent.message_id)
    parents = (_plain_ids(parent.references), _plain_or_none(parent.in_reply_to))
    chain = references_for(message_id, *parents) if message_id else []
    plan = {"kind": kind, "folder": folder, "uid": original.uid, "message_id": message_id,
            "subject": parent.subject, "from": [a.address for a in parent.from_]}  # fmt: skip
    if kind == "forward":
        if not draft.to:
            raise UsageError("--forward: give the recipients with --to")
        draft.subject = draft.subject if subject_given else forward_subject(parent.subject)
        draft.references = chain  # threads in the sender's own client; not a reply, so no In-Reply-To
        _forward(draft, original.raw, parent, forward_as, limits.max_attachment_bytes)
        plan["forward_as"] = forward_as.value
        return plan
    draft.subject = draft.subject if subject_given else reply_subject(parent.subject)
    draft.in_reply_to, draft.references = message_id, chain[:-1]
    plan["left_out"] = _recipients(draft, parent, box, reply_all=kind == "reply-all")
    if quote:
        from spine_comms.mail.reply_forward import quote_reply
        from spine_comms.mailroom.items import body_text

        draft.text = (draft.text.rstrip("\n") + "\n\n" if draft.text.strip() else "") + quote_reply(
            parent, body_text(parent.text or "")
        )
    return plan


def _recipients(draft, parent, box, *, reply_all: bool) -> list[str]:
    from spine_comms.mail.reply_forward import reply_recipients
    from spine_comms.outbox.compose import split_addresses

    own = {box.address} | ({box.login} if box.login and "@" in box.login else set())
    computed = reply_recipients(parent, own, reply_all=reply_all)
    to = split_addresses(computed.to, "the address replied to")
    cc = split_addresses(computed.cc, "a recipient of the message replied to")
    taken = {a.lower() for a in to}
    draft.to = to + [a for a in draft.to if a.lower() not in taken]
    taken |= {a.lower() for a in draft.to}
    draft.cc = [a for a in [*cc, *draft.cc] if a.lower() not in taken and not taken.add(a.lower())]
    if not draft.to:
        draft.to, draft.cc = draft.cc[:1], draft.cc[1:]
    if not draft.to:
        raise UsageError(f"--reply: nobody to reply to (the message's only addresses are {box.address}'s); give --to")
    return computed.left_out


def _forward(draft, raw: bytes, parent, forward_as: ForwardAs, max_attachment: int) -> None:
    from spine_comms.mail.reply_forward import forward_header
    from spine_comms.mailroom.items import body_text

    if forward_as is ForwardAs.attachment:
        draft.forwarded = raw
        return
    if parent.skipped_attachments:
        names = ", ".join(f"{s['name']} ({s['reason']})" for s in parent.skipped_attachments)
        raise UsageError(f"--forward-as inline: attachment(s) that cannot be re-attached: {names}; nothing was sent",
                         hint="forward with --forward-as attachment, which carries the message whole")  # fmt: skip
    lead = draft.text.rstrip("\n") + "\n\n" if draft.text.strip() else ""
    draft.text = lead + forward_header(parent) + body_text(parent.text or "") + "\n"
    for attachment in parent.attachments:
        if attachment.size > max_attachment:
            raise UsageError(
                f"--forward: {attachment.filename} is {attachment.size} bytes, over limits.max_attachment_bytes"
            )
        draft.attachments.append((attachment.filename, attachment.content_type, attachment.payload))


def _plain_id(value: str, option: str) -> str:
    found = _plain_or_none(value)
    if found is None:
        raise UsageError(f"{option}: the message has no usable Message-ID ({value[:80]!r}) to thread under",
                         hint="send it with --to and --subject instead")  # fmt: skip
    return found


def _plain_or_none(value: str | None) -> str | None:
    from spine_comms.outbox.compose import check_message_id

    if not value:
        return None
    try:
        return check_message_id("In-Reply-To", value.strip())
    except UsageError:
        return None


def _plain_ids(values: list[str]) -> list[str]:
    return [v for v in (_plain_or_none(x) for x in values) if v]
