"""Where items go: the filesystem mailroom or the spine's bridge, behind one small interface.

`put` returns the item's path and whether it was already there. "Already there"
is how a rerun after a crash recognises an item it wrote but did not get to
record: the run id is derived from the message, so the same message always
asks for the same run id, and an existing one is never written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spine_comms.core.atomic import write_atomic
from spine_comms.inbox.staging import NEW, BatchWriter, Staged


@dataclass(frozen=True)
class Placed:
    path: str
    existed: bool  # the item was already in the mailroom (written by an earlier, interrupted run)


@dataclass
class PendingItem:
    """An item of a batch not yet committed: already there, staged as a file, or to send (bridge)."""

    existing: Placed | None = None
    staged: Staged | None = None
    send: Callable[[], Placed] | None = None

    @property
    def path(self) -> str | None:
        """Where the item is or will be; None for an item the bridge names when it is sent."""
        if self.existing is not None:
            return self.existing.path
        return str(self.staged.final) if self.staged is not None else None

    def commit(self, batch: BatchWriter) -> Placed:
        """Place the staged file (its bytes already synced) or send the item; durable after batch.sync()."""
        if self.existing is not None:
            return self.existing
        if self.staged is not None:
            batch.place(self.staged)
            return Placed(str(self.staged.final), self.staged.existed)
        assert self.send is not None
        return self.send()


class FilesystemTarget:
    """The spine's inbox lanes on this machine (ctx.mailroom.inbox)."""

    via = "filesystem"

    def __init__(self, inbox: Path) -> None:
        from spine_comms.mailroom.filesystem import Mailroom

        self.mailroom = Mailroom(inbox)

    def put(self, text: str, *, slug: str, rid: str, session_id: str, lane: str) -> Placed:
        from spine_comms.mailroom.filesystem import ItemExists, clean_slug

        # The item's name is a function of the message (its session is the server's arrival time),
        # so a rerun after a crash looks for that exact name in every lane: a few stat calls, where
        # the mailroom's own run-id check would list every lane for every message (quadratic).
        found = self.mailroom.find(f"{session_id}__{clean_slug(slug)}__{rid}")
        if found:
            return Placed(str(found[1]), True)
        try:
            item = self.mailroom.enqueue(
                text, slug=slug, run_id=rid, session_id=session_id, lane=lane, check_run_id=False
            )
        except ItemExists as exc:
            return Placed(str(exc.existing), True)
        return Placed(str(item.path), False)

    @property
    def staging_homes(self) -> list[Path]:
        """Where a batch may make its item files ahead of need: a hidden directory beside the lanes,
        so no lane ever shows them (the watcher, `mailroom.status`), and a rename puts an item in any lane."""
        return [self.mailroom.inbox / ".ahead"]

    def stage(self, batch: BatchWriter, text: str, *, slug: str, rid: str, session_id: str, lane: str) -> PendingItem:
        """As put, for a batch: the item is written to a hidden temporary (in the inbox's `.ahead`
        home, or in its lane: the watcher skips dotfiles) and renamed to its name only once the
        batch's files are synced."""
        final = self.mailroom.item_path(slug=slug, run_id=rid, session_id=session_id, lane=lane)
        found = self.mailroom.find(final.stem, suffixes=(".md",))  # a stat per lane: its items are .md
        if found:
            return PendingItem(existing=Placed(str(found[1]), True))
        return PendingItem(staged=batch.stage(final, text, 0o600, NEW))

    def writable(self) -> tuple[bool, str]:
        queued = self.mailroom.lane_dir("queued")
        probe = queued if queued.is_dir() else queued.parent
        import os

        if not probe.exists():
            return False, f"{queued} does not exist (and neither does its parent)"
        if not os.access(probe, os.W_OK | os.X_OK):
            return False, f"{probe} is not writable by this user"
        return True, str(queued)


class BridgeTarget:
    """The bridge's /inbox/enqueue. It has no parked lane: parked items stay in the state directory
    (`<state>/<mailbox>/parked/`), reported in the receipt, for a person to look at."""

    via = "bridge"

    def __init__(self, client, parked_dir: Path) -> None:
        self.client = client
        self.parked_dir = parked_dir

    def put(self, text: str, *, slug: str, rid: str, session_id: str, lane: str) -> Placed:
        from spine_comms.mailroom.filesystem import clean_slug

        stem = f"{session_id}__{clean_slug(slug)}__{rid}"
        if lane != "queued":
            path = self.parked_dir / f"{stem}.md"
            if path.exists():
                return Placed(str(path), True)
            write_atomic(path, text, 0o600)
            return Placed(str(path), False)
        # The bridge names the file <session>__<slug>__<rid>.md, so its status endpoint finds a
        # retried message by the same stem: one GET instead of a duplicate.
        known = self.client.status(stem)
        if known is not None:
            return Placed(str(known.get("prompt_path") or stem), True)
        answer = self.client.enqueue(text, slug=slug, run_id=rid, session_id=session_id)
        return Placed(str(answer["path"]), False)

    staging_homes: tuple[Path, ...] = ()  # parked items go under the state directory, a home of its own

    def stage(self, batch: BatchWriter, text: str, *, slug: str, rid: str, session_id: str, lane: str) -> PendingItem:
        """Parked items are staged files; a queued one is sent at the commit, after the batch's
        stored messages are synced (the item names them)."""
        from spine_comms.mailroom.filesystem import clean_slug

        if lane != "queued":
            path = self.parked_dir / f"{session_id}__{clean_slug(slug)}__{rid}.md"
            if path.exists():
                return PendingItem(existing=Placed(str(path), True))
            return PendingItem(staged=batch.stage(path, text, 0o600, NEW))
        return PendingItem(send=lambda: self.put(text, slug=slug, rid=rid, session_id=session_id, lane=lane))

    def writable(self) -> tuple[bool, str]:
        return True, "via bridge (not checked from here)"
