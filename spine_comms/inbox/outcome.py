"""What one poll of one mailbox did, folder by folder: the receipt's data and the watch loop's report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FolderOutcome:
    folder: str
    checkpoint_before: dict | None = None
    checkpoint_after: dict | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    rebaselined: str | None = None  # why last_uid was reset (UIDVALIDITY changed)
    new: int = 0  # UIDs above the checkpoint considered in this run
    enqueued: list[dict] = field(default_factory=list)  # {uid, run_id, path}
    parked: list[dict] = field(default_factory=list)  # {uid, run_id, path, reasons}
    dropped: list[dict] = field(default_factory=list)  # {uid, run_id, reasons}
    duplicates: list[dict] = field(default_factory=list)  # {uid, run_id, lane, how}
    errors: list[dict] = field(default_factory=list)  # {uid?, stage, error}
    secret_matches: list[dict] = field(default_factory=list)  # {uid, run_id, action, findings}
    vanished: list[int] = field(default_factory=list)  # expunged between SEARCH and FETCH
    post_commit: dict | None = None  # {action, uids, method}
    remaining: int = 0  # new UIDs left for the next run (limit, stop, or an error)
    # DSN bounces handed to the outbox (note_bounce): noted, matched to a send, failed inside the outbox
    bounces: dict = field(default_factory=lambda: {"noted": 0, "matched": 0, "errors": 0})

    def committed(self) -> int:
        return len(self.enqueued) + len(self.parked) + len(self.dropped) + len(self.duplicates)

    def to_dict(self) -> dict:
        return {
            "folder": self.folder,
            "uidvalidity": self.uidvalidity,
            "uidnext": self.uidnext,
            "highestmodseq": self.highestmodseq,
            "checkpoint_before": self.checkpoint_before,
            "checkpoint_after": self.checkpoint_after,
            "rebaselined": self.rebaselined,
            "new": self.new,
            "enqueued": len(self.enqueued),
            "quarantined": len(self.parked),
            "dropped": len(self.dropped),
            "duplicates": len(self.duplicates),
            "errors": self.errors,
            "remaining": self.remaining,
            "enqueued_messages": self.enqueued,
            "parked": self.parked,
            "dropped_messages": self.dropped,
            "duplicate_messages": self.duplicates,
            "secret_matches": self.secret_matches,
            "vanished": self.vanished,
            "post_commit": self.post_commit,
            "bounces": dict(self.bounces),
            "items": [e["path"] for e in self.enqueued] + [p["path"] for p in self.parked if p.get("path")],
        }


@dataclass
class PollOutcome:
    mailbox: str
    address: str
    via: str
    folders: list[FolderOutcome] = field(default_factory=list)
    locked: str | None = None  # another poller held the lock: nothing was done
    stopped: bool = False  # the stop event was set: the run ended early, cleanly
    error: dict | None = None  # {stage, error}: the mailbox could not be (fully) processed

    def total(self, name: str) -> int:
        return sum(len(getattr(f, name)) if name != "new" else f.new for f in self.folders)

    def bounces(self) -> dict:
        return {key: sum(f.bounces[key] for f in self.folders) for key in ("noted", "matched", "errors")}

    @property
    def message_errors(self) -> int:
        return sum(len(f.errors) for f in self.folders)

    def to_dict(self) -> dict:
        return {
            "mailbox": self.mailbox,
            "address": self.address,
            "via": self.via,
            "new": self.total("new"),
            "enqueued": self.total("enqueued"),
            "quarantined": self.total("parked"),
            "dropped": self.total("dropped"),
            "duplicates": self.total("duplicates"),
            "errors": self.message_errors + (1 if self.error else 0),
            "bounces": self.bounces(),
            "locked": self.locked,
            "stopped": self.stopped,
            "error": self.error,
            "folders": [f.to_dict() for f in self.folders],
        }
