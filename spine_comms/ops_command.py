"""`spine-comms ops units`: the systemd units and timers for a root, printed or written to a directory.

A plain command, not a capability: it reads no server and writes no receipt. It
writes only where --write says, never over a different file without --force.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.option_types import RootOpt

ops_app = typer.Typer(help="Operations: systemd units and timers.", no_args_is_help=True, rich_markup_mode=None)


@ops_app.command("units")
def units(
    root: RootOpt = None,
    user: Annotated[
        bool,
        typer.Option("--user", help="Units for the per-user manager (systemctl --user), not the system one."),
    ] = False,
    write: Annotated[
        Path | None,
        typer.Option(
            "--write",
            metavar="DIR",
            help="Write the unit files into DIR (e.g. /etc/systemd/system or ~/.config/systemd/user) "
            "instead of printing them.",
        ),
    ] = None,
    executable: Annotated[
        Path | None,
        typer.Option("--executable", metavar="PATH", help="The spine-comms to run. Default: this one."),
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option("--run-as", metavar="USER", help="User= and Group= of the system units. Default: root."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="With --write: replace unit files that differ.")] = False,
) -> None:
    """Render the inbox watcher service and the verify, outbox flush, calendar sync and receipt prune timers
    for a root and the installed executable. Prints them, or writes them with --write DIR and says the
    systemctl commands to run next. Exit 0 done, 2 bad root or a different file in the way."""
    from spine_comms.core.errors import SpineCommsError
    from spine_comms.core.root import find_root
    from spine_comms.operations.units import render_units

    try:
        found = find_root(root or _parent_root())
        rendered = render_units(found, executable=executable, user_mode=user, run_as=run_as)
    except SpineCommsError as exc:
        for line in exc.lines():
            print(f"spine-comms: {line}", file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    if write is None:
        for name, text in rendered.items():
            sys.stdout.write(f"# file: {name}\n{text}\n")
        return
    in_the_way = [n for n, t in rendered.items() if (write / n).is_file() and (write / n).read_text() != t]
    if in_the_way and not force:
        print(f"spine-comms: {', '.join(in_the_way)} already in {write} and different; --force replaces them",
              file=sys.stderr)  # fmt: skip
        raise typer.Exit(2)
    write.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (write / name).write_text(text, encoding="utf-8")
        print(f"wrote {write / name}")
    scope = "--user " if user else ""
    starts = [n for n in rendered if n.endswith(".timer") or n.endswith("inbox-watch.service")]
    print("next:")
    print(f"  systemctl {scope}daemon-reload")
    print(f"  systemctl {scope}enable --now {' '.join(starts)}")
    print(f"  spine-comms communications.doctor --root {found.path}")


def _parent_root() -> str | None:
    """`spine-comms --root DIR ops units` gives the root before the group."""
    import click

    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    return getattr(obj, "root", None)
