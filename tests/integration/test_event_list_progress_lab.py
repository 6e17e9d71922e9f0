"""calendar.event.list shows its progress to a person at a terminal, and to nobody else."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import uuid

import pytest
import yaml

from tests.cli_process import SPINE_COMMS, clean_env, run_capability

pytestmark = pytest.mark.lab
EVENTS = 12


def _stderr_on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (as in tmux) and stdout on a pipe: (code, stdout, stderr)."""
    master, slave = pty.openpty()
    env = clean_env({"COLUMNS": "120", "TERM": "xterm"})
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = child.stdout.read().decode()
    code = child.wait(timeout=60)
    os.close(master)
    return code, out, seen.decode(errors="replace")


def test_the_listing_shows_the_queries_then_the_events_read_with_an_eta(lab_root, tmp_path):
    # A calendar of its own, made as an operator would: named in the contract, then ensured.
    root = tmp_path / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    contract_file = root / "bindings" / "communications.dav.contract.yaml"
    contract = yaml.safe_load(contract_file.read_text())
    calendar = f"progress-{uuid.uuid4().hex[:8]}"
    contract["calendars"].insert(0, {"id": calendar, "display_name": "Progress"})
    contract_file.write_text(yaml.safe_dump(contract))
    assert run_capability(root, "calendar.caldav.ensure", "--execute", "--account", "radicale").code == 0
    where = ("--account", "radicale", "--calendar", calendar)
    for i in range(EVENTS):
        done = run_capability(root, "calendar.event.create", "--execute", "--summary", f"event {i}",
                              "--start", f"2032-03-{i + 1:02d}T10:00:00+00:00", *where)  # fmt: skip
        assert done.code == 0, done.envelope
    argv = [SPINE_COMMS, "calendar.event.list", "--root", str(root), "--from", "2032-03-01T00:00:00+00:00",
            "--to", "2032-04-01T00:00:00+00:00", *where]  # fmt: skip
    code, out, err = _stderr_on_a_terminal(argv)
    assert code == 0, (out, err)
    assert "querying " in err and "reading events" in err and "ETA" in err, err
    assert f"{EVENTS}/{EVENTS}" in err, err
    assert f"count: {EVENTS}" in out, out
    # With --expand the server is asked a third time (CALDAV:expand): three queries, all shown done.
    code, out, err = _stderr_on_a_terminal([*argv, "--expand"])
    assert code == 0 and "querying " in err and "3/3" in err and f"{EVENTS}/{EVENTS}" in err, err
    # Under --json stderr stays clean, even on a terminal: a reader of the envelope wants no bar.
    code, out, err = _stderr_on_a_terminal([*argv, "--json"])
    assert code == 0 and out.startswith("{"), (out, err)
    assert "reading events" not in err and "ETA" not in err, err
