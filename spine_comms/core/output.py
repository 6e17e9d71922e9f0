"""Output: the JSON envelope with --json, a readable rich view otherwise.

Exactly one JSON object on stdout with --json, starting on its own line. The
text view ends with a `status: <status>` line, the only one. Neither ever prints
a line made only of dashes, which the spine's readers treat as the end of a
capability's output.

Text from mail, servers and contracts is never read as rich markup: everything
shown goes through `plain()` (a rich Text, which rich prints as it is), so a
folder named `projects[/]` or a check about `[ops]` is shown as written. Tables
fit the width they are given (the terminal's, or $COLUMNS): a word is never
split across lines unless it is longer than the whole line.
"""

from __future__ import annotations

import io
import json
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from spine_comms.core.result import Check, Status

SCHEMA_VERSION = "1.0"
STATUS_STYLE = {
    "ok": "green", "warn": "yellow", "fail": "red", "partial": "red", "error": "magenta", "skip": "dim",
}  # fmt: skip
DEFAULT_WIDTH = 110  # when there is no terminal and no $COLUMNS (output.txt, pipes)
MIN_DETAIL_WIDTH = 24  # below this the last column would be a ribbon: one row per line instead
# Lines of the envelope itself; data keys of these names are shown as data.<key>.
ENVELOPE_LINES = ("status", "run_key", "receipt")


def plain(text: Any, style: str = "") -> Text:
    """Text shown exactly as written: rich markup in it is not interpreted."""
    return text if isinstance(text, Text) else Text("" if text is None else str(text), style=style)


def width_for(env: dict[str, str], stream: Any = None) -> int:
    """$COLUMNS when set (cron, tests, the user), else the terminal's, else DEFAULT_WIDTH."""
    import os

    columns = env.get("COLUMNS", "")
    if columns.isdigit() and int(columns) >= 20:
        return int(columns)
    try:
        if stream is not None and stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        pass
    return DEFAULT_WIDTH


def fitted_table(headers: list[str], rows: list[list[Any]], width: int) -> RenderableType:
    """Columns side by side when they fit in `width` without splitting a word; else one block per row.

    Every column but the last is as wide as its widest cell; the last wraps between words."""
    cells = [[plain(c) for c in row] for row in rows]
    fixed = [max([cell_len(h), *(cell_len(r[i].plain) for r in cells)]) for i, h in enumerate(headers[:-1])]
    room = width - sum(fixed) - 2 * (len(headers) - 1)
    longest_word = max((cell_len(w) for r in cells for w in r[-1].plain.split()), default=0)
    if room >= max(MIN_DETAIL_WIDTH, min(longest_word, width // 2)):
        table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
        for header, size in zip(headers[:-1], fixed, strict=True):
            table.add_column(header, no_wrap=True, min_width=size)
        table.add_column(headers[-1], overflow="fold", max_width=room)
        for row in cells:
            table.add_row(*row)
        return table
    blocks: list[RenderableType] = []
    for row in cells:
        blocks.append(Text("  ").join(c for c in row[:-1] if c.plain))
        if row[-1].plain:
            blocks.append(Padding(row[-1], (0, 0, 0, 4), expand=False))
    return Group(*blocks)


def refusal_envelope(
    capability: str, message: str, problems: list[str], hint: str | None, *, exit_code: int = 2
) -> dict[str, Any]:
    """The one envelope of a run refused before it started (the option parser, no root): no receipt,
    so run_key and receipt are null."""
    from datetime import UTC, datetime

    status, now = "fail" if exit_code == 1 else "error", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    error = {"reference": "usage", "message": message, "problems": problems, "hint": hint}
    return envelope(capability, status, now, {}, [], [], None, None, error)


def envelope(
    capability: str,
    status: str,
    generated_at: str,
    data: dict[str, Any],
    checks: list[Check],
    summary: list[str],
    run_key: str | None,
    receipt: str | None,
    error: dict[str, Any] | None = None,
    *,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "capability": capability,
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "generated_at": generated_at,
        **({} if dry_run is None else {"dry_run": dry_run}),  # where the spine's poll puts it
        "data": data,
        "checks": [c.to_dict() for c in checks],
        "summary": summary,
        "run_key": run_key,
        "receipt": receipt,
    }
    if error:
        out["error"] = error
    return out


def render_json(env: dict[str, Any]) -> str:
    return json.dumps(env, indent=2, default=str) + "\n"


def render_text(env: dict[str, Any], *, color: bool, width: int = DEFAULT_WIDTH) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color, highlight=False, emoji=False)
    # One problem, one line: plain lines are never wrapped (only the table may fold).
    print_line = lambda text: console.print(text, soft_wrap=True)  # noqa: E731
    print_line(plain(env["capability"], "bold"))
    for line in env.get("summary") or []:
        print_line(plain(line))
    error = env.get("error")
    if error:
        for line in error.get("problems") or [error["message"]]:
            print_line(Text(f"error: {line}", style="red"))
        if error.get("hint"):
            print_line(Text(f"hint: {error['hint']}"))
    checks = env.get("checks") or []
    if env.get("summary") and checks:  # the summary already tells the good news; list what is not ok
        passed = sum(1 for c in checks if c["status"] == "ok")
        print_line(Text(f"{passed} of {len(checks)} checks ok" + ("" if passed == len(checks) else "; the others:")))
        checks = [c for c in checks if c["status"] != "ok"]
    if checks:
        rows = [[plain(c["status"], STATUS_STYLE.get(c["status"], "")), c["id"], c["subject"], c["detail"]]
                for c in checks]  # fmt: skip
        console.print(fitted_table(["status", "check", "subject", "detail"], rows, width))
    for key, value in (env.get("data") or {}).items():
        if isinstance(value, str | int | float | bool) or value is None:
            name = f"data.{key}" if key in ENVELOPE_LINES else key
            print_line(plain(f"{name}: {value}"))
    if env.get("dry_run") and "dry_run" not in (env.get("data") or {}):
        print_line(plain("dry_run: true"))
    if env.get("run_key"):
        print_line(plain(f"run_key: {env['run_key']}"))
        print_line(plain(f"receipt: {env['receipt']}"))
    status = env["status"]
    print_line(Text("status: ") + Text(status, style=STATUS_STYLE.get(status, "")))
    # rich pads wrapped cells to the column's width; trailing blanks only cost a reader's terminal.
    return "".join(line.rstrip(" ") + "\n" for line in buffer.getvalue().splitlines())


def exit_code_for(status: Status | str, *, strict: bool) -> int:
    """The one place that maps a status to an exit code."""
    status = Status(status)
    if status is Status.OK:
        return 0
    if status is Status.WARN:
        return 1 if strict else 0
    if status in (Status.FAIL, Status.PARTIAL):
        return 1
    return 3
