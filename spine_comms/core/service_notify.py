"""sd_notify(3) for a process run by systemd, without libsystemd: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

A `Type=notify` unit learns from READY=1 that the service is up; with `WatchdogSec=`
it kills and restarts the service when WATCHDOG=1 stops arriving. The caller decides
when it is alive enough to ping (the inbox watch pings only while every mailbox's
heartbeat is fresh), so the watchdog measures the work, not a timer thread.
Outside systemd (no NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


class ServiceNotifier:
    def __init__(self, env: dict[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading "@" and means a leading NUL byte.
        self.address = ("\0" + address[1:] if address.startswith("@") else address) or None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())  # a child that inherited the variables must not ping
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._last_ping = float("-inf")

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(fields).encode())
        except OSError:  # systemd gone or the socket unreadable: the service's own work goes on
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def keepalive(self, alive: bool) -> bool:
        """WATCHDOG=1 at a third of the watchdog interval, and only while the caller says it is alive."""
        if self.watchdog_seconds is None or not alive:
            return False
        now = time.monotonic()
        if now - self._last_ping < self.watchdog_seconds / 3:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")
