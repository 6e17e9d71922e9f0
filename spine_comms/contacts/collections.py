"""contacts.carddav.status and contacts.carddav.ensure: CardDAV discovery and the contract's address books."""

from __future__ import annotations

from spine_comms.calendar.dav_collections import run_ensure, run_status
from spine_comms.calendar.dav_lookup import CARDDAV
from spine_comms.calendar.dav_options import AccountsOpt
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Result


@capability("contacts.carddav.status", safety="read-only", approval="auto")
def carddav_status(ctx: RunContext, account: AccountsOpt = None) -> Result:
    """CardDAV discovery for each contract account (RFC 6764: /.well-known/carddav, SRV/TXT when the
    account names a domain, current-user-principal, addressbook-home-set) with each step's URL, status
    and latency; the DAV classes OPTIONS advertises (addressbook required); the address books under
    the home set (display name, address data types, ctag, sync-token); and, for each contract address
    book, whether it exists (fix: contacts.carddav.ensure --execute) and matches its display name.
    A refused login is `error` (exit 3) naming the account."""
    return run_status(ctx, CARDDAV, account)


@capability("contacts.carddav.ensure", safety="mutating", approval="auto")
def carddav_ensure(ctx: RunContext, account: AccountsOpt = None, dry_run: bool = True) -> Result:
    """Create the contract's missing address books under each account's addressbook-home-set (extended
    MKCOL, RFC 5689, with display name and description). A dry run unless --execute; idempotent (a
    second run has nothing to do); after creating it lists the home set again to verify. An existing
    address book whose display name differs is a warning (it is not changed)."""
    return run_ensure(ctx, CARDDAV, account, not dry_run)
