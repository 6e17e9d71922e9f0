"""The stream into the spine's `inbox/queued/`: each item written as the filesystem mailroom writes
it (same name, same bytes, same atomic write), and acknowledged only once the file is in place.

A drain killed between the write and the acknowledgement leaves a file and an unacknowledged
message; the message comes back after the consumer's ack wait, its file is found by its name in
any lane (the watcher may have moved it to running/ or done/ meanwhile), and it is acknowledged
without a second write. So the spine's watcher sees each item once, and needs no change.

An agent group's member drains the group's consumer (mailroom.drain --group) into the mailroom
of its own host: the group's items are shared among its members, each item placed on one host.
Redelivery finds the file only on the host that wrote it: a member killed between its write and
its acknowledgement can see the item go to another member after the ack wait (docs/scale-out.md).

A message without the headers that name its file, or with parts the mailroom refuses (a path in
a slug, a hidden session), is terminated (never redelivered) and reported: it was not published
by spine-comms, and writing it under another name would break exactly-once for the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spine_comms.mailroom.filesystem import ItemExists, Mailroom, MailroomError
from spine_comms.mailroom.jetstream import RUN_ID_HEADER, SESSION_HEADER, SLUG_HEADER, Connection

BATCH = 100


@dataclass
class DrainOutcome:
    written: list[str] = field(default_factory=list)  # paths placed by this drain
    already: list[str] = field(default_factory=list)  # redelivered, its file was there: acknowledged only
    refused: list[dict] = field(default_factory=list)  # terminated: {seq, why}
    redelivered: int = 0  # messages delivered more than once (a drain died before acknowledging)

    def to_dict(self) -> dict:
        return {"written": len(self.written), "already_placed": len(self.already), "refused": self.refused,
                "redelivered": self.redelivered, "paths": self.written[:50]}  # fmt: skip


def drain(
    connection: Connection,
    inbox: Path,
    *,
    consumer: str,
    limit: int | None = None,
    wait: float = 1.0,
    placed: Callable[[Path], None] | None = None,
    batch: int = BATCH,
) -> DrainOutcome:
    """Drain until the consumer has nothing for `wait` seconds, or `limit` messages are handled.

    `placed(path)` is called after a file is written and before its message is acknowledged: the
    fault tests stop the drain there, as a kill would. `batch`: messages taken per fetch; the members
    of an agent group share its items a fetch at a time."""
    room = Mailroom(inbox)
    subscription = connection.pull(consumer)
    outcome = DrainOutcome()
    handled = 0
    while limit is None or handled < limit:
        take = min(batch, limit - handled) if limit is not None else batch
        messages = connection.fetch(subscription, take, wait)
        if not messages:
            break
        acks: list = []  # this fetch's acknowledgements, confirmed together before the next fetch
        for message in messages:
            handled += 1
            if message.metadata.num_delivered > 1:
                outcome.redelivered += 1
            path, existed, why = _place(room, message)
            if why is not None:
                outcome.refused.append({"seq": message.metadata.sequence.stream, "why": why})
                connection.terminate(message)
                continue
            (outcome.already if existed else outcome.written).append(str(path))
            if placed is not None and not existed:
                placed(path)
            acks.append(connection.ack_soon(message))  # sent once its file is in place
        connection.confirmed(acks)
    return outcome


_REPEATED = object()


def _one_value(value):
    """A header's one value. nats-py gives a header sent more than once as a list of its values: one
    value (or the same one repeated) names the file; two different ones are refused, never guessed."""
    if isinstance(value, list | tuple):
        distinct = set(value)
        return next(iter(distinct)) if len(distinct) == 1 else (_REPEATED if distinct else None)
    return value if isinstance(value, str) or value is None else _REPEATED


def _place(room: Mailroom, message) -> tuple[Path | None, bool, str | None]:
    """(path, already there, why refused)."""
    headers = message.headers or {}
    parts = [_one_value(headers.get(name)) for name in (SESSION_HEADER, SLUG_HEADER, RUN_ID_HEADER)]
    if any(part is _REPEATED for part in parts):
        return None, False, f"a repeated {SESSION_HEADER}/{SLUG_HEADER}/{RUN_ID_HEADER} header: which file is meant?"
    session, slug, rid = parts
    if not (session and slug and rid):
        return None, False, f"no {SESSION_HEADER}/{SLUG_HEADER}/{RUN_ID_HEADER} headers: not a spine-comms item"
    try:
        final = room.item_path(slug=slug, run_id=rid, session_id=session, lane="queued")
    except MailroomError as exc:
        return None, False, str(exc)
    found = room.find(final.stem, suffixes=(".md",))
    if found:
        return found[1], True, None
    try:
        text = message.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, False, f"the item is not UTF-8 (byte {exc.start})"
    try:
        item = room.enqueue(text, slug=slug, run_id=rid, session_id=session, lane="queued", check_run_id=False)
    except ItemExists as exc:
        return exc.existing, True, None
    return item.path, False, None
