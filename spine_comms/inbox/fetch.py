"""The fetch stage: new UIDs grouped into FETCH batches, and the next batch fetched on a second thread.

Fetching is waiting on the network and on the server; processing is parsing and writing
files. Done one after the other, a poll pays for both; overlapped, for about the larger.
The IMAP connection is never used by two threads at once: the fetch for batch N+1 starts
when batch N's bodies are handed over, and the pipeline waits for it (`idle`) before it
touches the connection itself again (the post-commit \\Seen or move). A fetch that fails
(a cut connection) is raised where the pipeline asks for that batch, exactly where a
fetch in line would have raised; what was committed before stays committed.

Bodies over policy.max_message_bytes are never downloaded: only their capped header is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

BATCH_MESSAGES = 200  # bodies per FETCH
# The first batches are small and grow to BATCH_MESSAGES: the first items are visible (and the
# checkpoint moves) within a fraction of a second, so a poll killed early still makes progress,
# while a long backlog pays its syncs per two hundred messages.
FIRST_BATCH_MESSAGES = 10
BATCH_BYTES = 16 * 1024 * 1024  # and at most this much buffered at once
HEADER_CAP = 64 * 1024  # what is fetched of an oversized message's header


@dataclass
class Fetched:
    uid: int
    size: int
    internaldate: datetime | None
    raw: bytes | None = None  # None when over policy.max_message_bytes
    header: bytes | None = None  # the capped header of an oversized message


def batches(uids: list[int], metas: dict, cap: int) -> list[list[int]]:
    """UIDs with metadata, in order, grouped so no FETCH buffers more than BATCH_BYTES."""
    out: list[list[int]] = []
    current: list[int] = []
    size, most = 0, FIRST_BATCH_MESSAGES
    for uid in uids:
        meta = metas.get(uid)
        if meta is None:
            continue  # expunged before FETCH RFC822.SIZE
        cost = min(meta.size, cap)
        if current and (len(current) >= most or size + cost > BATCH_BYTES):
            out.append(current)
            current, size, most = [], 0, min(most * 2, BATCH_MESSAGES)
        current.append(uid)
        size += cost
    if current:
        out.append(current)
    return out


class Prefetch:
    """At most one FETCH in flight on `session`, for the batch asked for next."""

    def __init__(self, session, metas: dict, cap: int) -> None:
        self.session = session
        self.metas = metas
        self.cap = cap
        self._thread: threading.Thread | None = None
        self._result: tuple[dict, dict] | None = None
        self._error: BaseException | None = None

    def start(self, batch: list[int]) -> None:
        self.idle()
        self._result, self._error = None, None
        # A daemon: a poll killed or stopping never waits for a fetch nobody will read.
        self._thread = threading.Thread(target=self._fetch, args=(batch,), name="inbox-prefetch", daemon=True)
        self._thread.start()

    def _fetch(self, batch: list[int]) -> None:
        try:
            small = [u for u in batch if self.metas[u].size <= self.cap]
            large = [u for u in batch if self.metas[u].size > self.cap]
            self._result = (self.session.fetch_raw(small), self.session.fetch_headers(large, HEADER_CAP))
        except BaseException as exc:  # handed to the pipeline's thread by take()
            self._error = exc

    def take(self) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """(bodies by UID, capped headers of the oversized by UID) of the batch started last."""
        self.idle()
        error, result = self._error, self._result
        self._result, self._error = None, None
        if error is not None:
            raise error
        assert result is not None, "take() without start()"
        return result

    def idle(self) -> None:
        """Wait until no FETCH is in flight: the connection is free for this thread."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
