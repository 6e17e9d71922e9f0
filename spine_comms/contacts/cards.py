"""contacts.card.create|list|get|update|delete: contact CRUD over CardDAV (RFC 6352).

Cards are vCards (4.0 written by default, 3.0 on request; both read). Every update and delete
is conditional on the card's ETag (If-Match): a card changed by someone else since it was read
(HTTP 412) is a conflict reported with both versions' one-line summaries, never overwritten.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from spine_comms.calendar.dav_lookup import could_not_evaluate
from spine_comms.calendar.dav_options import (
    AccountOpt,
    AddressBookOpt,
    EtagOpt,
    normal_etag,
    would_write,
)
from spine_comms.contacts.addressbook import Book, StoredCard, find_by_email, find_by_uid, list_cards, open_book
from spine_comms.contacts.vcard import (
    CardError,
    Changes,
    Contact,
    build,
    parse,
    parse_email_arg,
    parse_phone_arg,
    revise,
    split_name,
)
from spine_comms.contracts.dav import safe_segment
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status

VCARD_TYPE = "text/vcard; charset=utf-8"

UidOpt = Annotated[str | None, typer.Option("--uid", metavar="UID", help="The card's UID.")]
NameOpt = Annotated[str | None, typer.Option("--name", metavar="TEXT", help="Full name (FN); N is derived from it.")]
GivenOpt = Annotated[str | None, typer.Option("--given", metavar="TEXT", help="Given name (N), instead of deriving.")]
FamilyOpt = Annotated[str | None, typer.Option("--family", metavar="TEXT", help="Family name (N).")]
EmailsOpt = Annotated[
    list[str] | None,
    typer.Option("--email", metavar="[TYPE:]ADDRESS", help="An email, optionally typed (work:ada@example.org); "
                 "repeatable. On update: replaces every email."),
]  # fmt: skip
PhonesOpt = Annotated[
    list[str] | None,
    typer.Option("--phone", metavar="[TYPE:]NUMBER", help="A phone number, optionally typed (cell:+44 20 7946 "
                 "0000); repeatable. On update: replaces every phone."),
]  # fmt: skip
OrgOpt = Annotated[str | None, typer.Option("--org", metavar="TEXT", help="Organization (ORG). On update, '' removes.")]
NoteOpt = Annotated[str | None, typer.Option("--note", metavar="TEXT", help="A note (NOTE). On update, '' removes.")]
NewUidOpt = Annotated[
    str | None,
    typer.Option("--uid", metavar="UID",
                 help="The card's UID, also its file name (<uid>.vcf): letters, digits, '.', '_', '-'. "
                      "Default: a new UUID."),
]  # fmt: skip
SearchOpt = Annotated[
    str | None,
    typer.Option("--search", metavar="TEXT",
                 help="Only cards whose name or email contains TEXT (case-insensitive). Asked of the server "
                      "(addressbook-query) where it works, always confirmed here."),
]  # fmt: skip
AddEmailOpt = Annotated[list[str] | None, typer.Option("--add-email", metavar="[TYPE:]ADDRESS",
                                                       help="Add an email; repeatable.")]  # fmt: skip
RemoveEmailOpt = Annotated[list[str] | None, typer.Option("--remove-email", metavar="ADDRESS",
                                                          help="Remove an email; repeatable.")]  # fmt: skip
AddPhoneOpt = Annotated[list[str] | None, typer.Option("--add-phone", metavar="[TYPE:]NUMBER",
                                                       help="Add a phone; repeatable.")]  # fmt: skip
RemovePhoneOpt = Annotated[list[str] | None, typer.Option("--remove-phone", metavar="NUMBER",
                                                          help="Remove a phone; repeatable.")]  # fmt: skip
RawOpt = Annotated[bool, typer.Option("--raw", help="Include the vCard text as stored (data.vcard).")]


def _book(ctx: RunContext, account: str | None, addressbook: str | None, result: Result) -> Book:
    book = open_book(ctx, account, addressbook)
    result.add(Check("contacts.addressbook.found", Status.OK, f"{book.book_id} at {book.href}", book.where,
                     book.book_id, book.href))  # fmt: skip
    result.data.update(account=book.account.id, addressbook=book.book_id, addressbook_href=book.href)
    return book


def _usage(function, *args):
    """Run a vcard value parser; its CardError is a usage error (exit 2), said in one line."""
    try:
        return function(*args)
    except CardError as exc:
        raise UsageError(str(exc)) from None


def _must_find(book: Book, uid: str | None, result: Result, email: str | None = None) -> StoredCard | None:
    if email is not None:
        found = find_by_email(book, email)
        if len(found) > 1:
            uids = ", ".join(str(c.contact.uid) for c in found)
            result.add(Check("contacts.card.found", Status.FAIL, f"{len(found)} cards have the email {email}: {uids}",
                             email, "one card", [c.contact.uid for c in found]))  # fmt: skip
            result.data["candidates"] = [c.to_dict() for c in found]
            return None
        card = found[0] if found else None
    else:
        card = find_by_uid(book, uid)
    key = email if email is not None else uid
    if card is None:
        result.add(Check("contacts.card.found", Status.FAIL, f"no card with {'email' if email else 'UID'} {key} in "
                         f"{book.where}", key, "a card", None))  # fmt: skip
        result.summary.append(f"{key}: not found in {book.where}")
        return None
    result.add(Check("contacts.card.found", Status.OK, f"{card.href} (ETag {card.etag})", key, "a card", card.href))
    return card


def _conflict(result: Result, exc, card: StoredCard, expected: str | None, yours: str | None, what: str) -> None:
    """Report a 412: the version the caller would have written and the one on the server now."""
    theirs = parse(exc.current).summary() if exc.current else "(could not be read: deleted or hidden)"
    result.data["conflict"] = {
        "uid": card.contact.uid, "href": card.href, "expected_etag": expected, "current_etag": exc.current_etag,
        "yours": yours, "theirs": theirs,
    }  # fmt: skip
    result.add(Check("contacts.card.conflict", Status.FAIL,
                     f"the card changed on the server since ETag {expected}; not {what}", card.href, expected,
                     exc.current_etag, {"yours": yours, "theirs": theirs}))  # fmt: skip
    result.summary += [f"conflict: {card.href} changed since {expected}; nothing written",
                       f"  yours:  {yours}", f"  theirs: {theirs}"]  # fmt: skip


# ---- the capabilities ---------------------------------------------------------------------------------


@capability("contacts.card.create", safety="mutating", approval="auto")
def card_create(
    ctx: RunContext,
    name: NameOpt = None,
    given: GivenOpt = None,
    family: FamilyOpt = None,
    email: EmailsOpt = None,
    phone: PhonesOpt = None,
    org: OrgOpt = None,
    note: NoteOpt = None,
    uid: NewUidOpt = None,
    vcard_version: Annotated[
        str, typer.Option("--vcard-version", metavar="3.0|4.0", help="vCard version to write.")
    ] = "4.0",
    account: AccountOpt = None,
    addressbook: AddressBookOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Create a contact: PUT <addressbook>/<uid>.vcf with If-None-Match: * (never replaces a card).
    Prints the UID, href and ETag that get/update/delete take; --dry-run shows the request instead."""
    if not (name or given or family):
        raise UsageError("a contact needs a name: --name 'Full Name' (or --given/--family)")
    uid = uid or str(uuid.uuid4())
    if not safe_segment(uid):
        raise UsageError(f"--uid {uid!r}: use letters, digits, '.', '_' and '-' (it is also the file name)")
    derived = split_name(name) if name else ("", "")
    contact = Contact(
        uid=uid, full_name=name or "", given=given if given is not None else derived[0],
        family=family if family is not None else derived[1],
        emails=[_usage(parse_email_arg, e) for e in email or []],
        phones=[_usage(parse_phone_arg, p) for p in phone or []], org=org, note=note,
    )  # fmt: skip
    text = _usage(build, contact, vcard_version)
    result = Result()
    book = _book(ctx, account, addressbook, result)
    from spine_comms.protocols.dav import DavError, child_href

    href = book.client.path_of(child_href(book.href, f"{uid}.vcf"))
    result.data.update(dry_run=dry_run, uid=uid, href=href, etag=None, card=parse(text).to_dict())
    if dry_run:
        book.client.close()
        return would_write(result, "contacts.card.created", f"create {uid}", method="PUT", href=href,
                           create_only=True, body=text)  # fmt: skip
    with book.client:
        try:
            etag = book.client.put(href, text.encode(), VCARD_TYPE, create_only=True)
        except DavError as exc:
            if exc.kind in ("precondition", "conflict", "forbidden", "too_large"):
                why = "a card with this UID already exists" if exc.kind == "precondition" else exc.message
                result.add(Check("contacts.card.created", Status.FAIL, why, href, "created", exc.status))
                result.summary.append(f"{uid}: not created: {why}")
                result.data.update(requests=book.client.requests)
                return result
            raise could_not_evaluate(book.account.id, exc) from None
    card = parse(text)
    result.add(Check("contacts.card.created", Status.OK, f"{href} ETag {etag}", href, "created", "created"))
    result.data.update(uid=uid, href=href, etag=etag, card=card.to_dict(), requests=book.client.requests)
    result.summary.append(f"created {uid}  {href}  ETag {etag}  ·  {card.summary()}")
    return result


