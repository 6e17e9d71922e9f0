"""The received message a reply, reply-all or forward refers to, read from the sending mailbox over IMAP.

Referenced as an agent sees it in communications.mail.search or thread.show: by Message-ID
(`<id@host>` or `id@host`) or by UID, in one folder (INBOX unless told otherwise) of the
mailbox that sends. The folder is opened read-only and fetched with BODY.PEEK, so referring
to a message never marks it read. A Message-ID search is a substring match on the server,
so what it finds is compared exactly before use; when different messages carry the id (one may
be forged to steer the answer to its Reply-To), the reference is refused and a UID asked for
(copies of one message, a double delivery, are fine: the newest is used). The message must fit
limits.max_message_bytes: a forward carries it whole. Its ids are checked as plain msg-ids
before they are written into a header (outbox.compose).
"""

from __future__ import annotations

from dataclasses import dataclass

from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError


@dataclass
class Original:
    raw: bytes
    folder: str
    uid: int
    mailbox: str


def _uid(reference: str) -> int | None:
    text = reference.strip()
    return int(text) if text.isdigit() and 0 < int(text) < 2**32 else None


def imap_target(ctx: RunContext, settings, box):
    """The sending mailbox over IMAP (the stack contract's IMAPS or IMAP port; its password, redacted)."""
    from spine_comms.endpoints.mailbox import mailbox_password
    from spine_comms.protocols.imap import ImapTarget

    end = settings.imap(box, ctx.env)
    password = mailbox_password(ctx, end, box.id)
    return ImapTarget(end.host, end.port, end.security, end.server_name, end.ca_file, end.login, password.value,
                      end.timeout)  # fmt: skip


def fetch_original(ctx: RunContext, settings, box, reference: str, folder: str, option: str) -> Original:
    """The message `reference` (a Message-ID or a UID) in `folder` of `box`; a usage error when there is none."""
    from spine_comms.core.outcomes import could_not_evaluate
    from spine_comms.protocols.imap import ImapError, session

    uid = _uid(reference)
    wanted = _message_id(reference, option) if uid is None else None
    limit = settings.outbox.limits.max_message_bytes
    target = imap_target(ctx, settings, box)
    try:
        with session(target) as imap:
            try:
                imap.open(folder)
            except ImapError as exc:
                hint = "give the folder with --original-folder (names are case-sensitive)"
                missing = f"{option}: {box.address} has no folder {folder!r} ({exc.message})"
                raise UsageError(missing, hint=hint) from None
            found = _find(imap, uid, wanted)
            if found is None:
                what = f"UID {uid}" if uid is not None else f"<{wanted}>"
                raise UsageError(f"{option}: no message {what} in {box.address} {folder}",
                                 hint="take the Message-ID or UID from communications.mail.search")  # fmt: skip
            meta = imap.fetch_meta([found]).get(found)
            if meta is not None and meta.size > limit:
                raise UsageError(f"{option}: the message is {meta.size} bytes, over limits.max_message_bytes ({limit})")
            raw = imap.fetch_raw([found]).get(found)
    except ImapError as exc:
        raise could_not_evaluate(exc, f"IMAP {target.host}:{target.port} as {target.login}: {exc.message}") from None
    if raw is None:
        raise UsageError(f"{option}: the message went away while it was read (expunged?); nothing was sent")
    return Original(raw, folder, found, box.address)


def _message_id(reference: str, option: str) -> str:
    from spine_comms.outbox.store import normalize_message_id

    wanted = normalize_message_id(reference)
    if not wanted or "@" not in wanted or any(c in wanted for c in "\r\n\x00<> \t"):
        raise UsageError(f"{option} {reference[:80]!r}: give a Message-ID (<id@host>) or a UID")
    return wanted


def _find(imap, uid: int | None, wanted: str | None) -> int | None:
    from spine_comms.mail.message import parse_message
    from spine_comms.outbox.store import normalize_message_id
    from spine_comms.protocols.imap_search import search

    if uid is not None:
        return uid if search(imap, ["UID", str(uid)]) else None
    candidates = search(imap, ["HEADER", "Message-ID", wanted])
    heads = imap.fetch_headers(candidates)
    matches: dict[int, tuple] = {}
    for found in heads:
        parsed = parse_message(heads[found], max_attachments=0, max_attachment_bytes=0, max_text_bytes=1024)
        if normalize_message_id(parsed.message_id) == wanted:
            matches[found] = _who_and_what(parsed)
    if len(set(matches.values())) > 1:
        # One id, different senders or recipients: a forged message reusing a real one's id would
        # otherwise decide where the answer goes (its Reply-To) and what it quotes.
        uids = ", ".join(str(u) for u in sorted(matches))
        raise UsageError(
            f"<{wanted}> is carried by {len(matches)} different messages (UIDs {uids}); one may be forged",
            hint="refer to the one you mean by its UID (communications.mail.search shows it)",
        )
    return max(matches, default=None)  # the newest copy, if one message was delivered twice


def _who_and_what(parsed) -> tuple:
    """What a reply takes from the message: who it is from and to, its Reply-To, subject and date."""
    people = lambda found: tuple(sorted(a.address.lower() for a in found))  # noqa: E731
    return (people(parsed.from_), people(parsed.reply_to), people(parsed.to), people(parsed.cc),
            parsed.subject or "", parsed.date_utc or "")  # fmt: skip
