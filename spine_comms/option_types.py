"""The options every command shares, defined once for the capability commands and the cap/receipts groups."""

from __future__ import annotations

from typing import Annotated

import typer

RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root",
        metavar="DIR",
        help="The root: this project's layout or the spine's. Default: $SPINE_ROOT, else the current directory.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON envelope on stdout.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 1 on warn, too.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs on stderr.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="No colour (NO_COLOR is honoured too).")]

# The option parser's error class, whichever click Typer runs on (recent Typer vendors its own copy,
# so `import click` would name a different class than the one raised).
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
