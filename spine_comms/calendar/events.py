"""calendar.event.create|list|get|update|delete: event CRUD over CalDAV for agents and operators.

Every write is conditional: create sends If-None-Match: * (never replaces an event), update and
delete send If-Match with the ETag the caller saw (--etag) or the one just read. A 412 is a
conflict (fail, exit 1) reported with one-line summaries of both versions, never retried blindly.
The writes act at once (agents call them as verbs); --dry-run shows what would be sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.calendar.dav_lookup import dav_errors
from spine_comms.calendar.dav_options import AccountOpt, CalendarOpt, EtagOpt, normal_etag, would_write
from spine_comms.calendar.event_options import (
    DEFAULT_DAYS,
    START_HELP,
    AllDayOpt,
    AttendeeOpt,
    DescriptionFileOpt,
    DescriptionOpt,
    EndOpt,
    LocationOpt,
    RruleOpt,
    StartOpt,
    SummaryOpt,
    TzOpt,
    UidOpt,
)
from spine_comms.calendar.event_outcomes import (
    conflict_of,
    conflicted,
    failed,
    missing,
    printable,
    refused,
    too_large_detail,
)
from spine_comms.calendar.event_store import CalendarTarget, current, list_events, locate, open_calendar
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status

MAX_DESCRIPTION_FILE = 256 * 1024

# ---- capabilities ------------------------------------------------------------------------------------


@capability("calendar.event.create", safety="mutating", approval="auto")
def event_create(
    ctx: RunContext,
    summary: Annotated[str, typer.Option("--summary", help="The event's title.")],
    start: Annotated[str, typer.Option("--start", help=START_HELP)],
    end: EndOpt = None,
    all_day: AllDayOpt = False,
    tz: TzOpt = None,
    rrule: RruleOpt = None,
    description: DescriptionOpt = None,
    description_file: DescriptionFileOpt = None,
    location: LocationOpt = None,
    attendee: AttendeeOpt = None,
    uid: Annotated[str | None, typer.Option("--uid", help="The UID (default: a new UUID).")] = None,
    account: AccountOpt = None,
    calendar: CalendarOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Create an event with PUT If-None-Match: * at <calendar>/<uid>.ics; prints uid, href and etag.
    An event already there under that name is a conflict (fail), never replaced."""
    from spine_comms.calendar import ical
    from spine_comms.calendar.ical_read import find_event

    with _usage():
        begin = ical.parse_when(start, tz=tz, all_day=all_day)
        finish = ical.parse_when(end, tz=tz, all_day=all_day) if end else ical.default_end(begin)
        spec = ical.EventSpec(
            uid=ical.validate_uid(uid) if uid is not None else ical.new_uid(),
            summary=summary,
            start=begin,
            end=finish,
            rrule=ical.validate_rrule(rrule, begin) if rrule else None,
            description=_description(description, description_file),
            location=location,
            attendees=[ical.parse_attendee(a) for a in attendee or []],
        )
        body = ical.build_calendar(spec, now=ctx.clock())
    target = open_calendar(ctx, account, calendar)
    href = _child(target, ical.resource_name(spec.uid))
    view = find_event(body, spec.uid)
    result = Result(data={**_where(target), "uid": spec.uid, "href": href, "etag": None, "dry_run": dry_run,
                          "event": view.to_dict() if view else None})  # fmt: skip
    if dry_run:
        return would_write(result, "calendar.event.create", f"create {spec.uid}", method="PUT", href=href,
                           create_only=True, body=body.decode())  # fmt: skip
    from spine_comms.protocols.dav import DavError

    try:
        with _dav(target):
            etag = target.client.put(href, body, "text/calendar; charset=utf-8", create_only=True)
    except DavError as exc:
        if exc.kind == "precondition":
            theirs = exc.current or current(target, href)[0]
            result.data["conflict"] = conflict_of(spec.uid, href, None, exc.current_etag, body, theirs)
            return failed(result, "calendar.event.create", href, f"an event already exists at {href}; not replaced",
                           hint="use calendar.event.update, or give another --uid")  # fmt: skip
        return failed(result, "calendar.event.create", href, refused(exc))
    result.data["etag"] = etag
    result.add(
        Check(id="calendar.event.create", status=Status.OK, detail=f"created {spec.uid}", subject=href, actual=etag)
    )
    result.summary += [f"uid: {spec.uid}", f"href: {href}", f"etag: {etag}"]
    return result


