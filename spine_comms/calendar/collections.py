"""calendar.caldav.status and calendar.caldav.ensure: CalDAV discovery and the contract's calendars."""

from __future__ import annotations

from spine_comms.calendar.dav_collections import run_ensure, run_status
from spine_comms.calendar.dav_lookup import CALDAV
from spine_comms.calendar.dav_options import AccountsOpt
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Result


@capability("calendar.caldav.status", safety="read-only", approval="auto")
def caldav_status(ctx: RunContext, account: AccountsOpt = None) -> Result:
    """CalDAV discovery for each contract account (RFC 6764: /.well-known/caldav, SRV/TXT when the
    account names a domain, current-user-principal, calendar-home-set) with each step's URL, status
    and latency; the DAV classes OPTIONS advertises (calendar-access required); the calendars under
    the home set (display name, colour, components, ctag, sync-token); and, for each contract
    calendar, whether it exists (fix: calendar.caldav.ensure --execute) and matches its display name,
    colour and components. A refused login is `error` (exit 3) naming the account."""
    return run_status(ctx, CALDAV, account)


@capability("calendar.caldav.ensure", safety="mutating", approval="auto")
def caldav_ensure(ctx: RunContext, account: AccountsOpt = None, dry_run: bool = True) -> Result:
    """Create the contract's missing calendars under each account's calendar-home-set (MKCALENDAR with
    display name, colour, description and components). A dry run unless --execute; idempotent (a
    second run has nothing to do); after creating it lists the home set again to verify. An existing
    calendar whose display name or colour differs is a warning (it is not changed)."""
    return run_ensure(ctx, CALDAV, account, not dry_run)
