"""The calendars-and-contacts contract: `communications.dav.contract.yaml`.

Which CalDAV/CardDAV accounts to use (Stalwart, or any server: Radicale and
Xandikos in the lab), the calendars and address books that must exist, and the
calendar sync from the operator's layers (calendar.global.yaml) to a CalDAV
calendar. The spine's calendar.sync.contract.yaml targets Microsoft 365 and its
gates lock that provider, so the CalDAV sync has its own section here, with the
same state fields, limits, retry and conflict vocabulary.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from spine_comms.contracts.mailauth import HostName
from spine_comms.core.contracts import ContractModel

DAV_CONTRACT = "communications.dav.contract.yaml"

COLLECTION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Account(ContractModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # Where discovery starts: /.well-known/caldav|carddav on this origin, then the principal.
    base_url: str = Field(pattern=r"^https?://")
    # When set, RFC 6764 SRV/TXT records of this domain are looked up and reported too.
    domain: HostName | None = None
    login: str | None = None  # None: a server without authentication (Xandikos)
    password_ref: str | None = None
    server_name: str | None = None  # certificate name when base_url names an address
    ca_file: str | None = None  # default: the stack contract's endpoints.ca_file, else the system store
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class Calendar(ContractModel):
    id: str = Field(pattern=COLLECTION_ID)  # the collection's last path segment, e.g. spine-ops
    account: str | None = None  # default: the first account
    display_name: str | None = None
    color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
    components: list[Literal["VEVENT", "VTODO", "VJOURNAL"]] = Field(default_factory=lambda: ["VEVENT"])
    description: str | None = None


class AddressBook(ContractModel):
    id: str = Field(pattern=COLLECTION_ID)
    account: str | None = None
    display_name: str | None = None
    description: str | None = None


class SyncLimits(ContractModel):
    max_create: int = Field(default=200, ge=0, le=100_000)
    max_update: int = Field(default=200, ge=0, le=100_000)
    max_delete: int = Field(default=200, ge=0, le=100_000)


class SyncRetry(ContractModel):
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: list[float] = Field(default_factory=lambda: [1.0, 3.0, 8.0])


class Sync(ContractModel):
    # The events: calendar.global.yaml (its layers), or any events file in the same shape.
    # Relative paths are under the contracts directory (bindings/ or ops/bindings/).
    source: str = "calendar.global.yaml"
    # Which layers to write. Default: those whose authority is spine (never external ones).
    layers: list[str] | None = None
    target_calendar: str = Field(pattern=COLLECTION_ID)  # a calendar id from `calendars`
    account: str | None = None  # the target calendar's account; default: the first account
    # Relative paths are under the mailroom state directory.
    state_path: str = "calendar-sync/caldav-state.json"
    lock_path: str = "calendar-sync/.caldav.lock"
    limits: SyncLimits = Field(default_factory=SyncLimits)
    retry: SyncRetry = Field(default_factory=SyncRetry)
    # An event changed on the server since the last sync: spine_wins overwrites it (the layers
    # are the authority), server_wins keeps it and stops managing it, report leaves both and
    # reports a conflict.
    conflict_policy: Literal["spine_wins", "server_wins", "report"] = "report"
    stop_on_first_error: bool = True
    # Events in the target that the state does not know are never touched; events the state
    # knows but the source no longer has are deleted when this is true.
    delete_removed: bool = True
    # The longest a sync-collection delta is trusted: then the whole calendar is listed again.
    # Stalwart answers a token older than its change log with a partial delta and no error, so
    # without this a deletion on the server could go unseen for good. 0: list every time.
    full_listing_every_hours: float = Field(default=24.0, ge=0, le=24 * 366)


class DavContract(ContractModel):
    version: int | str
    accounts: list[Account] = Field(min_length=1)
    calendars: list[Calendar] = Field(default_factory=list)
    addressbooks: list[AddressBook] = Field(default_factory=list)
    sync: Sync | None = None

    @model_validator(mode="after")
    def _references_resolve(self) -> DavContract:
        ids = [a.id for a in self.accounts]
        if len(set(ids)) != len(ids):
            raise ValueError("account ids must be unique")
        for kind, items in (("calendar", self.calendars), ("address book", self.addressbooks)):
            for item in items:
                if item.account and item.account not in ids:
                    raise ValueError(f"{kind} {item.id}: account {item.account!r} is not among {', '.join(ids)}")
        if self.sync and self.calendar(self.sync.target_calendar, self.sync.account) is None:
            raise ValueError(f"sync.target_calendar {self.sync.target_calendar!r} is not among the calendars")
        return self

    def account(self, account_id: str | None) -> Account:
        if account_id is None:
            return self.accounts[0]
        return next(a for a in self.accounts if a.id == account_id)

    def calendar(self, calendar_id: str, account_id: str | None = None) -> Calendar | None:
        """The calendar with this id on this account (default: the first account)."""
        account = account_id or self.accounts[0].id
        return next(
            (c for c in self.calendars if c.id == calendar_id and (c.account or self.accounts[0].id) == account), None
        )

    def addressbook(self, book_id: str, account_id: str | None = None) -> AddressBook | None:
        account = account_id or self.accounts[0].id
        return next(
            (b for b in self.addressbooks if b.id == book_id and (b.account or self.accounts[0].id) == account), None
        )


def safe_segment(value: str) -> bool:
    """A collection or resource name that cannot climb out of its parent (no '/', no '..')."""
    return bool(re.match(COLLECTION_ID, value)) and ".." not in value
