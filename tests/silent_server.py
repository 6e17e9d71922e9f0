"""Servers that are down or hung, on 127.0.0.1 only: what a verdict must never call green.

`closed_port()` is a port nothing listens on (connections are refused). `silent_listener()` accepts
every connection and never says a word, the way a hung server or a half-dead proxy behaves: a client
without a timeout would wait for its greeting forever.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections, keeps them open and never answers; yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                conn, _ = server.accept()
                held.append(conn)  # open and silent: the client waits for a greeting that never comes

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


@contextmanager
def silent_udp() -> Iterator[int]:
    """A UDP port bound and never read: a DNS server that takes queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
