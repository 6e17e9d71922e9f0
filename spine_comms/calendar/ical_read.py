"""Reading events from servers: tolerant, never raising, safe to print.

Server data is untrusted: whatever the bytes are, these functions return what they could make
out (and a problem, when there is one) instead of raising. Control characters are removed from
text before it reaches a terminal or a receipt, and local RRULE expansion is capped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

MAX_PARSE_BYTES = 8 * 1024 * 1024  # bigger server data is not parsed at all
MAX_INSTANCES = 1000  # local RRULE expansion stops here (FREQ=SECONDLY exists)
SUMMARY_LINE_TEXT = 80  # characters of a summary shown in a one-line summary
# C0 and C1 controls except tab and newline: terminal escapes, NULs, bare CRs.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass
class EventView:
    """An event as read from a server, JSON-friendly. Times are ISO-8601 strings."""

    uid: str
    summary: str
    start: str | None
    end: str | None
    all_day: bool
    tz: str | None = None
    rrule: str | None = None
    description: str | None = None
    location: str | None = None
    attendees: list[dict[str, str | None]] = field(default_factory=list)
    recurrence_id: str | None = None
    sequence: int | None = None
    overrides: int = 0  # VEVENTs with a RECURRENCE-ID beside the master in the same resource

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean_text(value: str) -> str:
    """Text without control characters; CRLF and CR become newlines (which icalendar escapes)."""
    return CONTROL.sub("", str(value).replace("\r\n", "\n").replace("\r", "\n"))


# ---- reading server data (never raises) ------------------------------------------------------------


def parse_calendar(data: bytes | str | None):
    """(icalendar Calendar or None, problem or None), whatever the bytes are."""
    from icalendar import Calendar

    if not data:
        return None, "empty calendar data"
    if len(data) > MAX_PARSE_BYTES:
        return None, f"calendar data of {len(data)} bytes is over the {MAX_PARSE_BYTES}-byte limit"
    try:
        cal = Calendar.from_ical(data)
    except Exception as exc:
        return None, f"calendar data does not parse: {one_line(str(exc), 120)}"
    if getattr(cal, "name", None) != "VCALENDAR":
        return None, "calendar data is not a VCALENDAR"
    return cal, None


def read_events(data: bytes | str | None) -> tuple[list[EventView], str | None]:
    """Each event in a resource: the master VEVENT (overridden instances counted on it), or every
    VEVENT when instances come alone (a server's expansion). Never raises."""
    cal, problem = parse_calendar(data)
    if cal is None:
        return [], problem
    try:
        events = [c for c in cal.walk("VEVENT")]
    except Exception as exc:
        return [], f"calendar data does not walk: {one_line(str(exc), 120)}"
    masters = [c for c in events if c.get("recurrence-id") is None]
    views = []
    for component in masters or events:
        view = view_of(component)
        if masters:
            overrides = [c for c in events if c.get("recurrence-id") is not None]
            view.overrides = sum(1 for c in overrides if _text(c.get("uid")) == view.uid)
        views.append(view)
    return views, None


def read_instances(data: bytes | str | None) -> tuple[list[EventView], str | None]:
    """Every VEVENT of a server's expanded answer as it stands (RFC 4791 9.6.5: one per instance,
    no RRULE or RDATE left). Never raises."""
    cal, problem = parse_calendar(data)
    if cal is None:
        return [], problem
    try:
        events = list(cal.walk("VEVENT"))
    except Exception as exc:
        return [], f"calendar data does not walk: {one_line(str(exc), 120)}"
    if any(c.get("rrule") is not None or c.get("rdate") is not None for c in events):
        return [], "not expanded: the answer still has RRULE or RDATE"
    lost = _undefined_zone(cal, events)
    if lost:
        return [], f"times in zone {one_line(lost, 64)} without its VTIMEZONE: the offset is lost"
    return [view_of(c) for c in events], None


def _undefined_zone(cal, events) -> str | None:
    """A TZID the answer uses but neither defines (VTIMEZONE) nor names from the IANA database.
    (icalendar remembers zones it has seen, so such times may still parse here: they must not count.)"""
    defined = {str(z.get("tzid")) for z in cal.walk("VTIMEZONE")}
    for component in events:
        for name in ("dtstart", "dtend", "recurrence-id"):
            prop = component.get(name)
            tzid = getattr(prop, "params", {}).get("TZID") if prop is not None else None
            if tzid and tzid not in defined and tzid not in _iana_zones():
                return str(tzid)
    return None


@functools.cache
def _iana_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def find_event(data: bytes | str | None, uid: str) -> EventView | None:
    events, _ = read_events(data)
    return next((e for e in events if e.uid == uid), None)


def is_recurring(data: bytes | str | None) -> bool:
    cal, _ = parse_calendar(data)
    try:
        events = cal.walk("VEVENT") if cal is not None else []
        return any(c.get("rrule") is not None or c.get("rdate") is not None for c in events)
    except Exception:
        return False


def expand(data: bytes | str | None, start: datetime, end: datetime, *, limit: int = MAX_INSTANCES):
    """(instances between start and end, truncated, problem) by local RRULE expansion. Never raises."""
    import recurring_ical_events

    cal, problem = parse_calendar(data)
    if cal is None:
        return [], False, problem
    out: list[EventView] = []
    try:
        for occurrence in recurring_ical_events.of(cal).after(start):
            occ_start, _ = start_end(occurrence)
            if occ_start is not None and _as_utc(occ_start) >= end:
                break
            if len(out) >= limit:
                return out, True, None
            view = view_of(occurrence)
            if view.recurrence_id is None and view.start and occurrence.get("rrule") is not None:
                view.recurrence_id = view.start
            view.rrule = None if view.recurrence_id else view.rrule
            out.append(view)
    except Exception as exc:
        return out, False, f"recurrence expansion stopped: {one_line(str(exc), 120)}"
    return out, False, None


def view_of(component) -> EventView:
    """One VEVENT as an EventView; fields that do not read are left empty."""
    start, end = start_end(component)
    all_day = start is not None and not isinstance(start, datetime)
    tz = None
    try:
        tzid = component.get("dtstart").params.get("TZID")
        tz = clean_text(tzid)[:64] if tzid else None
    except Exception:
        pass
    rrule = None
    try:
        raw = component.get("rrule")
        rrule = clean_text(raw.to_ical().decode()) if raw is not None else None
    except Exception:
        rrule = None
    recurrence_id = None
    try:
        rid = component.get("recurrence-id")
        recurrence_id = _iso(rid.dt) if rid is not None else None
    except Exception:
        pass
    return EventView(
        uid=_text(component.get("uid")),
        summary=_text(component.get("summary")),
        start=_iso(start),
        end=_iso(end),
        all_day=all_day,
        tz=tz,
        rrule=rrule,
        description=_text(component.get("description")) or None,
        location=_text(component.get("location")) or None,
        attendees=_attendees(component),
        recurrence_id=recurrence_id,
        sequence=int_or_none(component.get("sequence")),
    )


def summary_line(view: EventView | None) -> str:
    """One line for conflicts and lists: "Standup" 2025-03-01T09:00+01:00 -> ... weekly @ Room 1."""
    if view is None:
        return "(no event)"
    text = one_line(view.summary, SUMMARY_LINE_TEXT) or "(no summary)"
    parts = [f'"{text}"', f"{view.start or '?'} -> {view.end or '?'}"]
    if view.all_day:
        parts.append("all-day")
    if view.rrule:
        parts.append(f"RRULE:{one_line(view.rrule, 60)}")
    if view.location:
        parts.append(f"@ {one_line(view.location, 40)}")
    if view.attendees:
        parts.append(f"{len(view.attendees)} attendee(s)")
    if view.sequence is not None:
        parts.append(f"seq {view.sequence}")
    return " ".join(parts)


def start_end(component) -> tuple[date | datetime | None, date | datetime | None]:
    start = end = None
    try:
        start = component.get("dtstart").dt
        if not isinstance(start, date):
            start = None
    except Exception:
        start = None
    try:
        raw_end = component.get("dtend")
        if raw_end is not None and isinstance(raw_end.dt, date):
            end = raw_end.dt
        elif component.get("duration") is not None and start is not None:
            end = start + component.get("duration").dt
        elif start is not None and not isinstance(start, datetime):
            end = start + timedelta(days=1)  # RFC 5545 3.6.1: a DATE start without an end lasts one day
    except Exception:
        end = None
    return start, end


def _attendees(component) -> list[dict[str, str | None]]:
    try:
        raw = component.get("attendee")
        values = raw if isinstance(raw, list) else ([raw] if raw is not None else [])
        people = []
        for value in values[:500]:
            address = one_line(str(value), 320)
            if address.lower().startswith("mailto:"):
                address = address[7:]
            name = getattr(value, "params", {}).get("CN")
            people.append({"email": address, "name": one_line(str(name), 200) if name else None})
        return people
    except Exception:
        return []


def _text(value) -> str:
    if value is None:
        return ""
    try:
        if isinstance(value, list):  # a property given twice: the first one
            value = value[0]
        return clean_text(str(value))
    except Exception:
        return ""


def int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except Exception:
        return None


def _iso(value) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return None


def _as_utc(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def one_line(text: str, limit: int) -> str:
    flat = " ".join(clean_text(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
