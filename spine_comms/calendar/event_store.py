"""The calendar an event capability works on, and finding events in it over CalDAV.

`open_calendar` is dav_lookup's "resolve the collection" step, for a calendar. `locate` finds an
event by UID (its own resource name first, then a calendar-query), and `list_events` runs a
time-range calendar-query. Hrefs a server returns are used only when they name a resource
directly inside the calendar, so hostile data cannot point writes anywhere else.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from spine_comms.calendar import ical_read
from spine_comms.calendar.dav_lookup import CALDAV as CALDAV_KIND
from spine_comms.calendar.dav_lookup import dav_errors, open_collection
from spine_comms.calendar.ical import resource_name
from spine_comms.calendar.ical_read import find_event

if TYPE_CHECKING:
    from spine_comms.contracts.dav import Account
    from spine_comms.core.context import RunContext
    from spine_comms.protocols.dav import DavClient, DavResource

CALDAV = "urn:ietf:params:xml:ns:caldav"
CALENDAR_DATA = f"{{{CALDAV}}}calendar-data"
_HAS_RRULE = '<c:prop-filter name="RRULE"/>'  # RFC 4791 9.7.2: the property is defined


@dataclass
class CalendarTarget:
    account: Account
    calendar_id: str
    in_contract: bool
    client: DavClient
    path: str  # the calendar collection's path on the server, ending in "/"

    def describe(self) -> str:
        return f"calendar {self.calendar_id} on account {self.account.id}"


@dataclass
class Located:
    href: str
    body: bytes
    etag: str | None


def open_calendar(ctx: RunContext, account_id: str | None, calendar_id: str | None) -> CalendarTarget:
    """Resolve --account/--calendar against the contract and the server (dav_lookup: exit 2 for a
    calendar that is not there, with the calendar.caldav.ensure hint; exit 3 for a server that fails)."""
    opened = open_collection(ctx, CALDAV_KIND, account_id, calendar_id)
    return CalendarTarget(opened.account, opened.collection_id, opened.in_contract, opened.client, opened.href)


def inside(target: CalendarTarget, href: str) -> bool:
    """Is `href` a resource directly inside the calendar (no other host, no climbing, no nesting)?"""
    if not href.startswith(target.path) or "://" in href:
        return False
    name = urllib.parse.unquote(href[len(target.path) :])
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def locate(target: CalendarTarget, uid: str) -> Located | None:
    """The resource holding the event `uid`: `<calendar>/<uid>.ics` when we named it, else found
    by a calendar-query on UID. None when the calendar has no such event."""
    from spine_comms.protocols.dav import DavError, child_href

    client = target.client
    with dav_errors(target.account.id):
        href = child_href(target.path, resource_name(uid))
        try:
            body, etag = client.get(href)
            if find_event(body, uid) is not None:
                return Located(href, body, etag)
        except DavError as exc:
            if exc.kind != "not_found":
                raise
        for resource in client.report(target.path, _uid_query(uid)):
            data = resource.props.get(CALENDAR_DATA)
            readable = resource.status == 200 and isinstance(data, str) and inside(target, resource.href)
            if readable and find_event(data, uid) is not None:
                return Located(resource.href, data.encode(), resource.etag)
    return None


@dataclass
class Listing:
    events: list[dict] = field(default_factory=list)  # EventView dicts with href and etag
    unreadable: list[dict] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # hrefs outside the calendar, ignored
    rejected: list[dict] = field(default_factory=list)  # server expansions we did not trust
    by: set[str] = field(default_factory=set)
    truncated: bool = False

    @property
    def expanded_by(self) -> str | None:
        return "+".join(sorted(self.by)) or None


def list_events(target: CalendarTarget, start: datetime, end: datetime, *, expand: bool) -> Listing:
    """The events overlapping [start, end). With `expand`, one entry per occurrence: the server's
    expansion when it gave a sane one, else ours from the RRULE (Radicale 3.1 does not expand;
    Xandikos 0.2 returns floating start times and the first instance's end for every occurrence).

    Repeating events are also asked for on their own (a prop-filter on RRULE) and checked here
    against the range, because Xandikos 0.2 matches a repeating event only by its first instance.
    """
    out = Listing()
    with dav_errors(target.account.id):
        in_range = target.client.report(target.path, _range_query(start, end, expand))
        repeating = target.client.report(target.path, _calendar_query("<c:calendar-data/>", _HAS_RRULE))
    masters = {r.href: r for r in repeating if _readable(target, r, out)}
    seen = set()
    for resource in in_range + [r for r in masters.values() if r.href not in {x.href for x in in_range}]:
        if resource.href in seen or not _readable(target, resource, out):
            continue
        seen.add(resource.href)
        data = resource.props[CALENDAR_DATA]
        master = masters.get(resource.href)
        views, problem = ical_read.read_events(data)
        if expand and ical_read.is_recurring(data):
            views, problem = _expand_here(out, data, start, end)
        elif expand and any(v.recurrence_id for v in views):
            flaw = _expansion_flaw(views)
            if flaw is None:
                out.by.add("server")
            elif master is not None:
                out.rejected.append({"href": resource.href, "reason": flaw})
                views, problem = _expand_here(out, master.props[CALENDAR_DATA], start, end)
        elif ical_read.is_recurring(data) and not ical_read.expand(data, start, end, limit=1)[0]:
            continue  # a repeating event with no occurrence in the range
        if problem:
            out.unreadable.append({"href": resource.href, "problem": problem})
        out.events.extend({**v.to_dict(), "href": resource.href, "etag": resource.etag} for v in views)
    return out


def _readable(target: CalendarTarget, resource: DavResource, out: Listing) -> bool:
    if resource.status != 200 or not isinstance(resource.props.get(CALENDAR_DATA), str):
        return False
    if not inside(target, resource.href):
        if resource.href[:200] not in out.outside:
            out.outside.append(resource.href[:200])
        return False
    return True


def _expand_here(out: Listing, data, start: datetime, end: datetime):
    views, cut, problem = ical_read.expand(data, start, end)
    out.by.add("local")
    out.truncated = out.truncated or cut
    return views, problem


def _expansion_flaw(views) -> str | None:
    """Why a server's expanded instances cannot be trusted (RFC 4791 9.6.5 wants UTC times), or None."""
    for view in views:
        try:
            start = datetime.fromisoformat(view.start or "")
            end = datetime.fromisoformat(view.end) if view.end else None
        except ValueError:
            return f"instance {view.recurrence_id}: unreadable start or end"
        if len(view.start or "") > 10 and start.tzinfo is None:
            return f"instance {view.recurrence_id}: floating start {view.start} (expanded times must be UTC)"
        if end is not None and (len(view.end) > 10) == (len(view.start) > 10) and _utc_of(end) <= _utc_of(start):
            return f"instance {view.recurrence_id}: ends ({view.end}) before it starts ({view.start})"
    return None


def _utc_of(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def current(target: CalendarTarget, href: str) -> tuple[bytes | None, str | None]:
    """The resource as it is now (after a 412), or (None, None) when it is gone or unreadable."""
    from spine_comms.protocols.dav import DavError

    try:
        return target.client.get(href)
    except DavError:
        return None, None


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _calendar_query(calendar_data: str, event_filter: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<c:calendar-query xmlns:d="DAV:" xmlns:c="{CALDAV}">'
        f"<d:prop><d:getetag/>{calendar_data}</d:prop>"
        f'<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">{event_filter}'
        "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
    ).encode()


def _range_query(start: datetime, end: datetime, expand: bool) -> bytes:
    span = f"start={quoteattr(_utc(start))} end={quoteattr(_utc(end))}"
    # RFC 4791 9.6.5: the server returns each instance in the range as its own VEVENT.
    data = f"<c:calendar-data><c:expand {span}/></c:calendar-data>" if expand else "<c:calendar-data/>"
    return _calendar_query(data, f"<c:time-range {span}/>")


def _uid_query(uid: str) -> bytes:
    # text-match is a substring match (RFC 4791 9.7.5): callers compare the UID exactly.
    match = f'<c:prop-filter name="UID"><c:text-match collation="i;octet">{escape(uid)}</c:text-match></c:prop-filter>'
    return _calendar_query("<c:calendar-data/>", match)
