"""Progress on a terminal, from a real run against the lab: `communications.inbox.poll --enqueue` of a
folder of messages draws its bar (what, how far, ETA) on stderr when stderr is a pseudo-terminal, and
stays silent under --json and when stderr is a pipe. The bar is transient, so what is checked is
the stream the terminal received."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cli_process import SPINE_COMMS, clean_env
from tests.integration.inbox_lab import make_root
from tests.integration.test_calendar_sync_lab import Site
from tests.integration.test_inbox_watch_lab import fresh_folder

pytestmark = pytest.mark.lab
COUNT = 60


def poll(root: Path, *args: str, tty: bool) -> tuple[int, str, str]:
    return run(root, "communications.inbox.poll", "--enqueue", *args, tty=tty)


def run(root: Path, capability: str, *args: str, tty: bool) -> tuple[int, str, str]:
    """(exit code, stdout, what stderr received), stderr on a pseudo-terminal when `tty`."""
    argv = [SPINE_COMMS, capability, "--root", str(root), *args]
    env = clean_env({"TERM": "xterm-256color", "COLUMNS": "120"})
    env.pop("NO_COLOR", None)
    if not tty:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=180)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def bar_drawn(stderr: str, folder: str) -> bool:
    return f"sink/{folder}" in stderr and re.search(rf"\b\d+/{COUNT}\b", stderr) is not None and "ETA" in stderr


@pytest.fixture
def root_with_backlog(lab, lab_root, tmp_path):
    def make() -> tuple[Path, str]:
        folder = fresh_folder(lab, uuid.uuid4().hex[:10], COUNT, size=800)
        return make_root(tmp_path / uuid.uuid4().hex[:6], lab, lab_root, folders=[folder]), folder

    return make


def test_a_terminal_sees_the_bar(root_with_backlog):
    root, folder = root_with_backlog()
    code, _out, err = poll(root, tty=True)
    assert code == 0, err[-2000:]
    assert bar_drawn(err, folder), err[-2000:]


def test_json_and_a_pipe_stay_silent(root_with_backlog):
    root, folder = root_with_backlog()
    code, out, err = poll(root, "--json", tty=True)
    assert code == 0 and out.startswith("{"), err[-2000:]
    assert f"sink/{folder}" not in err and "ETA" not in err
    root, folder = root_with_backlog()
    code, out, err = poll(root, tty=False)
    assert code == 0, err[-2000:]
    assert f"sink/{folder}" not in err and "ETA" not in err and "\x1b[" not in err


def test_a_calendar_sync_draws_its_bar_on_a_terminal(lab_root, tmp_path):
    site = Site(tmp_path, lab_root, "radicale")
    code, _out, err = run(site.root, "calendar.sync.execute", "--execute", "--yes", tty=True)
    assert code == 0, err[-2000:]
    drawn = re.findall(r"calendar sync.*?(\d+)/(\d+)", err)
    assert drawn and "ETA" in err, err[-2000:]
    assert int(drawn[0][1]) >= 4  # one step per event written: the lab source has at least four
