"""How an event write ended when it did not simply work: failures, conflicts with both versions, raw text made safe."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from spine_comms.calendar.event_store import current
from spine_comms.core.result import Check, Result, Status

if TYPE_CHECKING:
    from spine_comms.calendar.event_store import CalendarTarget


def printable(body: bytes) -> str:
    """The raw iCalendar for people and agents: no control characters, and no line of dashes
    (the spine's readers cut stdout at one)."""
    from spine_comms.calendar.ical_read import CONTROL

    text = CONTROL.sub("", body.decode("utf-8", "replace").replace("\r\n", "\n"))
    return re.sub(r"(?m)^(-{8,})$", r" \1", text)


def refused(exc) -> str:
    from spine_comms.protocols.dav.xmlwire import error_conditions

    conditions = error_conditions(getattr(exc, "body", b"") or b"") if exc.status in (403, 409, 412, 507) else []
    named = f" ({', '.join(c.split('}')[-1] for c in conditions)})" if conditions else ""
    return f"the server refused: {exc.message}{named}"


def missing(uid: str, target: CalendarTarget) -> str:
    if target.too_large:
        # Not "no event": the one asked for may be among those too large to read.
        return f"no readable event with UID {uid!r} in {target.describe()}; " + too_large_detail(target)
    return f"no event with UID {uid!r} in {target.describe()}"


def too_large_detail(target: CalendarTarget) -> str:
    entries = target.too_large
    names = ", ".join(f"{e['href']} ({e['bytes'] or 'over ' + str(e['limit'])} bytes)" for e in entries[:5])
    more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
    return f"{len(entries)} event(s) over the size limit not read (limit {entries[0]['limit']} bytes): {names}{more}"


def failed(result: Result, check_id: str, subject: str, detail: str, *, hint: str | None = None) -> Result:
    result.add(Check(id=check_id, status=Status.FAIL, detail=detail, subject=subject))
    result.summary.append(detail)
    if hint:
        result.summary.append(f"hint: {hint}")
    return result


def conflict_of(uid, href, expected_etag, current_etag, ours: bytes | None, theirs: bytes | None, *, deleting=False):
    from spine_comms.calendar.ical_read import find_event, summary_line

    unread = "(the version with that ETag; its content was not read)"
    ours_line = summary_line(find_event(ours, uid)) if ours else unread
    return {
        "uid": uid,
        "href": href,
        "expected_etag": expected_etag,
        "current_etag": current_etag,
        "ours": ("delete: " if deleting else "") + ours_line,
        "theirs": summary_line(find_event(theirs, uid)) if theirs else "(gone: no event there now)",
    }


def conflicted(result, target, check_id, uid, href, if_match, ours, exc, *, deleting=False) -> Result:
    theirs, theirs_etag = (exc.current, exc.current_etag) if exc.current else current(target, href)
    conflict = conflict_of(uid, href, if_match, theirs_etag, ours, theirs, deleting=deleting)
    result.data["conflict"] = conflict
    result.add(
        Check(
            id=f"{check_id}",
            status=Status.FAIL,
            detail=f"conflict: the event changed since ETag {if_match}; nothing was written",
            subject=href,
            expected=if_match,
            actual=theirs_etag,
            evidence=conflict,
        )
    )
    result.summary += [f"conflict on {uid}: the server's version is not the one expected ({if_match})",
                       f"  ours:   {conflict['ours']}", f"  theirs: {conflict['theirs']}",
                       "hint: read it again (calendar.event.get), then update with --etag of that version"]  # fmt: skip
    return result
