"""The run context: everything a capability may use from the outside world.

Streams, clock, environment, root, contracts and secrets all come from here, so a
test can hand a capability a context instead of patching globals.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from rich.console import Console
from rich.text import Text

from spine_comms.core.contracts import Contracts
from spine_comms.core.options import GlobalOptions, color_allowed
from spine_comms.core.output import plain
from spine_comms.core.root import MailroomPaths, Root, mailroom_paths
from spine_comms.core.secrets import Redactor, Secrets


@dataclass
class RunContext:
    capability: str
    root: Root
    options: GlobalOptions
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    redactor: Redactor = field(default_factory=Redactor)
    transcript: list[str] = field(default_factory=list)
    stderr: Console | None = None

    def __post_init__(self) -> None:
        self.contracts = Contracts(self.root)
        spine_root = self.root.path if self.root.layout == "spine" else None
        self.secrets = Secrets(self.redactor, self.env, spine_root)
        if self.stderr is None:
            self.stderr = Console(file=sys.stderr, no_color=not color_allowed(self.options, self.env), highlight=False)

    @cached_property
    def mailroom(self) -> MailroomPaths:
        return mailroom_paths(self.root, self.env)

    def log(self, message: str, *, level: str = "info") -> None:
        """A line for humans on stderr; it also lands, redacted, in output.txt."""
        text = self.redactor(message)
        stamp = self.clock().strftime("%H:%M:%S")
        self.transcript.append(f"[{stamp}] {level}: {text}")
        if level != "debug" or self.options.debug:
            style = {"warn": "yellow", "error": "red", "debug": "dim"}.get(level, "")
            # The message may carry a folder name or a subject: never read it as markup.
            self.stderr.print(Text.assemble((stamp, "dim"), " ", plain(text, style)), soft_wrap=True)

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Callable[[int], Any]]:
        """Progress on stderr for long work; silent when stderr is not a terminal."""
        if not self.stderr.is_terminal:
            yield lambda advance=1: None
            return
        from rich.markup import escape
        from rich.progress import Progress

        with Progress(console=self.stderr, transient=True) as bar:
            task = bar.add_task(escape(description), total=total)
            yield lambda advance=1: bar.advance(task, advance)
