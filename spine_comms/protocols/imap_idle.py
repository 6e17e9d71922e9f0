"""IMAP IDLE (RFC 2177) on an imapclient connection, as a hint and never as the truth.

`IdleChannel.wait()` enters IDLE on the selected folder, waits until the server
reports a change (EXISTS or RECENT), the renew interval runs out, the caller's
timeout passes or the stop event is set, and always leaves IDLE (DONE) before
returning, so the caller can issue commands. What to fetch is the caller's
business: it re-reads by UID after every wake-up, so a lost or merged
notification costs latency, never a message.

The failure modes other IMAP watchers fell into are handled here:
- a closed connection makes imapclient's `idle_check` return [] at once, forever
  (imapclient #565): "readable but no response" is a drop, raised as IdleDropped;
- `* BYE` during IDLE is a drop;
- servers end an IDLE after 30 minutes: it is re-issued after `renew_seconds`;
- a peer that vanishes without a FIN: TCP keepalive probes (about 90 s) make the
  socket fail instead of waiting for the next renew;
- DONE on a dead connection: the socket keeps its read timeout, so it cannot hang.

A server without IDLE gets `supported == False`, and `wait()` then just sleeps
for the poll interval (reason "interval"): the caller polls instead.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

from spine_comms.core.outcomes import FailureKind
from spine_comms.protocols.imap import ImapError

# How often a wait looks at the stop event: the bound on how long SIGTERM waits for an idle watcher.
STOP_SLICE_SECONDS = 0.25
_CHANGES = (b"EXISTS", b"RECENT")


class IdleDropped(ImapError):
    """The connection went away while idling (BYE, EOF, reset, timeout)."""

    def __init__(self, message: str):
        super().__init__("idle", message, kind=FailureKind.UNREACHABLE)


@dataclass
class Wake:
    """Why wait() returned: changes | renew | timeout | stop | interval (polling, no IDLE)."""

    reason: str
    responses: list = field(default_factory=list)
    idled_seconds: float = 0.0


def enable_keepalive(sock: socket.socket, idle: int = 60, interval: int = 10, count: int = 3) -> None:
    """Let the kernel notice a dead peer in about idle + interval * count seconds."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:  # not fatal: the renew interval still bounds how long a dead peer goes unseen
        pass


class IdleChannel:
    """IDLE on one logged-in imapclient `client` whose folder is already selected."""

    def __init__(
        self,
        client,
        *,
        renew_seconds: float,
        poll_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.renew_seconds = renew_seconds
        self.poll_interval = poll_interval
        self.clock = clock
        self.supported = self._offers_idle()
        if self.supported:
            enable_keepalive(client.socket())

    def _offers_idle(self) -> bool:
        try:
            return bool(self.client.has_capability("IDLE"))
        except Exception as exc:  # imapclient raises several kinds; all mean "cannot ask"
            raise IdleDropped(f"CAPABILITY failed: {_short(exc)}") from None

    def wait(self, timeout: float, stop: threading.Event | None = None) -> Wake:
        """Block for at most `timeout` seconds (and never past a renew); see the module docstring."""
        if not self.supported:
            return self._sleep(min(timeout, self.poll_interval), stop)
        budget = min(timeout, self.renew_seconds)
        started = self.clock()
        try:
            self.client.idle()
        except Exception as exc:
            raise IdleDropped(f"IDLE refused or failed: {_short(exc)}") from None
        reason, responses = "timeout" if budget < self.renew_seconds else "renew", []
        try:
            while True:
                if stop is not None and stop.is_set():
                    reason = "stop"
                    break
                left = budget - (self.clock() - started)
                if left <= 0:
                    break
                got = self._check(min(left, STOP_SLICE_SECONDS))
                if got:
                    responses.extend(got)
                    if any(_is_bye(r) for r in got):
                        raise IdleDropped(f"server said BYE: {_describe(got)}")
                    if any(_is_change(r) for r in got):
                        reason = "changes"
                        break
        except IdleDropped:
            self._abandon()
            raise
        self._done()
        return Wake(reason, responses, self.clock() - started)

    def _check(self, seconds: float) -> list:
        """Responses that arrived within `seconds`; a readable socket with nothing to read is a drop."""
        try:
            # poll(), not select(): a busy process may hold descriptors above FD_SETSIZE.
            poller = select.poll()
            poller.register(self.client.socket().fileno(), select.POLLIN | select.POLLPRI)
            if not poller.poll(seconds * 1000):
                return []
            got = self.client.idle_check(timeout=0)
        except IdleDropped:
            raise
        except Exception as exc:  # reset, TLS alert, imaplib abort: all a drop
            raise IdleDropped(f"connection failed while idling: {_short(exc)}") from None
        if not got:
            raise IdleDropped("connection closed by the server while idling")
        return got

    def _done(self) -> None:
        try:
            self.client.idle_done()
        except Exception as exc:
            raise IdleDropped(f"DONE failed: {_short(exc)}") from None

    def _abandon(self) -> None:
        # The connection is unusable; a DONE could only block until the read timeout.
        with suppress(Exception):  # already closed is fine
            self.client.shutdown()

    def _sleep(self, seconds: float, stop: threading.Event | None) -> Wake:
        started = self.clock()
        if stop is not None:
            stopped = stop.wait(max(seconds, 0))
        else:
            time.sleep(max(seconds, 0))
            stopped = False
        return Wake("stop" if stopped else "interval", [], self.clock() - started)


def _is_change(response) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in _CHANGES


def _is_bye(response) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


def _describe(responses: list) -> str:
    words = []
    for response in responses:
        if isinstance(response, tuple):
            words.append(" ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in response))
    return " ".join("; ".join(words).split())[:200]


def _short(exc: BaseException) -> str:
    text = str(exc)
    if exc.args and isinstance(exc.args[0], bytes):
        text = exc.args[0].decode("utf-8", "replace")
    return " ".join(f"{exc.__class__.__name__}: {text}".split())[:300]
