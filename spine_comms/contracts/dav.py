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

from pydantic import Field, field_validator, model_validator

from spine_comms.contracts.mailauth import HostName
from spine_comms.core.contract_files import CaFile
from spine_comms.core.contracts import ContractModel
from spine_comms.core.secrets import check_secret_reference

DAV_CONTRACT = "communications.dav.contract.yaml"

COLLECTION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Account(ContractModel):
    """A CalDAV/CardDAV account."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """The account's id, referred to by calendars, address books and sync."""
    base_url: str = Field(pattern=r"^https?://")
    """Where discovery starts: /.well-known/caldav|carddav on this origin, then the principal."""
    domain: HostName | None = None
    """When set, RFC 6764 SRV/TXT records of this domain are looked up and reported too."""
    login: str | None = None
    """The login; none: a server without authentication (Xandikos)."""
    password_ref: str | None = None
    """A secret reference for the password (env:, file:, cmd:, infisical://)."""
    server_name: str | None = None
    """The certificate name when base_url names an address."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates (relative to the root); default: the stack contract's, else the system's."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """How long a connection or an answer may take."""
    server_kind: Literal["auto", "generic", "stalwart", "radicale", "xandikos"] = "auto"
    """Which server this is, for python-caldav's compatibility hints (its known quirks of that server, e.g.
    Stalwart's rate limiting); auto: named by the server's first answer (its Server header), else generic (no
    quirk assumed). Not the certificate name: that is server_name."""

    @field_validator("password_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return check_secret_reference(value)


class Calendar(ContractModel):
    """A calendar that must exist."""

    id: str = Field(pattern=COLLECTION_ID)
    """The collection's last path segment, e.g. spine-ops."""
    account: str | None = None
    """The account it lives in; default: the first account."""
    display_name: str | None = None
    """Its display name."""
    color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
    """Its color, #RRGGBB or #RRGGBBAA."""
    components: list[Literal["VEVENT", "VTODO", "VJOURNAL"]] = Field(default_factory=lambda: ["VEVENT"])
    """The components it holds."""
    description: str | None = None
    """Its description."""


class AddressBook(ContractModel):
    """An address book that must exist."""

    id: str = Field(pattern=COLLECTION_ID)
    """The collection's last path segment."""
    account: str | None = None
    """The account it lives in; default: the first account."""
    display_name: str | None = None
    """Its display name."""
    description: str | None = None
    """Its description."""


class SyncLimits(ContractModel):
    """A sync that would do more than this stops before writing anything."""

    max_create: int = Field(default=200, ge=0, le=100_000)
    """At most this many events created in one run."""
    max_update: int = Field(default=200, ge=0, le=100_000)
    """At most this many events updated in one run."""
    max_delete: int = Field(default=200, ge=0, le=100_000)
    """At most this many events deleted in one run."""


class SyncRetry(ContractModel):
    """How a failed write is retried."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per write."""
    backoff_seconds: list[float] = Field(default_factory=lambda: [1.0, 3.0, 8.0])
    """Waits between attempts; the last repeats."""


class Sync(ContractModel):
    """The calendar sync from the operator's layers to a CalDAV calendar."""

    source: str = "calendar.global.yaml"
    """The events: calendar.global.yaml (its layers), or any events file in the same shape; a relative path is
    under the contracts directory."""
    layers: list[str] | None = None
    """Which layers to write; default: those whose authority is spine (never external ones)."""
    target_calendar: str = Field(pattern=COLLECTION_ID)
    """A calendar id from `calendars`."""
    account: str | None = None
    """The target calendar's account; default: the first account."""
    state_path: str = "calendar-sync/caldav-state.json"
    """The sync state; a relative path is under the mailroom state directory."""
    lock_path: str = "calendar-sync/.caldav.lock"
    """The sync lock; a relative path is under the mailroom state directory."""
    limits: SyncLimits = Field(default_factory=SyncLimits)
    """The most one run may change."""
    retry: SyncRetry = Field(default_factory=SyncRetry)
    """How a failed write is retried."""
    conflict_policy: Literal["spine_wins", "server_wins", "report"] = "report"
    """An event changed on the server since the last sync: spine_wins overwrites it, server_wins keeps it and
    stops managing it, report leaves both and reports a conflict."""
    stop_on_first_error: bool = True
    """Stop the run at the first failed write."""
    delete_removed: bool = True
    """Delete events the state knows but the source no longer has (events the state does not know are never
    touched)."""
    full_listing_every_hours: float = Field(default=24.0, ge=0, le=24 * 366)
    """The longest a sync-collection delta is trusted; then the whole calendar is listed again. Stalwart
    answers a token older than its change log with a partial delta and no error, so without this a deletion
    on the server could go unseen for good. 0: list every time."""


class DavContract(ContractModel):
    """communications.dav.contract.yaml: CalDAV/CardDAV accounts, collections and the calendar sync."""

    version: int | str
    """The contract's version."""
    accounts: list[Account] = Field(min_length=1)
    """The accounts."""
    calendars: list[Calendar] = Field(default_factory=list)
    """Calendars that must exist."""
    addressbooks: list[AddressBook] = Field(default_factory=list)
    """Address books that must exist."""
    sync: Sync | None = None
    """The calendar sync, when one is run."""

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
