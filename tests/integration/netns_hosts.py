"""Two "hosts" on one machine, for the multi-host tests of issue 20: each a network namespace with a
loopback of its own, whose only way to the lab is a forwarder this module runs.

The lab's servers listen on the machine's 127.0.0.1. A namespace's 127.0.0.1 is another interface,
and routing 127/8 between namespaces would mean changing the machine's local routes (shared with
other test runs). Instead, for every lab port, a listening socket is made inside the namespace (a
socket keeps the namespace it was made in) and each connection it accepts is forwarded to the lab's
port from the host's own loopback source address: 127.0.0.2 for one host, 127.0.0.3 for the next.
So a process started in the namespace (`ip netns exec`) reaches Dovecot and NATS at the URLs the
contracts name, and the servers see each host as a separate loopback address.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
import uuid

CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why namespaces cannot be used here (None when they can): not root, no `ip`, a kernel or
    container that refuses `ip netns add`."""
    if os.geteuid() != 0:
        return "not root"
    name = f"spineprobe{uuid.uuid4().hex[:6]}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"`ip netns add` failed: {getattr(exc, 'stderr', '') or exc}".strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


class Host:
    """A namespace `name` whose 127.0.0.1:<port> leads to the lab's 127.0.0.1:<port>, seen there as `source`."""

    def __init__(self, name: str, source: str, ports: list[int]) -> None:
        self.name, self.source = name, source
        self.connections = 0  # forwarded so far: proof this host's traffic went through its own namespace
        self._closing = threading.Event()
        self._cut: set[int] = set()  # ports this host cannot reach now (cut)
        self._open: dict[int, list[socket.socket]] = {}  # port -> the sockets of its forwarded connections
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        self._listeners = [self._listen_inside(port) for port in ports]
        for listener, port in zip(self._listeners, ports, strict=True):
            threading.Thread(target=self._accept, args=(listener, port), daemon=True).start()

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self, ports: list[int]) -> None:
        """The lab's `ports` unreachable from this host: its connections there reset, new ones refused."""
        self._cut.update(ports)
        for port in ports:
            for sock in self._open.pop(port, []):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def restore(self, ports: list[int]) -> None:
        self._cut.difference_update(ports)

    def _listen_inside(self, port: int) -> socket.socket:
        """A listening socket made in the namespace, by a thread of its own (setns changes only the
        calling thread's namespace; this one ends right after, so no other work runs in it)."""
        made: list = []

        def make() -> None:
            inside = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(inside)
                made.append(socket.create_server(("127.0.0.1", port), backlog=64))
            except OSError as exc:
                made.append(exc)
            finally:
                os.close(inside)

        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
        if isinstance(made[0], OSError):
            raise made[0]
        return made[0]

    def _accept(self, listener: socket.socket, port: int) -> None:
        while not self._closing.is_set():
            try:
                inner, _ = listener.accept()
            except OSError:
                return
            if port in self._cut:
                inner.close()
                continue
            try:
                outer = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(self.source, 0))
                outer.settimeout(None)
            except OSError:
                inner.close()
                continue
            self.connections += 1
            self._open.setdefault(port, []).extend((inner, outer))
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            src.shutdown(socket.SHUT_RD)
