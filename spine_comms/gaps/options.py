"""The gaps commands' options, defined once, named as the spine's gaps-file and gaps-close name them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spine_comms.gaps import schema

WAIT_ENV = "GAPS_FILE_LOCK_WAIT_SECONDS"  # gaps-file's own variable

IdOpt = Annotated[str, typer.Option("--id", metavar="ID", help="auto (the next GAP-OP-<n>) or GAP-OP-<n>.")]
TypeOpt = Annotated[str | None, typer.Option("--type", metavar="TYPE", help="One of: " + ", ".join(schema.TYPES))]
SeverityOpt = Annotated[str | None, typer.Option("--severity", metavar="SEVERITY", help="low, medium, high, critical.")]
DescriptionOpt = Annotated[
    str | None,
    typer.Option("--description", metavar="TEXT", help="What is wrong; its first line is the title (<= 110 chars)."),
]
DescriptionFileOpt = Annotated[
    Path | None, typer.Option("--description-file", metavar="PATH", help="Read the description from a file.")
]
DiscoveredByOpt = Annotated[
    str | None,
    typer.Option("--discovered-by", metavar="SOURCE", help="Who found it: a loop id (then it also serves as "
                 "--loop-id), an audit, an agent. Required."),
]  # fmt: skip
DocOpt = Annotated[str | None, typer.Option("--doc", metavar="PATH", help="The document or file affected.")]
LoopIdOpt = Annotated[
    str | None,
    typer.Option("--loop-id", metavar="LOOP-ID", help="The parent loop (LOOP-...). Required: no unlinked gaps."),
]
LoopAliasOpt = Annotated[str | None, typer.Option("--parent-loop", metavar="LOOP-ID", hidden=True)]
LoopAlias2Opt = Annotated[str | None, typer.Option("--loop", metavar="LOOP-ID", hidden=True)]
BatchOpt = Annotated[
    Path | None,
    typer.Option("--batch", metavar="FILE", help="A YAML file with many at once (a list, or a mapping with `gaps:`); "
                 "docs/gaps.md lists the item keys."),
]  # fmt: skip
CommitOpt = Annotated[
    bool,
    typer.Option("--commit/--no-commit", help="Commit the gaps file alone with the spine's Gap-* trailers "
                 "(Gap-Run-Key: $SPINE_CAP_RUN_KEY, else manual). Default: no commit."),
]  # fmt: skip
WaitOpt = Annotated[
    float | None,
    typer.Option("--wait-seconds", metavar="SECONDS", min=0, help="How long to wait for the gaps lock another "
                 f"writer holds. Default: ${WAIT_ENV}, else 15."),
]  # fmt: skip

# gaps.list
StatusFilterOpt = Annotated[
    list[str] | None,
    typer.Option("--status", metavar="STATUS", help="open (default), fixed, closed, accepted; repeatable."),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every status.")]
SeverityFilterOpt = Annotated[
    list[str] | None, typer.Option("--severity", metavar="SEVERITY", help="low, medium, high, critical; repeatable.")
]
TypeFilterOpt = Annotated[list[str] | None, typer.Option("--type", metavar="TYPE", help="A gap type; repeatable.")]
LoopFilterOpt = Annotated[
    str | None,
    typer.Option("--loop", metavar="LOOP-ID", help="Only this loop's gaps (parent_loop; discovered_by for old ones)."),
]

# gaps.close
CloseIdOpt = Annotated[list[str] | None, typer.Option("--id", metavar="ID", help="GAP-OP-<n>; repeatable.")]
CloseStatusOpt = Annotated[str | None, typer.Option("--status", metavar="STATUS", help="fixed or closed (required).")]
FixedInOpt = Annotated[
    str | None, typer.Option("--fixed-in", metavar="REF", help="Where it was fixed: a loop, a commit, a change.")
]
NotesOpt = Annotated[str | None, typer.Option("--notes", metavar="TEXT", help="Replaces the gap's notes.")]
RegressionLockOpt = Annotated[
    str | None,
    typer.Option("--regression-lock-id", metavar="ID", help="The gate or test that keeps it fixed; required for "
                 "high and critical gaps (LEGACY-NO-REGRESSION-LOCK-* is refused)."),
]  # fmt: skip