@capability("contacts.card.list", safety="read-only", approval="auto")
def card_list(
    ctx: RunContext,
    search: SearchOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, metavar="N", help="At most N cards.")] = None,
    raw: RawOpt = False,
    account: AccountOpt = None,
    addressbook: AddressBookOpt = None,
) -> Result:
    """List the address book's contacts (vCard 3.0 and 4.0), sorted by name, or search them."""
    result = Result()
    book = _book(ctx, account, addressbook, result)
    with book.client:
        cards, how = list_cards(book, search)
    cards.sort(key=lambda c: (c.contact.full_name.casefold(), c.contact.uid or "", c.href))
    shown = cards[:limit] if limit else cards
    result.data.update(count=len(shown), total=len(cards), truncated=len(shown) < len(cards), search=how,
                       cards=[c.to_dict(raw=raw) for c in shown], requests=book.client.requests,
                       skipped_hrefs=book.skipped)  # fmt: skip
    unreadable = [c for c in cards if c.contact.problems]
    result.add(Check("contacts.card.readable", Status.WARN if unreadable else Status.OK,
                     f"{len(unreadable)} of {len(cards)} card(s) read with problems" if unreadable
                     else f"{len(cards)} card(s) read", book.where, 0, len(unreadable),
                     {c.href: c.contact.problems for c in unreadable} or None))  # fmt: skip
    if book.skipped:
        result.add(Check("contacts.addressbook.hrefs", Status.WARN, f"{len(book.skipped)} href(s) outside the "
                         "address book in the server's answer were ignored", book.where, 0, len(book.skipped),
                         book.skipped[:20]))  # fmt: skip
    for card in shown:
        result.summary.append(f"{card.contact.uid or '(no UID)'}  {card.contact.summary()}")
    found = f"{len(cards)} card(s)" + (f" matching {search!r}" if search else "")
    result.summary.append(found + (f", showing {len(shown)}" if len(shown) < len(cards) else ""))
    return result


