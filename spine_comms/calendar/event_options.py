"""The options of the calendar.event.* capabilities, declared once (help text that teaches)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DAYS = 30  # calendar.event.list without --to

UidOpt = Annotated[str, typer.Option("--uid", help="The event's UID (as create printed it, or from list).")]
SummaryOpt = Annotated[str | None, typer.Option("--summary", help="The event's title.")]
START_HELP = "ISO-8601 time with an offset (2025-03-01T09:00+01:00, ...Z), or a date for an all-day event."
StartOpt = Annotated[str | None, typer.Option("--start", help=START_HELP)]
EndOpt = Annotated[
    str | None,
    typer.Option(
        "--end", help="Like --start. All-day ends are exclusive (a one-day event on D ends on D+1). "
        "Default: start + 1 hour, or + 1 day for all-day; on update the duration is kept."
    ),
]  # fmt: skip
AllDayOpt = Annotated[bool, typer.Option("--all-day", help="An all-day event: --start/--end are dates (YYYY-MM-DD).")]
TzOpt = Annotated[
    str | None,
    typer.Option(
        "--tz", help="IANA zone (Europe/Berlin) for times without an offset; times are then written in this zone "
        "(TZID and VTIMEZONE), so repetitions follow its daylight saving. Without it times are written in UTC."
    ),
]  # fmt: skip
RruleOpt = Annotated[
    str | None,
    typer.Option("--rrule", help="Recurrence rule, e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=10 (on update: '' removes it)."),
]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="Free text (on update: '' removes it).")]
DescriptionFileOpt = Annotated[
    Path | None, typer.Option("--description-file", help="Read the description from this UTF-8 file.")
]
LocationOpt = Annotated[str | None, typer.Option("--location", help="Where (on update: '' removes it).")]
AttendeeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--attendee", metavar="ATTENDEE",
        help="`Name <user@example.org>` or `user@example.org`; repeatable (on update: replaces the list).",
    ),
]  # fmt: skip
