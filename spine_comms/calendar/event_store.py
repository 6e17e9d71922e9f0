"""The calendar an event capability works on, and finding events in it over CalDAV.

`open_calendar` is dav_lookup's "resolve the collection" step, for a calendar. `locate` finds an
event by UID (its own resource name first, then a calendar-query), and `list_events` runs a
time-range calendar-query. Hrefs a server returns are used only when they name a resource
directly inside the calendar, so hostile data cannot point writes anywhere else.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from spine_comms.calendar import ical_read
from spine_comms.calendar.dav_lookup import CALDAV as CALDAV_KIND
from spine_comms.calendar.dav_lookup import dav_errors, open_collection
from spine_comms.calendar.ical import resource_name
from spine_comms.calendar.ical_read import find_event
from spine_comms.core.progress import quiet

if TYPE_CHECKING:
    from spine_comms.contracts.dav import Account
    from spine_comms.core.context import RunContext
    from spine_comms.protocols.dav import DavClient, DavResource

CALDAV = "urn:ietf:params:xml:ns:caldav"
CALENDAR_DATA = f"{{{CALDAV}}}calendar-data"
_HAS_RRULE = '<c:prop-filter name="RRULE"/>'  # RFC 4791 9.7.2: the property is defined
# ctx.progress: (description, total) -> a context yielding advance(n=1)
Progress = Callable[..., AbstractContextManager[Callable[..., Any]]]


@dataclass
class CalendarTarget:
    account: Account
    calendar_id: str
    in_contract: bool
    client: DavClient
    path: str  # the calendar collection's path on the server, ending in "/"
    # Resources over ical_read.MAX_PARSE_BYTES (or alone over the client's body cap): not read,
    # and named by every capability that met them: {href, bytes, limit}.
    too_large: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        return f"calendar {self.calendar_id} on account {self.account.id}"

    def over_limit(self, href: str, size: int | None) -> None:
        """size None: its answer alone passed the client's body cap, which is then the limit named."""
        limit = ical_read.MAX_PARSE_BYTES if size is not None else self.client.max_body
        if all(entry["href"] != href for entry in self.too_large):
            self.too_large.append({"href": href, "bytes": size, "limit": limit})


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
        href = client.path_of(child_href(target.path, resource_name(uid)))
        try:
            body, etag = client.get(href)
            if len(body) > ical_read.MAX_PARSE_BYTES:
                target.over_limit(href, len(body))
                return None  # where create puts this UID; the caller names it as over the limit
            if find_event(body, uid) is not None:
                return Located(href, body, etag)
        except DavError as exc:
            if exc.kind == "too_large":
                target.over_limit(href, None)
                return None
            if exc.kind != "not_found":
                raise
        for resource in _query(target, _uid_filter(uid)):
            if _readable(target, resource, Listing()) and find_event(resource.props[CALENDAR_DATA], uid) is not None:
                return Located(resource.href, resource.props[CALENDAR_DATA].encode(), resource.etag)
    return None


def _query(target: CalendarTarget, event_filter: str, calendar_data: str = "<c:calendar-data/>") -> list:
    """A calendar-query's resources with their data. When the whole answer is over the client's
    body cap, the hrefs are asked first (ETags only), then the data by calendar-multiget in
    batches (RFC 4791 7.9); a resource over the cap on its own is recorded as too large."""
    from spine_comms.protocols.dav import DavError

    client = target.client
    try:
        return client.report(target.path, _calendar_query(calendar_data, event_filter))
    except DavError as exc:
        if exc.kind != "too_large":
            raise
    listed = client.report(target.path, _calendar_query("", event_filter))
    hrefs = [r.href for r in listed if r.status == 200 and inside(target, r.href)]
    resources, over = client.report_in_batches(target.path, hrefs, lambda chunk: _multiget(chunk, calendar_data))
    for href in over:
        target.over_limit(href, None)
    return resources


