"""Human output: text from mail, servers and contracts is shown as written, and tables fit the terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from spine_comms.core.context import GlobalOptions, RunContext
from spine_comms.core.output import render_text
from spine_comms.core.result import Check, Status
from spine_comms.core.root import find_root

SCRIPT = Path(sys.executable).parent / "spine-comms"
HOSTILE = ["[ops]", "[example.net]", "projects[/]", "[bold red]x[/]", "[/bold]", "[link=http://x]y[/link]", ":smile:"]


def _envelope(checks, summary=(), data=None):
    return {
        "capability": "test.cap", "status": "fail", "data": data or {}, "summary": list(summary),
        "checks": [c.to_dict() for c in checks], "run_key": "CAP-20260101-000000__test.cap__Rabc12", "receipt": "/r",
    }  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE)
def test_markup_in_checks_summary_and_data_is_shown_as_written(text):
    checks = [Check("inbox.folder.present", Status.FAIL, f"folder {text} missing", subject=text)]
    out = render_text(_envelope(checks, summary=[f"mailbox {text}"], data={"folder": text}), color=False)
    assert out.count(text) == 4, out


def test_markup_is_not_read_with_colour_either():
    checks = [Check("verify.gate", Status.FAIL, "[ops] [example.net] projects[/]", subject="[ops]")]
    out = render_text(_envelope(checks), color=True)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "[ops] [example.net] projects[/]" in plain


def test_log_lines_are_not_markup(tmp_path):
    (tmp_path / "bindings").mkdir()
    buffer = io.StringIO()
    ctx = RunContext(
        capability="test.cap", root=find_root(str(tmp_path), {}), options=GlobalOptions(), env={},
        stderr=Console(file=buffer, width=200, no_color=True),
    )  # fmt: skip
    ctx.log("selecting projects[/] and [ops] for [bold]x[/bold]", level="warn")
    with ctx.progress("scanning projects[/]") as advance:
        advance()
    assert "selecting projects[/] and [ops] for [bold]x[/bold]" in buffer.getvalue()


LONG = [
    Check("dns.dkim.selector_present", Status.FAIL, "selector 202611r._domainkey.spine.ronny.works has no TXT "
          "record at the authoritative servers; publish the record dkim.keygen printed", subject="spine.ronny.works"),
    Check("communications.inbox.health.freshness", Status.WARN, "the last successful poll of "
          "ops@spine.ronny.works was 47 minutes ago, the contract allows 15", subject="ops@spine.ronny.works"),
    Check("verify.gate.D911", Status.FAIL, "x" * 30 + " " + "word " * 40, subject="[ops]"),
]  # fmt: skip


def _words(text: str) -> set[str]:
    return set(text.split())


@pytest.mark.parametrize("width", [80, 60, 110])
def test_tables_fit_the_width_and_never_split_a_word(width):
    out = render_text(_envelope(LONG), color=False, width=width)
    lines = out.splitlines()
    table = [line for line in lines if not line.startswith(("run_key:", "receipt:"))]
    assert all(len(line) <= width for line in table), "\n".join(line for line in table if len(line) > width)
    expected = set().union(*(_words(f"{c.status} {c.id} {c.subject} {c.detail}") for c in LONG))
    shown = _words(out)
    assert expected <= shown, sorted(expected - shown)  # a split word would be missing whole


def _sh(*args, env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_") and k != "COLUMNS"} | env
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=60)


def test_columns_80_from_a_real_process(root):
    done = _sh("communications.stack.status", "--root", str(root), "--host", "127.0.0.1", "--only", "993",
               "--timeout", "0.5", env={"COLUMNS": "80"})  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[-1] == "status: fail"
    # Plain `key: value` lines are never wrapped (one fact, one line, for grep); only a value that is one
    # unbreakable word (a path) may make one longer than the terminal.
    too_long = [line for line in lines if len(line) > 80]
    assert all(re.fullmatch(r"[a-z_]+: \S+", line) for line in too_long), done.stdout
    assert any(line.startswith("fail ") and "connection refused" in line for line in lines)
    listing = _sh("cap", "list", env={"COLUMNS": "80"})
    assert listing.returncode == 0
    assert all(len(line) <= 80 for line in listing.stdout.splitlines()), listing.stdout
    for cap in ("communications.inbox.health", "calendar.caldav.ensure", "contract.endpoints.sync"):
        assert re.search(rf"(^|\s){re.escape(cap)}(\s|$)", listing.stdout, re.M), f"{cap} split or missing"
