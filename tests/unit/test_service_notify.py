"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from spine_comms.core.service_notify import ServiceNotifier


@pytest.fixture
def listener(tmp_path: Path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    sock.settimeout(0.2)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except TimeoutError:
        return out


def test_ready_status_and_stopping_reach_the_socket(listener):
    path, sock = listener
    notifier = ServiceNotifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready("watching ops")
    assert notifier.stopping("stopped by SIGTERM")
    assert received(sock) == ["READY=1\nSTATUS=watching ops", "STOPPING=1\nSTATUS=stopped by SIGTERM"]


def test_the_watchdog_is_fed_only_when_alive_and_at_a_third_of_its_interval(listener):
    path, sock = listener
    notifier = ServiceNotifier(
        {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.watchdog_seconds == 30
    assert not notifier.keepalive(False)
    assert notifier.keepalive(True)
    assert not notifier.keepalive(True)  # 10 s have not passed
    assert received(sock) == ["WATCHDOG=1"]


def test_another_processs_watchdog_and_no_socket_do_nothing(listener):
    path, sock = listener
    other = ServiceNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None and not other.keepalive(True)
    outside = ServiceNotifier({})
    assert not outside.ready("x") and not outside.keepalive(True)
    gone = ServiceNotifier({"NOTIFY_SOCKET": str(path.parent / "missing")})
    assert not gone.ready("x")  # systemd gone: reported, never raised
    assert received(sock) == []


def test_an_abstract_socket_name_is_understood():
    name = f"@spine-comms-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    try:
        assert ServiceNotifier({"NOTIFY_SOCKET": name}).ready("up")
        assert received(sock) == ["READY=1\nSTATUS=up"]
    finally:
        sock.close()