@dataclass
class Listing:
    events: list[dict] = field(default_factory=list)  # EventView dicts with href and etag
    unreadable: list[dict] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # hrefs outside the calendar, ignored
    rejected: list[dict] = field(default_factory=list)  # server expansions not used, and why
    by: set[str] = field(default_factory=set)
    truncated: bool = False
    server_expansion: str | None = None  # None (not asked), "ok", or why it could not be used

    @property
    def expanded_by(self) -> str | None:
        return "+".join(sorted(self.by)) or None

    def expansion(self) -> dict | None:
        """data.expansion: what the server's expansion came to, and which resources were expanded here."""
        if self.server_expansion is None:
            return None
        return {"server": self.server_expansion, "local": [r["href"] for r in self.rejected],
                "reasons": self.rejected[:50]}  # fmt: skip


# The server's expansion failed in a way that says nothing about the account (a 500 on an EXDATE,
# a refused filter): expand here. Unreachable, timeouts and refused logins still end the run.
_EXPANSION_FAILURES = ("protocol", "forbidden", "not_found", "conflict", "precondition", "too_large")


def list_events(
    target: CalendarTarget, start: datetime, end: datetime, *, expand: bool, progress: Progress = quiet
) -> Listing:
    """The events overlapping [start, end). With `expand`, one entry per occurrence.

    The events are read unexpanded (with their VTIMEZONEs) and expanded here from RRULE, RDATE,
    EXDATE and overridden instances; the server is asked to expand too (RFC 4791 9.6.5) and its
    answer is compared instance by instance (start and end, in UTC). Where it agrees,
    `expanded_by` says "server"; where it fails (Xandikos 0.2 answers 500 to any EXDATE), does
    not expand (Radicale 3.1) or differs (floating times, one end for every instance, a custom
    VTIMEZONE dropped so its offset is lost), the local expansion stands and data.expansion says
    which resources and why.

    Repeating events are also asked for on their own (a prop-filter on RRULE) and checked here
    against the range, because Xandikos 0.2 matches a repeating event only by its first instance.

    `progress` is `ctx.progress`: the queries, then the events read, with an ETA (1,500 events
    take about 18 s, most of it parsing and expanding here).
    """
    from spine_comms.protocols.dav import DavError

    out = Listing()
    server: dict | None = None
    with dav_errors(target.account.id), progress(f"querying {target.path}", total=3 if expand else 2) as step:
        in_range = _query(target, _range_filter(start, end))
        step()
        repeating = _query(target, _HAS_RRULE)
        step()
        if expand:
            try:
                expanded = _query(target, _range_filter(start, end), _expanded_data(start, end))
                server = {r.href: r for r in expanded if _readable(target, r, Listing())}
                out.server_expansion = "ok"
            except DavError as exc:
                if exc.kind not in _EXPANSION_FAILURES:
                    raise
                out.server_expansion = f"failed: {ical_read.one_line(exc.message, 200)}"
            step()
    masters = {r.href: r for r in repeating if _readable(target, r, out)}
    in_range_hrefs = {x.href for x in in_range}
    resources = in_range + [r for r in masters.values() if r.href not in in_range_hrefs]
    with progress("reading events", total=len(resources)) as advance:
        _read_all(target, resources, start, end, expand=expand, server=server, out=out, advance=advance)
    if server is not None and out.rejected:
        out.server_expansion = f"differs from the events' own data for {len(out.rejected)} resource(s)"
    return out


def _read_all(target, resources, start, end, *, expand: bool, server: dict | None, out: Listing, advance) -> None:
    """Each resource's events (expanded when asked) into `out`, one `advance` per resource."""
    seen = set()
    for resource in resources:
        advance()
        if resource.href in seen or not _readable(target, resource, out):
            continue
        seen.add(resource.href)
        data = resource.props[CALENDAR_DATA]
        recurring = ical_read.is_recurring(data)
        if expand and recurring:
            views, cut, problem = ical_read.expand(data, start, end)
            out.truncated = out.truncated or cut
        else:
            views, problem = ical_read.read_events(data)
            if recurring and not ical_read.expand(data, start, end, limit=1)[0]:
                continue  # a repeating event with no occurrence in the range
        if expand:
            _judge_server(out, resource.href, views, server)
        if problem:
            out.unreadable.append({"href": resource.href, "problem": problem})
        out.events.extend({**v.to_dict(), "href": resource.href, "etag": resource.etag} for v in views)


