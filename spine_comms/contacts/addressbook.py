"""One address book on a CardDAV server: find it, list its cards, search them, find one by UID or email.

The contacts.card.* capabilities stand on this. Every card comes back with its href and ETag so
updates and deletes can be conditional. Server answers are untrusted: an href outside the address
book is skipped, not fetched, and a card that does not parse is still listed with its problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from spine_comms.calendar.dav_lookup import CARDDAV, could_not_evaluate, open_collection
from spine_comms.contacts.vcard import MAX_CARD_BYTES, Contact, parse

if TYPE_CHECKING:
    from spine_comms.contracts.dav import Account
    from spine_comms.core.context import RunContext
    from spine_comms.protocols.dav import DavClient

CARDDAV_NS = "urn:ietf:params:xml:ns:carddav"
ADDRESS_DATA = f"{{{CARDDAV_NS}}}address-data"
MULTIGET_BATCH = 100
# Statuses that mean "this server cannot do that query": fall back to a plain listing.
_QUERY_UNSUPPORTED = (400, 403, 405, 415, 422, 500, 501, 502)


@dataclass
class StoredCard:
    href: str
    etag: str | None
    text: str
    contact: Contact

    def to_dict(self, *, raw: bool = False) -> dict:
        out = {"href": self.href, "etag": self.etag, **self.contact.to_dict(), "summary": self.contact.summary()}
        if raw:
            out["vcard"] = self.text
        return out


@dataclass
class Book:
    account: Account
    book_id: str
    href: str
    client: DavClient
    display_name: str | None = None
    skipped: list[str] = field(default_factory=list)  # hrefs the server named outside this book
    too_large: list[dict] = field(default_factory=list)  # cards over MAX_CARD_BYTES: {href, bytes}, not read

    @property
    def where(self) -> str:
        return f"address book {self.book_id} on account {self.account.id}"


def open_book(ctx: RunContext, account_id: str | None, book_id: str | None) -> Book:
    """The address book `book_id` (default: the contract's first) on `account_id`, found by
    dav_lookup: exit 2 for one that is not there (with the contacts.carddav.ensure hint), exit 3
    when the server cannot be asked."""
    opened = open_collection(ctx, CARDDAV, account_id, book_id)
    return Book(opened.account, opened.collection_id, opened.href, opened.client, opened.display_name)


# ---- reading cards -------------------------------------------------------------------------------------


def _query_body(filter_xml: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<card:addressbook-query xmlns:d="DAV:" xmlns:card="{CARDDAV_NS}">'
        f"<d:prop><d:getetag/><card:address-data/></d:prop>{filter_xml}</card:addressbook-query>"
    ).encode()


def _multiget_body(hrefs: list[str]) -> bytes:
    inner = "".join(f"<d:href>{escape(h)}</d:href>" for h in hrefs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<card:addressbook-multiget xmlns:d="DAV:" xmlns:card="{CARDDAV_NS}">'
        f"<d:prop><d:getetag/><card:address-data/></d:prop>{inner}</card:addressbook-multiget>"
    ).encode()


def _text_filter(properties: tuple[str, ...], text: str, match_type: str, collation: str) -> str:
    matches = "".join(
        f'<card:prop-filter name="{name}"><card:text-match collation="{collation}" match-type="{match_type}">'
        f"{escape(text)}</card:text-match></card:prop-filter>"
        for name in properties
    )
    return f'<card:filter test="anyof">{matches}</card:filter>'


def _inside(book: Book, href: str) -> bool:
    """A member of this book: one segment below its href, on its origin."""
    base = book.href.rstrip("/") + "/"
    return href.startswith(base) and len(href) > len(base) and "/" not in href[len(base) :].rstrip("/")


def _cards_from(book: Book, resources) -> tuple[list[StoredCard], list[str]]:
    """Cards with address data, and the member hrefs that came without it (to fetch by multiget)."""
    cards, missing = [], []
    for resource in resources:
        if resource.href.rstrip("/") == book.href.rstrip("/"):
            continue  # Xandikos lists the collection itself in query answers
        if not _inside(book, resource.href):
            book.skipped.append(resource.href[:200])
            continue
        if resource.status >= 300:
            continue
        data = resource.props.get(ADDRESS_DATA)
        if isinstance(data, str) and data:
            size = len(data.encode("utf-8", errors="replace")) if len(data) * 4 > MAX_CARD_BYTES else len(data)
            if size > MAX_CARD_BYTES:
                _over_limit(book, resource.href, size)
                continue
            cards.append(StoredCard(resource.href, resource.etag, data, parse(data)))
        elif not resource.href.endswith("/"):
            missing.append(resource.href)
    return cards, missing


def _over_limit(book: Book, href: str, size: int | None) -> None:
    """size None: its answer alone passed the client's body cap, which is then the limit named."""
    limit = MAX_CARD_BYTES if size is not None else book.client.max_body
    if all(entry["href"] != href for entry in book.too_large):
        book.too_large.append({"href": href, "bytes": size, "limit": limit})


def _multiget(book: Book, hrefs: list[str]) -> list[StoredCard]:
    """The cards at `hrefs`, in batches; one whose answer alone is over the body cap is named."""
    resources, over = book.client.report_in_batches(book.href, hrefs, _multiget_body, MULTIGET_BATCH)
    for href in over:
        _over_limit(book, href, None)
    return _cards_from(book, resources)[0]


def _query_failed(exc) -> bool:
    """An addressbook-query this server cannot do, or whose answer is over the body cap: list instead."""
    return exc.status in _QUERY_UNSUPPORTED or exc.kind == "too_large"


def _listing(book: Book) -> tuple[list[StoredCard], str]:
    """Every card: one addressbook-query, else PROPFIND Depth 1 and multiget in batches."""
    from spine_comms.protocols.dav import DavError

    try:
        cards, missing = _cards_from(book, book.client.report(book.href, _query_body("<card:filter/>"), 1))
        return cards + (_multiget(book, missing) if missing else []), "addressbook-query"
    except DavError as exc:
        if not _query_failed(exc):
            raise
    members = [r.href for r in book.client.propfind(book.href, ["{DAV:}getetag", "{DAV:}resourcetype"], 1)
               if _inside(book, r.href) and not r.href.endswith("/") and r.status < 300]  # fmt: skip
    return _multiget(book, members), "propfind+multiget"


def list_cards(book: Book, search: str | None = None) -> tuple[list[StoredCard], dict]:
    """The cards (matching `search` when given) and how they were found, for the result's data."""
    from spine_comms.protocols.dav import DavError

    how: dict = {"text": search, "server_side": None, "detail": None}
    try:
        if not search:
            cards, method = _listing(book)
            how.update(method=method)
            return cards, how
        try:
            # FN and EMAIL only: Radicale 3.1 answers 500 to a text-match on N (a compound value).
            body = _query_body(_text_filter(("FN", "EMAIL"), search, "contains", "i;unicode-casemap"))
            cards, missing = _cards_from(book, book.client.report(book.href, body, 1))
            cards += _multiget(book, missing) if missing else []
            how.update(method="addressbook-query", server_side=True,
                       detail="server-side text-match, each hit confirmed here")  # fmt: skip
        except DavError as exc:
            if not _query_failed(exc):
                raise
            cards, method = _listing(book)
            why = "its answer was over the body cap" if exc.kind == "too_large" else f"HTTP {exc.status}"
            how.update(
                method=method,
                server_side=False,
                detail=f"the server's text-match failed ({why}); matched here over a full listing",
            )
    except DavError as exc:
        raise could_not_evaluate(book.account.id, exc) from None
    # Servers differ in what they match (N, collations); this keeps only what the toolkit would match.
    return [c for c in cards if c.contact.matches(search)], how


def find_by_uid(book: Book, uid: str) -> StoredCard | None:
    """The card whose UID is `uid`: first at <book>/<uid>.vcf (where create puts it), else by search."""
    from spine_comms.protocols.dav import DavError, child_href

    try:
        href = book.client.path_of(child_href(book.href, f"{uid}.vcf"))
        try:
            body, etag = book.client.get(href)
            if len(body) > MAX_CARD_BYTES:
                _over_limit(book, href, len(body))
                return None  # where create puts this UID: the caller names it as over the limit
            card = StoredCard(href, etag, body.decode("utf-8", errors="replace"), parse(body))
            if card.contact.uid == uid:
                return card
        except DavError as exc:
            if exc.kind == "too_large":
                _over_limit(book, href, None)
                return None
            if exc.kind not in ("not_found", "protocol"):
                raise
        cards, _ = _listing(book)
    except DavError as exc:
        raise could_not_evaluate(book.account.id, exc) from None
    return next((c for c in cards if c.contact.uid == uid), None)


def find_by_email(book: Book, address: str) -> list[StoredCard]:
    cards, _ = list_cards(book, address)
    wanted = address.strip().casefold()
    return [c for c in cards if any(e.address.casefold() == wanted for e in c.contact.emails)]
