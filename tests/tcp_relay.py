"""A TCP relay on 127.0.0.1 in front of a lab server, for the tests that shape or break the link:
cut every live connection at will (the watch), cut after so many bytes from the server (the poll),
or hold every chunk the client sends for a while (a slow link to the NATS cluster).

One thread per direction per connection; TLS passes through untouched, so the client still verifies
the server it reaches. Subclasses change `forward`.
"""

from __future__ import annotations

import contextlib
import socket
import threading

_RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close() sends a reset


class Relay:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def forward(self, data: bytes, *, to_server: bool, so_far: int) -> tuple[bytes, bool]:
        """(what to pass on of one chunk, whether the connection goes on after it). `so_far`: the bytes
        this connection has passed in this direction before the chunk."""
        return data, True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.pairs.append((client, server))
                self.accepted += 1
            for source, sink, to_server in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, to_server), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_server: bool) -> None:
        so_far = 0
        try:
            while data := source.recv(65536):
                passed, going_on = self.forward(data, to_server=to_server, so_far=so_far)
                sink.sendall(passed)
                so_far += len(passed)
                if not going_on:
                    break
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self) -> int:
        """Reset every live connection (RST, as a dropped NAT entry or a crashed server would)."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                    # close() alone does not end a connection a pump thread is blocked in recv() on: the
                    # kernel keeps the socket until that recv returns, and a client waiting for an answer
                    # then waited for its socket timeout. shutdown() wakes the pumps at once.
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
        return len(pairs)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept(): close() alone leaves the port accepting
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.cut()
