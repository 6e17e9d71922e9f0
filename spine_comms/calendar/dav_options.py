"""Options the DAV capabilities share (calendar.*, contacts.*), declared once with help that teaches.

Where an option means the same thing for events and cards it is one definition here; where
the words differ by kind (the collection option, the UID's owner) there is one per kind,
side by side. `--dry-run` comes with its answer's shape: `would_write` fills it the same way
for every write, so agents read one preview format.
"""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.core.result import Check, Result, Status

DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show what would be written and where (data.would: method, href, condition, body); change nothing.",
    ),
]


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
