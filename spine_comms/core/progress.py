"""Progress on stderr for long work: what is being done, how far, how long so far, and an ETA.

One facility for every capability, reached as `ctx.progress(description, total)`:

    with ctx.progress("calendar sync", total=len(actions)) as advance:
        for action in actions:
            ...
            advance()          # or advance(n)

It draws only for a person: stderr a terminal, and not --json (whose reader wants stdout alone).
Otherwise, and for work of nothing (total 0), `advance` does nothing. One bar at a time: a
second request while one is drawn (another mailbox thread of the watch) gets the silent one,
since rich can show only one live display.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

_DRAWING = threading.Lock()


def _silent(advance: int = 1) -> None:
    return None


@contextmanager
def quiet(description: str, total: int | None = None) -> Iterator[Callable[..., Any]]:
    """The progress of a caller that has no person to show it to (a library call, a test)."""
    yield _silent


def shown(console: Console, *, json_output: bool) -> bool:
    return console.is_terminal and not json_output and not console.is_dumb_terminal


@contextmanager
def progress(console: Console, description: str, total: int | None, *, enabled: bool) -> Iterator[Callable[..., Any]]:
    if not enabled or total == 0 or not _DRAWING.acquire(blocking=False):
        yield _silent
        return
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            TextColumn("{task.description}", markup=False),  # folder and calendar names are not markup
            BarColumn(),
            MofNCompleteColumn() if total else TextColumn("{task.completed}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda advance=1: bar.advance(task, advance)
    finally:
        _DRAWING.release()
