"""Output: the JSON envelope with --json, a readable rich view otherwise.

Exactly one JSON object on stdout with --json, starting on its own line. The
text view ends with a `status: <status>` line. Neither ever prints a line made
only of dashes, which the spine's readers treat as the end of a capability's output.
"""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from spine_comms.core.result import Check, Status

SCHEMA_VERSION = "1.0"
STATUS_STYLE = {
    "ok": "green", "warn": "yellow", "fail": "red", "partial": "red", "error": "magenta", "skip": "dim",
}  # fmt: skip


def envelope(
    capability: str,
    status: str,
    generated_at: str,
    data: dict[str, Any],
    checks: list[Check],
    summary: list[str],
    run_key: str,
    receipt: str,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "capability": capability,
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "generated_at": generated_at,
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


def render_text(env: dict[str, Any], *, color: bool, width: int = 110) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color, highlight=False, emoji=False)
    # One problem, one line: plain lines are never wrapped (only the table may fold).
    print_line = lambda text: console.print(text, soft_wrap=True)  # noqa: E731
    print_line(Text(env["capability"], style="bold"))
    for line in env.get("summary") or []:
        print_line(Text(line))
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
        table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
        table.add_column("status")
        table.add_column("check")
        table.add_column("subject")
        table.add_column("detail", overflow="fold")
        for check in checks:
            style = STATUS_STYLE.get(check["status"], "")
            table.add_row(Text(check["status"], style=style), check["id"], check["subject"], check["detail"])
        console.print(table)
    for key, value in (env.get("data") or {}).items():
        if isinstance(value, str | int | float | bool) or value is None:
            print_line(Text(f"{key}: {value}"))
    print_line(Text(f"run_key: {env['run_key']}"))
    print_line(Text(f"receipt: {env['receipt']}"))
    status = env["status"]
    print_line(Text("status: ") + Text(status, style=STATUS_STYLE.get(status, "")))
    return buffer.getvalue()


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
