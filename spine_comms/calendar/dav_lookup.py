"""One of the contract's DAV collections, found on its server, and DAV failures said the same way.

Every capability that works inside a calendar or an address book (calendar.event.*,
calendar.sync.*, contacts.card.*) needs the same step: pick the account, connect,
discover the home set, and find the collection there by its last path segment. It
lives here once, with one wording for what can go wrong:

- an unknown --account, no collection named, or one that is not on the server: UsageError
  (exit 2), the last with the hint to run the kind's ensure capability;
- a server that cannot be asked (refused login, unreachable, timeout, odd answers):
  CouldNotEvaluate (exit 3) naming the account, never the password.

`Kind` carries the words that differ between CalDAV and CardDAV.
"""

from __future__ import annotations

import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spine_comms.contracts.dav import DAV_CONTRACT, DavContract, safe_segment
from spine_comms.core.errors import CouldNotEvaluate, UsageError
from spine_comms.core.outcomes import could_not_evaluate as outcome_error

if TYPE_CHECKING:
    from spine_comms.contracts.dav import Account
    from spine_comms.core.context import RunContext
    from spine_comms.protocols.dav import Collection, DavClient, DavError


@dataclass(frozen=True)
class Kind:
    protocol: str  # caldav | carddav: check id prefix and discovery kind
    collection: str  # calendar | addressbook: the resourcetype listed
    dav_class: str  # what OPTIONS must advertise
    noun: str  # for sentences
    ensure: str  # the capability that fixes a missing one
    option: str  # the option that names one collection

    @property
    def status(self) -> str:
        return self.ensure.removesuffix(".ensure") + ".status"

    def wanted(self, contract: DavContract, account_id: str | None) -> list:
        """The contract's collections of this kind on `account_id` (None: on any account)."""
        first = contract.accounts[0].id
        items = contract.calendars if self.collection == "calendar" else contract.addressbooks
        return [item for item in items if account_id in (None, item.account or first)]


CALDAV = Kind("caldav", "calendar", "calendar-access", "calendar", "calendar.caldav.ensure", "--calendar")
CARDDAV = Kind("carddav", "addressbook", "addressbook", "address book", "contacts.carddav.ensure", "--addressbook")

# DavError kinds that mean "could not ask" rather than "the answer is no": exit 3.
UNEVALUABLE = ("unreachable", "timeout", "auth", "protocol", "redirect", "too_large")
_HINTS = {
    "auth": "check the account's login and password_ref",
    "unreachable": "check base_url, server_name, ca_file and that the server is up",
    "timeout": "the server is slow or unreachable; raise timeout_seconds or check the network",
    "redirect": "base_url should name the DAV server itself",
}


def failure_hint(exc: DavError) -> str | None:
    """What to check when an account fails this way (None when there is nothing useful to say)."""
    return _HINTS.get(exc.kind)


def could_not_evaluate(account_id: str, exc: DavError) -> CouldNotEvaluate:
    """The exit-3 error for a DAV failure on `account_id`; DavError messages never hold a password."""
    return outcome_error(exc, f"account {account_id}: {exc.message}", hint=failure_hint(exc))


@contextmanager
def dav_errors(account_id: str, kinds: tuple[str, ...] = UNEVALUABLE):
    """DavErrors of `kinds` inside the block become exit 3 naming the account; others pass on,
    for the caller to judge (a 412 is a conflict, a 404 a missing resource)."""
    from spine_comms.protocols.dav import DavError

    try:
        yield
    except DavError as exc:
        if exc.kind in kinds:
            raise could_not_evaluate(account_id, exc) from None
        raise


def last_segment(href: str) -> str:
    """A collection's id as the contract names it: the decoded last segment of its path."""
    return urllib.parse.unquote(urllib.parse.urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1])


def unknown_accounts(contract: DavContract, account_ids: list[str]) -> None:
    known = [a.id for a in contract.accounts]
    unknown = [a for a in account_ids if a not in known]
    if unknown:
        raise UsageError(f"--account {', '.join(unknown)}: not in {DAV_CONTRACT} (it has {', '.join(known)})")


def client_for(ctx, contract: DavContract, account: Account) -> DavClient:
    from spine_comms.protocols.dav import connect

    return connect(ctx, account, first=account.id == contract.accounts[0].id)


@dataclass
class Opened:
    kind: Kind
    account: Account
    collection_id: str
    in_contract: bool
    client: DavClient
    href: str  # the collection's path on the server, ending in "/"
    display_name: str | None

    def describe(self) -> str:
        return f"{self.kind.noun} {self.collection_id} on account {self.account.id}"


def choose(contract: DavContract, kind: Kind, account_id: str | None, collection_id: str | None):
    """(account, collection id, named in the contract?) for --account/--calendar|--addressbook:
    the collection defaults to the contract's first of this kind (on the account, when given),
    the account to that collection's."""
    if account_id is not None:
        unknown_accounts(contract, [account_id])
    if collection_id is None:
        mine = kind.wanted(contract, account_id)
        if not mine:
            where = f" on account {account_id}" if account_id else ""
            raise UsageError(f"{DAV_CONTRACT} names no {kind.noun}{where}",
                             hint=f"give {kind.option} ID (the collection's last path segment)")  # fmt: skip
        collection_id = mine[0].id
        account_id = account_id or mine[0].account
    if not safe_segment(collection_id):
        raise UsageError(f"{kind.option} {collection_id[:80]!r} is not a collection name (letters, digits, . _ -)")
    account = contract.account(account_id)
    named = contract.calendar if kind.collection == "calendar" else contract.addressbook
    in_contract = named(collection_id, account.id) is not None
    return account, collection_id, in_contract


def find(client: DavClient, kind: Kind, account: Account, collection_id: str, *, in_contract: bool) -> Collection:
    """The collection named `collection_id` under the account's home set (discovered), or why not."""
    from spine_comms.protocols.dav import discover, list_collections

    with dav_errors(account.id):
        found = discover(client, kind.protocol)
        if not found.home_set:
            raise CouldNotEvaluate(f"account {account.id}: discovery found no {kind.collection}-home-set",
                                   hint=f"run {kind.status} to see each discovery step",
                                   kind="protocol_error")  # fmt: skip
        collections = list_collections(client, found.home_set, kind.collection)
    match = next((c for c in collections if last_segment(c.href) == collection_id and c.href.startswith("/")), None)
    if match is not None:
        return match
    there = ", ".join(sorted(last_segment(c.href) for c in collections)) or "none"
    hint = f"run `spine-comms {kind.ensure} --execute` to create the contract's {kind.noun}s"
    if not in_contract:
        hint = f"{kind.noun}s under {found.home_set}: {there}; {kind.ensure} creates only the contract's"
    raise UsageError(f"no {kind.noun} {collection_id!r} on account {account.id} (there: {there})", hint=hint)


def open_collection(ctx: RunContext, kind: Kind, account_id: str | None, collection_id: str | None) -> Opened:
    """Resolve the options against the contract and the server; the caller closes `client`."""
    contract = ctx.contracts.load(DAV_CONTRACT, DavContract)
    account, collection_id, in_contract = choose(contract, kind, account_id, collection_id)
    client = client_for(ctx, contract, account)
    try:
        match = find(client, kind, account, collection_id, in_contract=in_contract)
    except BaseException:
        client.close()
        raise
    href = match.href.rstrip("/") + "/"
    ctx.log(f"{kind.noun} {collection_id}: {client.origin}{href}")
    return Opened(kind, account, collection_id, in_contract, client, href, match.display_name)
