"""Options the DAV capabilities share (calendar.*, contacts.*), declared once with help that teaches.

Where an option means the same thing for events and cards it is one definition here; where
the words differ by kind (the collection option, the UID's owner) there is one per kind,
side by side. A dry run (the runner's `--dry-run`, or no `--execute`) comes with its answer's
shape: `would_write` fills it the same way for every write, so agents read one preview format.
"""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.core.result import Check, Result, Status

AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account",
        metavar="ID",
        help="The contract account (accounts[].id in communications.dav.contract.yaml). Default: the account "
        "of the contract's first calendar or address book; with --calendar/--addressbook, the first account.",
    ),
]
AccountsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--account",
        metavar="ID",
        help="Only this account of communications.dav.contract.yaml; repeatable. Default: every account.",
    ),
]
CalendarOpt = Annotated[
    str | None,
    typer.Option(
        "--calendar",
        metavar="ID",
        help="Calendar id: the collection's last path segment under the account's calendar-home-set "
        "(default: the contract's first calendar for the account).",
    ),
]
AddressBookOpt = Annotated[
    str | None,
    typer.Option(
        "--addressbook",
        metavar="ID",
        help="Address book id: the collection's last path segment under the account's addressbook-home-set "
        "(default: the contract's first address book for the account).",
    ),
]
EtagOpt = Annotated[
    str | None,
    typer.Option(
        "--etag",
        metavar="ETAG",
        help="Only if the resource is still this version (the ETag get or list showed); one changed since is "
        "a conflict (exit 1) and nothing is written. Default: the ETag read just before writing.",
    ),
]


def normal_etag(etag: str | None) -> str | None:
    """--etag as If-Match wants it: ETags are sent as the server wrote them (quoted, or W/"...");
    a bare one typed by hand gets its quotes."""
    if not etag or not etag.strip():
        return None
    etag = etag.strip()
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def would_write(
    result: Result,
    check_id: str,
    what: str,
    *,
    method: str,
    href: str,
    if_match: str | None = None,
    create_only: bool = False,
    body: str | None = None,
) -> Result:
    """A dry run's answer: data.dry_run is true and data.would is the request that would be sent
    (method, href, its condition If-None-Match or If-Match, and the body for a PUT)."""
    condition = "If-None-Match: *" if create_only else (f"If-Match: {if_match}" if if_match else None)
    result.data["dry_run"] = True
    result.data["would"] = {"method": method, "href": href, "condition": condition, "body": body}
    result.add(Check(check_id, Status.OK, f"dry run: would {what}", href, actual=condition))
    result.summary.append(f"dry run: would {method} {href}" + (f" ({condition})" if condition else ""))
    return result