def _judge_server(out: Listing, href: str, ours: list, server: dict | None) -> None:
    """Are the server's expanded instances of `href` ours? Records who expanded it, and why."""
    if server is None:
        flaw = f"the server's expansion {out.server_expansion}"
    elif (answer := server.get(href)) is None:
        if not ours:
            return  # no instance in the range, and the server agrees
        flaw = "missing from the server's expanded answer"
    else:
        theirs, problem = ical_read.read_instances(answer.props[CALENDAR_DATA])
        flaw = problem or _expansion_flaw(theirs) or _difference(ours, theirs)
    if flaw is None:
        out.by.add("server")
        return
    out.by.add("local")
    out.rejected.append({"href": href, "reason": flaw})


def _moment(value: str | None) -> str:
    """An instance's time to compare: a date as it is, a time in UTC, a floating time marked so."""
    if not value or len(value) <= 10:
        return value or "?"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"unreadable {value}"
    return moment.astimezone(UTC).isoformat() if moment.tzinfo else f"floating {value}"


def _difference(ours: list, theirs: list) -> str | None:
    mine = sorted((_moment(v.start), _moment(v.end)) for v in ours)
    other = sorted((_moment(v.start), _moment(v.end)) for v in theirs)
    if mine == other:
        return None
    if len(mine) != len(other):
        return f"the server gave {len(other)} instance(s); the event's data has {len(mine)} in the range"
    (want, got) = next((a, b) for a, b in zip(mine, other, strict=True) if a != b)
    return f"an instance at {want[0]} to {want[1]}: the server gave {got[0]} to {got[1]}"


def _readable(target: CalendarTarget, resource: DavResource, out: Listing) -> bool:
    data = resource.props.get(CALENDAR_DATA)
    if resource.status != 200 or not isinstance(data, str):
        return False
    if len(data) * 4 > ical_read.MAX_PARSE_BYTES and inside(target, resource.href):
        size = len(data.encode("utf-8", errors="replace"))
        if size > ical_read.MAX_PARSE_BYTES:
            target.over_limit(resource.href, size)
            return False
    if not inside(target, resource.href):
        if resource.href[:200] not in out.outside:
            out.outside.append(resource.href[:200])
        return False
    return True


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


def _span(start: datetime, end: datetime) -> str:
    return f"start={quoteattr(_utc(start))} end={quoteattr(_utc(end))}"


def _range_filter(start: datetime, end: datetime) -> str:
    return f"<c:time-range {_span(start, end)}/>"


def _expanded_data(start: datetime, end: datetime) -> str:
    # RFC 4791 9.6.5: the server returns each instance in the range as its own VEVENT.
    return f"<c:calendar-data><c:expand {_span(start, end)}/></c:calendar-data>"


def _multiget(hrefs: list[str], calendar_data: str) -> bytes:
    inner = "".join(f"<d:href>{escape(h)}</d:href>" for h in hrefs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<c:calendar-multiget xmlns:d="DAV:" xmlns:c="{CALDAV}">'
        f"<d:prop><d:getetag/>{calendar_data}</d:prop>{inner}</c:calendar-multiget>"
    ).encode()


def _uid_filter(uid: str) -> str:
    # text-match is a substring match (RFC 4791 9.7.5): callers compare the UID exactly.
    return f'<c:prop-filter name="UID"><c:text-match collation="i;octet">{escape(uid)}</c:text-match></c:prop-filter>'
