"""VEVENTs we write: times, zones, RRULEs and attendees validated, then the iCalendar built or changed.

Library choice: icalendar, not vobject. python-caldav already depends on it (so it costs nothing),
it escapes TEXT values itself (a newline in a summary becomes the two characters "\\n", so text
cannot start a new property; control characters, which it passes through, are removed here first),
it writes VTIMEZONE components from IANA zone data (`add_missing_timezones`), and
recurring-ical-events (also pulled by python-caldav) expands RRULE, RDATE, EXDATE and overridden
instances over it. vobject stays for vCards (contacts).

Writing is strict: a bad time, zone, RRULE or address is a ValueError whose message the CLI shows
as a usage error. Reading what servers hold is tolerant and lives in ical_read.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

from spine_comms.calendar.ical_read import CONTROL, clean_text, int_or_none, one_line, start_end

PRODID = "-//spine-comms//calendar.event//EN"
MAX_EVENT_BYTES = 512 * 1024  # Stalwart's maxICalendarSize; Radicale and Xandikos take more, we stay portable
MAX_RRULE_CHARS = 1000
_ADDRESS = re.compile(r"^[^\s@<>\"(),;:\\\[\]]+@[^\s@<>\"(),;:\\\[\]]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str | None = None


@dataclass
class EventSpec:
    """A new event, already validated: what `build_calendar` writes."""

    uid: str
    summary: str
    start: date | datetime
    end: date | datetime
    rrule: str | None = None
    description: str | None = None
    location: str | None = None
    attendees: list[Attendee] = field(default_factory=list)


@dataclass
class Changes:
    """What an update changes; None leaves a field alone, "" (or []) removes it."""

    summary: str | None = None
    start: date | datetime | None = None
    end: date | datetime | None = None
    rrule: str | None = None
    description: str | None = None
    location: str | None = None
    attendees: list[Attendee] | None = None

    def empty(self) -> bool:
        return all(v is None for v in asdict(self).values())


class EventDataError(ValueError):
    """Server data that cannot be changed safely (unparseable, or without the event asked for)."""


# ---- input: times, zones, rules, people ---------------------------------------------------------


def load_zone(name: str):
    """An IANA zone by name; ValueError for anything else (including path tricks)."""
    from zoneinfo import ZoneInfo

    if not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", name or "") or len(name) > 64:
        raise ValueError(f"{name!r} is not an IANA time zone name (like Europe/Berlin or UTC)")
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, or a zone file that does not parse
        raise ValueError(f"unknown time zone {name!r} (IANA names, like Europe/Berlin or America/New_York)") from None


def parse_when(text: str, *, tz: str | None = None, all_day: bool = False) -> date | datetime:
    """A start or end: a date (an all-day event) or a time with an offset (or in `tz`).

    With `tz`, the time is written in that zone (TZID, so recurrences follow its daylight saving);
    without it, a time with an offset is written in UTC. A time without an offset needs `tz`.
    """
    text = (text or "").strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid date") from None
        return _in_range(day, text)
    if all_day:
        raise ValueError(f"{text!r}: an all-day event takes dates (YYYY-MM-DD), not times")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or time (like 2025-03-01 or 2025-03-01T09:00+01:00)"
        ) from None
    value = value.replace(microsecond=0)
    if tz:
        zone = load_zone(tz)
        value = value.astimezone(zone) if value.tzinfo else value.replace(tzinfo=zone)
    elif value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add one (+02:00, Z) or give --tz with an IANA zone")
    else:
        value = value.astimezone(UTC)
    return _in_range(value, text)


def _in_range(value: date | datetime, text: str) -> date | datetime:
    if not 1900 <= value.year <= 2999:
        raise ValueError(f"{text!r}: the year must be between 1900 and 2999")
    return value


def default_end(start: date | datetime) -> date | datetime:
    """One day for an all-day event (DTEND is exclusive), one hour otherwise."""
    return start + timedelta(days=1) if not isinstance(start, datetime) else start + timedelta(hours=1)


def check_span(start: date | datetime, end: date | datetime) -> None:
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise ValueError("start and end must both be dates (all-day) or both be times")
    if end <= start:
        exclusive = " (an all-day end is exclusive: a one-day event on D ends on D+1)"
        hint = exclusive if not isinstance(end, datetime) else ""
        raise ValueError(f"the end ({end.isoformat()}) must be after the start ({start.isoformat()}){hint}")


def validate_rrule(text: str, start: date | datetime) -> str:
    """The RRULE value in canonical form; ValueError naming what is wrong."""
    from dateutil.rrule import rrulestr
    from icalendar import vRecur

    rule = (text or "").strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[6:]
    if not rule or len(rule) > MAX_RRULE_CHARS or CONTROL.search(rule) or "\n" in rule:
        raise ValueError("an RRULE is one line of at most 1000 characters, like FREQ=WEEKLY;COUNT=4")
    try:
        recur = vRecur.from_ical(rule)
    except Exception:
        raise ValueError(f"RRULE {rule!r} does not parse (like FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10)") from None
    if "FREQ" not in recur:
        raise ValueError(f"RRULE {rule!r} has no FREQ")
    until = (recur.get("UNTIL") or [None])[0]
    if until is not None:
        # RFC 5545 3.3.10: UNTIL has DTSTART's value type, and is UTC when DTSTART has a zone.
        if not isinstance(start, datetime) and isinstance(until, datetime):
            raise ValueError(f"RRULE {rule!r}: an all-day event's UNTIL is a date, like UNTIL=20251231")
        if isinstance(start, datetime) and not (isinstance(until, datetime) and until.tzinfo is not None):
            raise ValueError(f"RRULE {rule!r}: UNTIL must be a UTC time, like UNTIL=20251231T235959Z")
    canonical = recur.to_ical().decode()
    anchor = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)
    try:
        rrulestr(canonical, dtstart=anchor)
    except Exception as exc:
        raise ValueError(f"RRULE {rule!r}: {exc}") from None
    return canonical


def parse_attendee(text: str) -> Attendee:
    """`Name <addr>`, `addr` or `mailto:addr`."""
    from email.utils import parseaddr

    raw = (text or "").strip()
    if CONTROL.search(raw) or "\n" in raw or len(raw) > 320:
        raise ValueError(f"attendee {raw[:60]!r}: one line, at most 320 characters")
    name, address = parseaddr(raw) if "<" in raw else ("", raw)
    if address.lower().startswith("mailto:"):
        address = address[7:]
    if not _ADDRESS.match(address):
        raise ValueError(f"attendee {raw!r} is not `Name <user@example.org>` or `user@example.org`")
    return Attendee(address, name.strip() or None)


def validate_uid(uid: str) -> str:
    uid = (uid or "").strip()
    if not uid or len(uid) > 255 or CONTROL.search(uid) or "\n" in uid:
        raise ValueError("a UID is one line of 1 to 255 printable characters")
    return uid


def new_uid() -> str:
    return str(uuid.uuid4())


def resource_name(uid: str) -> str:
    """The file name `<uid>.ics` when the UID is path-safe; otherwise a safe prefix and a hash,
    so distinct UIDs never share a resource and none can climb out of the calendar."""
    if _SAFE_NAME.match(uid) and ".." not in uid:
        return f"{uid}.ics"
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", uid).strip("-")[:60] or "event"
    return f"{prefix}-{hashlib.sha256(uid.encode()).hexdigest()[:16]}.ics"


# ---- output: the iCalendar we write ----------------------------------------------------------------


def build_calendar(spec: EventSpec, *, now: datetime) -> bytes:
    """A VCALENDAR holding one VEVENT (and the VTIMEZONE its TZID needs)."""
    from icalendar import Calendar, Event

    check_span(spec.start, spec.end)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", validate_uid(spec.uid))
    event.add("dtstamp", now.astimezone(UTC).replace(microsecond=0))
    event.add("created", now.astimezone(UTC).replace(microsecond=0))
    event.add("sequence", 0)
    event.add("summary", clean_text(spec.summary))
    event.add("dtstart", spec.start)
    event.add("dtend", spec.end)
    _set_optional(event, spec.rrule, spec.description, spec.location, spec.attendees)
    cal.add_component(event)
    return _serialize(cal)


def apply_changes(data: bytes, uid: str, changes: Changes, *, now: datetime) -> bytes:
    """The server's iCalendar with the changes applied to the event `uid` (its master VEVENT).

    Everything we do not change (alarms, X- properties, overridden instances, other
    components) is kept. SEQUENCE goes up and DTSTAMP/LAST-MODIFIED are renewed.
    """
    from icalendar import Calendar

    try:
        cal = Calendar.from_ical(data)
    except Exception as exc:
        raise EventDataError(f"the server's iCalendar does not parse ({one_line(str(exc), 120)})") from None
    masters = [c for c in cal.walk("VEVENT") if c.get("recurrence-id") is None and str(c.get("uid", "")) == uid]
    if not masters:
        raise EventDataError(f"the resource holds no VEVENT with UID {uid!r}")
    event = masters[0]
    old_start, old_end = start_end(event)
    if changes.start is not None or changes.end is not None:
        start = changes.start if changes.start is not None else old_start
        if start is None:
            raise EventDataError("the event has no DTSTART to keep; give --start")
        if changes.end is not None:
            end = changes.end
        elif (
            old_start is not None
            and old_end is not None
            and isinstance(old_start, datetime) == isinstance(start, datetime)
        ):
            end = start + (old_end - old_start)  # moving the start keeps the duration
        else:
            end = default_end(start)
        check_span(start, end)
        for name in ("dtstart", "dtend", "duration"):
            event.pop(name, None)
        event.add("dtstart", start)
        event.add("dtend", end)
    if changes.summary is not None:
        event.pop("summary", None)
        event.add("summary", clean_text(changes.summary))
    for name, value in (("description", changes.description), ("location", changes.location)):
        if value is not None:
            event.pop(name, None)
            if value:
                event.add(name, clean_text(value))
    final_start, _ = start_end(event)
    if changes.rrule is not None:
        event.pop("rrule", None)
        if changes.rrule:
            if final_start is None:
                raise EventDataError("the event has no DTSTART for the RRULE to repeat; give --start")
            _add_rrule(event, validate_rrule(changes.rrule, final_start))
    elif event.get("rrule") is not None and final_start is not None and changes.start is not None:
        try:  # the kept rule must still fit the new start (an all-day UNTIL is a date)
            validate_rrule(event.get("rrule").to_ical().decode(), final_start)
        except ValueError as exc:
            raise ValueError(f"the event's {exc}; give a new --rrule (or --rrule '' to stop repeating)") from None
    if changes.attendees is not None:
        event.pop("attendee", None)
        _set_optional(event, None, None, None, changes.attendees)
    stamp = now.astimezone(UTC).replace(microsecond=0)
    sequence = int_or_none(event.get("sequence")) or 0
    for name, value in (("sequence", sequence + 1), ("dtstamp", stamp), ("last-modified", stamp)):
        event.pop(name, None)
        event.add(name, value)
    return _serialize(cal)


def _set_optional(event, rrule, description, location, attendees) -> None:
    from icalendar import vCalAddress

    if rrule:
        _add_rrule(event, rrule)
    if description:
        event.add("description", clean_text(description))
    if location:
        event.add("location", clean_text(location))
    for person in attendees or []:
        address = vCalAddress(f"mailto:{person.email}")
        if person.name:
            address.params["CN"] = clean_text(person.name).replace("\n", " ")
        address.params["PARTSTAT"] = "NEEDS-ACTION"
        event.add("attendee", address, encode=0)


def _add_rrule(event, rule: str) -> None:
    from icalendar import vRecur

    event.add("rrule", vRecur.from_ical(rule))


def _serialize(cal) -> bytes:
    cal.add_missing_timezones()  # a VTIMEZONE for every TZID we used (UTC needs none)
    body = cal.to_ical()
    if len(body) > MAX_EVENT_BYTES:
        raise ValueError(f"the event would be {len(body)} bytes; servers take at most {MAX_EVENT_BYTES}")
    return body
