"""IMAP SEARCH with arbitrary criteria (RFC 3501 §6.4.4) and FLAGS, on an open `ImapSession`.

Kept beside protocols/imap.py rather than in it: the inbox pipeline needs only its fixed
searches; an agent's search builds criteria from user input. imapclient quotes every value
(or sends it as a literal), so a value can never become a search key; values with CR, LF or
NUL are refused before they get here (conversations/search.py).
"""

from __future__ import annotations

from spine_comms.protocols.imap import ImapError, ImapSession, _text


def search(session: ImapSession, criteria: list) -> list[int]:
    """UIDs matching `criteria` (imapclient's form: ["FROM", "a@b", "SINCE", date, "UNSEEN"]), ascending.

    CHARSET UTF-8 is sent only when a value is not ASCII: RFC 3501 servers must know US-ASCII,
    and UTF-8 is the one other charset Dovecot and Stalwart both take."""
    text = [c for c in criteria if isinstance(c, str)]
    charset = None if all(c.isascii() for c in text) else "UTF-8"
    try:
        return sorted(int(uid) for uid in session.client.search(criteria, charset=charset))
    except session._errors() as exc:
        raise ImapError("search", f"SEARCH failed: {_text(exc)}") from None


def fetch_flags(session: ImapSession, uids: list[int]) -> dict[int, list[str]]:
    """The flags of each UID, as the server spells them (\\Seen, \\Flagged, $Junk ...)."""
    if not uids:
        return {}
    try:
        fetched = session.client.fetch(uids, ["FLAGS"])
    except session._errors() as exc:
        raise ImapError("fetch", f"FETCH FLAGS failed: {_text(exc)}") from None
    return {
        int(uid): [f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f) for f in parts.get(b"FLAGS", ())]
        for uid, parts in fetched.items()
    }


def folder_exists(session: ImapSession, folder: str) -> bool:
    try:
        return bool(session.client.folder_exists(folder))
    except session._errors() as exc:
        raise ImapError("select", f"LIST {folder} failed: {_text(exc)}") from None
