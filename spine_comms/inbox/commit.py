"""The commit stage: a batch's staged messages made durable and visible, in the order that keeps each exactly once.

1. the bytes of every staged file (.eml, .json, attachments, items) synced;
2. the stored files placed (renamed to their names) and synced: an item never points at a
   stored message a crash could lose;
3. the items placed in their lanes (or sent to the bridge) and synced; a run id already in
   the mailroom (an earlier run died before step 5) counts as a duplicate;
4. the DSN bounces among them handed to the outbox (`bounce`), before any marker: a repeated
   DSN is a no-op there, so a run killed before its markers notes it again;
5. the delivery markers, hard links to the .json files, made and synced.

A crash between any two steps leaves a state from which a rerun ends with the message exactly
once (and each DSN noted at least once). Durability is paid per batch, not per file (staging.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spine_comms.inbox.delivery import PendingItem, Placed
from spine_comms.inbox.policy import PARKED
from spine_comms.inbox.staging import NEW, BatchWriter
from spine_comms.inbox.store import DeliveryIndex, MessageStore


@dataclass
class Taken:
    kind: str  # enqueued | parked | dropped | duplicate
    record: dict
    secret: dict | None = None


@dataclass
class Prepared:
    """One message normalized and decided: its lane, the item's text, the .json."""

    lane: str
    text: str = ""
    reasons: list[str] = field(default_factory=list)
    message_id: str | None = None
    secret: dict | None = None
    normalized: dict = field(default_factory=dict)  # written as the .json once the item is staged


@dataclass
class Pending:
    uid: int
    taken: Taken | None  # decided at once (a duplicate); else committed with the batch
    identity: str = ""
    marker: dict = field(default_factory=dict)
    prepared: Prepared | None = None
    item: PendingItem | None = None


@dataclass
class IntakeBatch:
    """The messages of one FETCH batch between the intake's stage() and commit()."""

    writer: BatchWriter
    pending: list[Pending] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)

    def close(self) -> None:
        self.writer.reset()  # temporaries never placed (the batch stopped) are removed

    def bounces(self) -> list[dict]:
        """The normalized form of each DSN bounce this commit is about to mark: every message without a
        marker yet, including one whose item an earlier, killed run had already placed (it never got
        its marker, so it may never have been noted). A message with a marker is not among them."""
        return [
            p.prepared.normalized for p in self.pending
            if p.taken is None and p.prepared is not None
            and (p.prepared.normalized.get("classification") or {}).get("kind") == "bounce"
        ]  # fmt: skip


def commit(
    batch: IntakeBatch, store: MessageStore, index: DeliveryIndex, bounce=None, placed: list | None = None
) -> list[tuple[int, Taken]]:
    """Steps 1 to 5 above. An exception leaves markers missing, never ahead of their items: a rerun finds
    the items. `bounce(normalized list)` must not raise for a bounce it could not note.

    `placed`, when given, receives (uid, Taken) for each item the moment it is in the mailroom
    (before its marker): a commit stopped halfway (a full disk, the bridge gone) can still say
    what the watcher will see."""
    writer = batch.writer
    placed = [] if placed is None else placed
    writer.sync()  # the bytes of every staged file: .eml, .json, attachments, items
    for staged in writer.staged:
        if staged.how != NEW and not staged.placed:
            writer.place(staged)
    writer.sync()  # their names: an item never points at a stored message a crash could lose
    taken: list[tuple[int, Taken]] = []
    placed_items: dict[int, Placed] = {}
    for pending in batch.pending:
        if pending.item is not None:
            placed_items[pending.uid] = pending.item.commit(writer)
            placed.append((pending.uid, _taken(pending, placed_items[pending.uid])))
    writer.sync()  # items visible and durable: only now may their markers say "committed"
    bounces = batch.bounces()
    if bounce is not None and bounces:
        # Before the markers, not after: a kill in between must leave the DSN unmarked, so the
        # rerun notes it again (the outbox ignores a DSN it has already applied).
        bounce(bounces)
    for pending in batch.pending:
        if pending.taken is not None:
            taken.append((pending.uid, pending.taken))
            continue
        index.link(pending.identity, store.normalized_path(pending.identity))
        taken.append((pending.uid, _taken(pending, placed_items.get(pending.uid))))
    writer.sync()  # the markers: these messages are committed
    return taken


def _taken(pending: Pending, placed: Placed | None) -> Taken:
    base = {"uid": pending.uid, "run_id": pending.marker["run_id"]}
    prepared = pending.prepared
    if placed is None:
        return Taken("dropped", {**base, "reasons": prepared.reasons})
    if placed.existed:
        return Taken("duplicate", {**base, "lane": prepared.lane, "how": "already in the mailroom"})
    record = {**base, "path": placed.path}
    if prepared.lane == PARKED:
        return Taken("parked", {**record, "reasons": prepared.reasons}, prepared.secret)
    return Taken("enqueued", record, prepared.secret)
