"""IMAP writes for drafts, on an open `ImapSession`: find a special-use folder, APPEND, remove by UID.

A special-use folder (RFC 6154: \\Drafts, \\Sent ...) is found by its attribute in LIST, then by
the names clients use (imapclient's find_special_folder: "Drafts", "INBOX.Drafts" ...), and
created under `fallback` when there is none. APPEND returns the new UID where the server has
UIDPLUS (RFC 4315 APPENDUID). Removal flags \\Deleted and expunges exactly those UIDs with UID
EXPUNGE (UIDPLUS); without UIDPLUS it leaves them flagged \\Deleted, because a plain EXPUNGE
would also remove what the owner marked.
"""

from __future__ import annotations

import re
from datetime import datetime

from spine_comms.protocols.imap import ImapError, ImapSession, _text

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


def special_folder(session: ImapSession, flag: bytes, fallback: str) -> tuple[str, str]:
    """The folder with attribute `flag` (b"\\\\Drafts"), and how it was found: special-use, name or created."""
    try:
        listed = [f for f in session.client.list_folders() if flag in (f[0] or ())]
        if listed:
            return listed[0][2], "special-use"
        found = session.client.find_special_folder(flag)
        if found:
            return found, "name"
        session.client.create_folder(fallback)
    except session._errors() as exc:
        raise ImapError("select", f"finding or creating the {flag.decode()} folder failed: {_text(exc)}") from None
    return fallback, "created"


def append(session: ImapSession, folder: str, raw: bytes, flags: tuple[bytes, ...], when: datetime) -> int | None:
    """APPEND `raw` to `folder` with `flags`; the new UID when the server says it (UIDPLUS), else None."""
    try:
        answer = session.client.append(folder, raw, flags=flags, msg_time=when)
    except session._errors() as exc:
        raise ImapError("store", f"APPEND to {folder} failed: {_text(exc)}") from None
    found = _APPENDUID.search(answer if isinstance(answer, bytes) else str(answer).encode())
    return int(found.group(2)) if found else None


def remove(session: ImapSession, uids: list[int]) -> str:
    """Flag `uids` of the selected (writable) folder \\Deleted and expunge exactly them where UIDPLUS allows."""
    if not uids:
        return "nothing"
    try:
        session.client.add_flags(uids, [b"\\Deleted"], silent=True)
        if session.has("UIDPLUS"):
            session.client.uid_expunge(uids)
            return "expunged"
    except session._errors() as exc:
        raise ImapError("store", f"removing UIDs {uids} failed: {_text(exc)}") from None
    return "flagged-deleted"