@capability("contacts.card.get", safety="read-only", approval="auto")
def card_get(
    ctx: RunContext,
    uid: UidOpt = None,
    email: Annotated[
        str | None, typer.Option("--email", metavar="ADDRESS", help="Find the one card with this email instead.")
    ] = None,
    raw: RawOpt = False,
    account: AccountOpt = None,
    addressbook: AddressBookOpt = None,
) -> Result:
    """Show one contact by UID (or by email), with its href and ETag (the version update/delete pin)."""
    if (uid is None) == (email is None):
        raise UsageError("name the card with exactly one of --uid or --email")
    result = Result()
    book = _book(ctx, account, addressbook, result)
    with book.client:
        card = _must_find(book, uid, result, email)
    result.data["requests"] = book.client.requests
    if card is not None:
        result.data.update(uid=card.contact.uid, href=card.href, etag=card.etag, card=card.to_dict(raw=raw))
        result.summary.append(f"{card.contact.uid}  ETag {card.etag}  ·  {card.contact.summary()}")
        if card.contact.problems:
            result.add(Check("contacts.card.readable", Status.WARN, "; ".join(card.contact.problems), card.href))
    return result


@capability("contacts.card.update", safety="mutating", approval="auto")
def card_update(
    ctx: RunContext,
    uid: UidOpt = None,
    name: NameOpt = None,
    given: GivenOpt = None,
    family: FamilyOpt = None,
    email: EmailsOpt = None,
    add_email: AddEmailOpt = None,
    remove_email: RemoveEmailOpt = None,
    phone: PhonesOpt = None,
    add_phone: AddPhoneOpt = None,
    remove_phone: RemovePhoneOpt = None,
    org: OrgOpt = None,
    note: NoteOpt = None,
    etag: EtagOpt = None,
    account: AccountOpt = None,
    addressbook: AddressBookOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Change a contact: read it with its ETag, apply the changes (every property not named is kept),
    PUT with If-Match. A card changed since (412, or a stale --etag) is a conflict (exit 1) with both
    versions' summaries in data.conflict; nothing is overwritten. --dry-run shows the request instead."""
    if not uid:
        raise UsageError("name the card to change with --uid")
    changes = Changes(
        full_name=name, given=given, family=family,
        emails=[_usage(parse_email_arg, e) for e in email] if email else None,
        add_emails=[_usage(parse_email_arg, e) for e in add_email or []], remove_emails=list(remove_email or []),
        phones=[_usage(parse_phone_arg, p) for p in phone] if phone else None,
        add_phones=[_usage(parse_phone_arg, p) for p in add_phone or []], remove_phones=list(remove_phone or []),
        org=org, note=note,
    )  # fmt: skip
    if changes.empty():
        raise UsageError("nothing to change: give --name, --email, --add-email, --phone, --org, --note ...")
    result = Result()
    book = _book(ctx, account, addressbook, result)
    from spine_comms.protocols.dav import DavError

    with book.client:
        card = _must_find(book, uid, result)
        if card is None:
            return result
        expected = normal_etag(etag) or card.etag
        result.data.update(uid=uid, href=card.href, expected_etag=expected, dry_run=dry_run,
                           requests=book.client.requests)  # fmt: skip
        try:
            text, notes = revise(card.text, changes)
        except CardError as exc:
            result.add(Check("contacts.card.updated", Status.FAIL, str(exc), card.href, "updated", None))
            return result
        new = parse(text)
        for line in notes:
            result.add(Check("contacts.card.change", Status.WARN, line, card.href))
        if new.to_dict() == card.contact.to_dict() and expected == card.etag:
            result.add(Check("contacts.card.updated", Status.OK, "no change: nothing written", card.href,
                             "updated", "unchanged"))  # fmt: skip
            result.data.update(etag=card.etag, changed=False, card=card.to_dict())
            result.summary.append(f"{uid}: already as asked; nothing written")
            return result
        if dry_run:
            result.data.update(changed=True, before=card.contact.summary(), card=new.to_dict())
            result.summary += [f"  before: {card.contact.summary()}", f"  after:  {new.summary()}"]
            return would_write(result, "contacts.card.updated", f"update {uid}", method="PUT", href=card.href,
                               if_match=expected, body=text)  # fmt: skip
        try:
            new_etag = book.client.put(card.href, text.encode(), VCARD_TYPE, etag=expected)
        except DavError as exc:
            result.data["requests"] = book.client.requests
            if exc.kind == "precondition":
                _conflict(result, exc, card, expected, new.summary(), "updated")
                return result
            if exc.kind in ("forbidden", "conflict", "too_large"):
                result.add(Check("contacts.card.updated", Status.FAIL, exc.message, card.href, "updated", exc.status))
                return result
            raise could_not_evaluate(book.account.id, exc) from None
    result.add(Check("contacts.card.updated", Status.OK, f"ETag {expected} -> {new_etag}", card.href, "updated",
                     "updated", {"before": card.contact.summary(), "after": new.summary()}))  # fmt: skip
    result.data.update(etag=new_etag, changed=True, before=card.contact.summary(), card=new.to_dict(),
                       requests=book.client.requests)  # fmt: skip
    result.summary += [f"updated {uid}  ETag {new_etag}", f"  before: {card.contact.summary()}",
                       f"  after:  {new.summary()}"]  # fmt: skip
    return result


@capability("contacts.card.delete", safety="mutating", approval="auto")
def card_delete(
    ctx: RunContext, uid: UidOpt = None, etag: EtagOpt = None, account: AccountOpt = None,
    addressbook: AddressBookOpt = None, dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:  # fmt: skip
    """Delete a contact with If-Match: the ETag given, else the one just read. A card changed since
    is a conflict (exit 1) with the server's version summarized; nothing is deleted. --dry-run shows
    the request instead."""
    if not uid:
        raise UsageError("name the card to delete with --uid")
    result = Result()
    book = _book(ctx, account, addressbook, result)
    from spine_comms.protocols.dav import DavError

    with book.client:
        card = _must_find(book, uid, result)
        if card is None:
            return result
        expected = normal_etag(etag) or card.etag
        result.data.update(uid=uid, href=card.href, expected_etag=expected, dry_run=dry_run, card=card.to_dict())
        if not expected:
            result.add(Check("contacts.card.deleted", Status.FAIL, "the server gave no ETag, so the delete cannot "
                             "be made conditional; pass --etag", card.href, "deleted", None))  # fmt: skip
            return result
        if dry_run:
            result.summary.append(card.contact.summary())
            return would_write(result, "contacts.card.deleted", f"delete {uid}", method="DELETE", href=card.href,
                               if_match=expected)  # fmt: skip
        try:
            book.client.delete(card.href, etag=expected)
        except DavError as exc:
            result.data["requests"] = book.client.requests
            if exc.kind == "precondition":
                _conflict(result, exc, card, expected, f"(delete) {card.contact.summary()}", "deleted")
                return result
            if exc.kind in ("forbidden", "conflict", "not_found"):
                result.add(Check("contacts.card.deleted", Status.FAIL, exc.message, card.href, "deleted", exc.status))
                return result
            raise could_not_evaluate(book.account.id, exc) from None
    result.data.update(deleted=True, card=card.to_dict(), requests=book.client.requests)
    result.add(Check("contacts.card.deleted", Status.OK, f"deleted (If-Match {expected})", card.href, "deleted",
                     "deleted"))  # fmt: skip
    result.summary.append(f"deleted {uid}  {card.href}  ·  {card.contact.summary()}")
    return result
