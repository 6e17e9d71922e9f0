"""The inbox watch as a systemd Type=notify service, against the lab's Dovecot: READY=1 once it
watches, WATCHDOG=1 while its mailbox loop beats, no more pings when the loop is stuck (a server that
accepts the connection and never answers), STOPPING=1 on SIGTERM. The notify socket is the test's own,
exactly the datagram socket systemd hands a service in NOTIFY_SOCKET."""

from __future__ import annotations

import itertools
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.cli_process import clean_env
from tests.integration.test_inbox_watch_lab import Watch, make_root

pytestmark = pytest.mark.lab


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                break

    def pings(self, since: float) -> int:
        return sum(1 for at, text in self.messages if at >= since and text == "WATCHDOG=1")

    def close(self) -> None:
        self.sock.close()


def service_env(notify: NotifySocket) -> dict[str, str]:
    # WATCHDOG_PID is left out: systemd sets it to the main pid, which the test cannot know before the start.
    return clean_env({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1500000"})


def with_health(root: Path, max_age: float) -> Path:
    contract = root / "bindings" / "communications.inbox.contract.yaml"
    contract.write_text(contract.read_text() + f"health: {{max_heartbeat_age_seconds: {max_age}}}\n")
    return root


def test_a_healthy_watch_says_ready_feeds_the_watchdog_and_says_stopping(lab, tmp_path):
    root = with_health(make_root(tmp_path, lab), 5)
    notify = NotifySocket(tmp_path / "notify")
    watch = Watch(root, env=service_env(notify))
    try:
        notify.collect(6)
        code, envelope, err = watch.finish(signal.SIGTERM)
        notify.collect(0.5)
    finally:
        watch.kill()
        notify.close()
    texts = [text for _, text in notify.messages]
    assert texts[0] == "READY=1\nSTATUS=watching sink", texts
    assert notify.pings(since=notify.messages[0][0] + 2) >= 4, texts  # every 0.5 s while the loop beats
    assert texts[-1] == "STOPPING=1\nSTATUS=stopped by SIGTERM", texts
    assert code == 0, err
    assert envelope["status"] == "ok"


def test_a_stuck_mailbox_loop_starves_the_watchdog(lab, tmp_path):
    # A listener that never accepts: the TCP connection completes in the kernel's backlog, the TLS
    # handshake waits for an answer that never comes, and the loop beats no more.
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    root = with_health(make_root(tmp_path, lab, port=hole.getsockname()[1]), 1)
    notify = NotifySocket(tmp_path / "notify")
    watch = Watch(root, env=service_env(notify))
    try:
        notify.collect(7)
        ended = time.monotonic()
    finally:
        watch.kill()
        notify.close()
        hole.close()
    texts = [text for _, text in notify.messages]
    assert texts and texts[0].startswith("READY=1"), texts
    # The loop beats, then its connection hangs in the TLS handshake; a second later its heartbeat is
    # stale and the pings stop, so systemd (WatchdogSec) would restart it. The handshake's own timeout
    # (the stack contract's 5 s) then lets the loop retry and beat again: what proves the starving is a
    # silence far longer than a healthy loop ever leaves (pings every third of a second while its
    # heartbeat is under 1 s old), wherever the load put it in the window.
    times = [at for at, _ in notify.messages] + [ended]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    shown = [(round(at - times[0], 2), text) for at, text in notify.messages]
    assert notify.pings(since=times[0]) > 0, shown  # it was fed while the loop beat
    assert max(gaps) >= 3.0, shown  # heartbeat older than 1 s: systemd would restart it