@capability("calendar.event.list", safety="read-only", approval="auto")
def event_list(
    ctx: RunContext,
    start: Annotated[
        str | None, typer.Option("--from", help="Range start: a date or a time with an offset (default: now).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help=f"Range end, exclusive (default: --from + {DEFAULT_DAYS} days).")
    ] = None,
    tz: TzOpt = None,
    expand: Annotated[
        bool,
        typer.Option(
            "--expand",
            help="One entry per occurrence of repeating events (asked of the server with CALDAV:expand; "
            "expanded here from the RRULE when the server does not). data.expanded_by says which.",
        ),
    ] = False,
    account: AccountOpt = None,
    calendar: CalendarOpt = None,
) -> Result:
    """Events overlapping a time range (calendar-query with a time-range filter), soonest first."""
    from spine_comms.calendar import ical_read

    with _usage():
        begin = _instant(start, tz) if start else ctx.clock().astimezone(UTC).replace(microsecond=0)
        finish = _instant(end, tz) if end else begin + timedelta(days=DEFAULT_DAYS)
        if finish <= begin:
            raise ValueError(f"--to ({finish.isoformat()}) must be after --from ({begin.isoformat()})")
    target = open_calendar(ctx, account, calendar)
    listing = list_events(target, begin, finish, expand=expand, progress=ctx.progress)
    events, unreadable, outside, truncated = listing.events, listing.unreadable, listing.outside, listing.truncated
    events.sort(key=lambda e: _sort_key(e["start"]))
    result = Result(data={**_where(target), "from": begin.isoformat(), "to": finish.isoformat(), "expand": expand,
                          "expanded_by": listing.expanded_by, "truncated": truncated, "count": len(events),
                          "events": events, "unreadable": unreadable,
                          "server_expansion_rejected": listing.rejected,
                          "expansion": listing.expansion()})  # fmt: skip
    result.add(
        Check(
            id="calendar.event.list",
            status=Status.OK,
            detail=f"{len(events)} event(s) in range",
            subject=target.path,
            actual=len(events),
        )
    )
    if unreadable:
        result.add(
            Check(
                id="calendar.event.unreadable",
                status=Status.WARN,
                detail=f"{len(unreadable)} resource(s) did not parse",
                subject=target.path,
                evidence=unreadable[:20],
            )
        )
    if outside:
        result.add(
            Check(
                id="calendar.event.href_outside",
                status=Status.WARN,
                detail="the server named resources outside the calendar; ignored",
                subject=target.path,
                evidence=outside[:20],
            )
        )
    if target.too_large:
        result.data["too_large"] = target.too_large
        result.add(
            Check(
                id="calendar.event.too_large",
                status=Status.FAIL,
                detail=too_large_detail(target),
                subject=target.path,
                evidence=target.too_large[:50],
            )
        )
        result.summary.append(too_large_detail(target))
    if expand and listing.rejected:
        result.add(
            Check(
                id="calendar.event.expanded_here",
                status=Status.OK,
                detail=f"the server's expansion "
                f"({listing.server_expansion}) was not used for {len(listing.rejected)} event(s): expanded "
                "here from their own data",
                subject=target.path,
                evidence=listing.rejected[:20],
            )
        )
    if truncated:
        result.add(
            Check(
                id="calendar.event.expansion_truncated",
                status=Status.WARN,
                detail=f"local expansion stopped at {ical_read.MAX_INSTANCES} occurrences per event",
                subject=target.path,
            )
        )
    for event in events[:200]:
        result.summary.append(f"{ical_read.summary_line(_view(event))}  uid={ical_read.one_line(event['uid'], 255)}")
    if not events:
        result.summary.append(f"no events between {begin.isoformat()} and {finish.isoformat()}")
    return result


@capability("calendar.event.get", safety="read-only", approval="auto")
def event_get(
    ctx: RunContext,
    uid: UidOpt,
    raw: Annotated[bool, typer.Option("--raw", help="Include the iCalendar text as the server holds it.")] = False,
    account: AccountOpt = None,
    calendar: CalendarOpt = None,
) -> Result:
    """One event by UID, with its ETag (pass it to update/delete --etag to pin this version)."""
    from spine_comms.calendar.ical_read import find_event, summary_line

    uid = _uid(uid)
    target = open_calendar(ctx, account, calendar)
    found = locate(target, uid)
    result = Result(data={**_where(target), "uid": uid, "href": None, "etag": None, "event": None})
    if found is None:
        return failed(result, "calendar.event.get", target.path, missing(uid, target))
    view = find_event(found.body, uid)
    result.data.update(href=found.href, etag=found.etag, event=view.to_dict() if view else None)
    if raw:
        result.data["raw"] = printable(found.body)
    result.add(
        Check(id="calendar.event.get", status=Status.OK, detail=f"found {uid}", subject=found.href, actual=found.etag)
    )
    result.summary += [summary_line(view), f"href: {found.href}", f"etag: {found.etag}"]
    return result


@capability("calendar.event.update", safety="mutating", approval="auto")
def event_update(
    ctx: RunContext,
    uid: UidOpt,
    etag: EtagOpt = None,
    summary: SummaryOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    all_day: AllDayOpt = False,
    tz: TzOpt = None,
    rrule: RruleOpt = None,
    description: DescriptionOpt = None,
    description_file: DescriptionFileOpt = None,
    location: LocationOpt = None,
    attendee: AttendeeOpt = None,
    clear_attendees: Annotated[bool, typer.Option("--clear-attendees", help="Remove every attendee.")] = False,
    account: AccountOpt = None,
    calendar: CalendarOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Change fields of an event: read it (GET, ETag), apply the change, PUT with If-Match. A version
    changed since (412) is a conflict with both versions' summaries in data.conflict; nothing is overwritten."""
    from spine_comms.calendar import ical
    from spine_comms.calendar.ical_read import find_event, summary_line

    uid = _uid(uid)
    with _usage():
        if attendee and clear_attendees:
            raise ValueError("--attendee and --clear-attendees exclude each other")
        changes = ical.Changes(
            summary=summary,
            start=ical.parse_when(start, tz=tz, all_day=all_day) if start else None,
            end=ical.parse_when(end, tz=tz, all_day=all_day) if end else None,
            rrule=rrule,
            description=_description(description, description_file),
            location=location,
            attendees=[] if clear_attendees else ([ical.parse_attendee(a) for a in attendee] if attendee else None),
        )
        if changes.empty():
            raise ValueError("nothing to change: give --summary, --start, --end, --rrule, --description, "
                             "--location, --attendee or --clear-attendees")  # fmt: skip
    target = open_calendar(ctx, account, calendar)
    found = locate(target, uid)
    result = Result(data={**_where(target), "uid": uid, "href": None, "etag": None, "previous_etag": etag,
                          "dry_run": dry_run, "event": None})  # fmt: skip
    if found is None:
        return failed(result, "calendar.event.update", target.path, missing(uid, target))
    if_match = normal_etag(etag) or found.etag
    result.data.update(href=found.href, previous_etag=if_match)
    try:
        with _usage():
            body = ical.apply_changes(found.body, uid, changes, now=ctx.clock())
    except ical.EventDataError as exc:
        return failed(result, "calendar.event.update", found.href, f"cannot change the server's data: {exc}")
    view = find_event(body, uid)
    result.data["event"] = view.to_dict() if view else None
    if not if_match:
        return failed(result, "calendar.event.update", found.href, "the server gave no ETag, so the update could "
                       "not be made conditional; refusing to overwrite")  # fmt: skip
    if dry_run:
        result.summary.append(summary_line(view))
        return would_write(result, "calendar.event.update", f"update {uid}", method="PUT", href=found.href,
                           if_match=if_match, body=body.decode())  # fmt: skip
    from spine_comms.protocols.dav import DavError

    try:
        with _dav(target):
            new_etag = target.client.put(found.href, body, "text/calendar; charset=utf-8", etag=if_match)
    except DavError as exc:
        if exc.kind == "precondition":
            return conflicted(result, target, "calendar.event.update", uid, found.href, if_match, body, exc)
        return failed(result, "calendar.event.update", found.href, refused(exc))
    result.data["etag"] = new_etag
    result.add(
        Check(
            id="calendar.event.update",
            status=Status.OK,
            detail=f"updated {uid}",
            subject=found.href,
            expected=if_match,
            actual=new_etag,
        )
    )
    result.summary += [summary_line(view), f"href: {found.href}", f"etag: {new_etag}"]
    return result


@capability("calendar.event.delete", safety="mutating", approval="auto")
def event_delete(
    ctx: RunContext,
    uid: UidOpt,
    etag: EtagOpt = None,
    account: AccountOpt = None,
    calendar: CalendarOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Delete an event with If-Match (the --etag you saw, else the current one). A changed event
    (412) is a conflict; a missing one fails as not found."""
    from spine_comms.calendar.ical_read import find_event, summary_line

    uid = _uid(uid)
    target = open_calendar(ctx, account, calendar)
    found = locate(target, uid)
    result = Result(data={**_where(target), "uid": uid, "href": None, "etag": etag, "dry_run": dry_run})
    if found is None:
        return failed(result, "calendar.event.delete", target.path, missing(uid, target))
    if_match = normal_etag(etag) or found.etag
    result.data.update(href=found.href, etag=if_match, event=_dict(find_event(found.body, uid)))
    if not if_match:
        return failed(result, "calendar.event.delete", found.href, "the server gave no ETag, so the delete could "
                       "not be made conditional; refusing")  # fmt: skip
    if dry_run:
        return would_write(result, "calendar.event.delete", f"delete {uid}", method="DELETE", href=found.href,
                           if_match=if_match)  # fmt: skip
    from spine_comms.protocols.dav import DavError

    try:
        with _dav(target):
            target.client.delete(found.href, etag=if_match)
    except DavError as exc:
        if exc.kind == "precondition":
            ours = found.body if if_match == found.etag else None
            return conflicted(result, target, "calendar.event.delete", uid, found.href, if_match, ours, exc,
                               deleting=True)  # fmt: skip
        if exc.kind == "not_found":
            return failed(result, "calendar.event.delete", found.href, f"no event with UID {uid!r}: already gone")
        return failed(result, "calendar.event.delete", found.href, refused(exc))
    result.add(
        Check(
            id="calendar.event.delete", status=Status.OK, detail=f"deleted {uid}", subject=found.href, expected=if_match
        )
    )
    result.summary.append(f"deleted {uid} ({summary_line(find_event(found.body, uid))})")
    return result


# ---- shared steps ------------------------------------------------------------------------------------


def _child(target: CalendarTarget, name: str) -> str:
    from spine_comms.protocols.dav import child_href

    return child_href(target.path, name)


def _dav(target: CalendarTarget):
    return dav_errors(target.account.id)


class _usage:
    """ValueError from input validation becomes a one-line usage error (exit 2)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, _tb):
        from spine_comms.calendar.ical import EventDataError

        if exc is not None and isinstance(exc, ValueError) and not isinstance(exc, EventDataError):
            raise UsageError(str(exc)) from None
        return False


def _where(target: CalendarTarget) -> dict:
    return {"account": target.account.id, "calendar": target.calendar_id,
            "calendar_href": target.path}  # fmt: skip


def _uid(uid: str) -> str:
    from spine_comms.calendar.ical import validate_uid

    with _usage():
        return validate_uid(uid)


def _description(text: str | None, path: Path | None) -> str | None:
    if text is not None and path is not None:
        raise ValueError("--description and --description-file exclude each other")
    if path is None:
        return text
    try:
        data = path.read_bytes()[: MAX_DESCRIPTION_FILE + 1]
    except OSError as exc:
        raise ValueError(f"--description-file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_DESCRIPTION_FILE:
        raise ValueError(f"--description-file {path}: over {MAX_DESCRIPTION_FILE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--description-file {path}: not UTF-8 text") from None


def _instant(text: str, tz: str | None) -> datetime:
    """A range bound: a date is its midnight (in --tz, else UTC); a time needs an offset or --tz."""
    from spine_comms.calendar.ical import load_zone, parse_when

    value = parse_when(text, tz=tz)
    if isinstance(value, datetime):
        return value
    zone = load_zone(tz) if tz else UTC
    return datetime(value.year, value.month, value.day, tzinfo=zone)


def _sort_key(start: str | None) -> datetime:
    try:
        value = datetime.fromisoformat(start or "")
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # dates and floating times sort as UTC
    return value


def _view(event: dict):
    from spine_comms.calendar.ical_read import EventView

    fields = EventView.__dataclass_fields__
    return EventView(**{k: v for k, v in event.items() if k in fields})


def _dict(view) -> dict | None:
    return view.to_dict() if view is not None else None
