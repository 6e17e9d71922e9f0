"""The filesystem mailroom: the spine's inbox lanes, and items written so no reader sees half of one.

Names follow ops/runtime/inbox/agent-enqueue.sh: `<session>__<slug>__<run id>.md`, and the
file stem is what the spine calls the run id (the bridge's status endpoint, the ledger, the
outbox's `<stem>__RESULT.md`). Two differences, both deliberate:
- the default session is `S%Y%m%d-%H%M%S` in UTC (the script uses local time), and the default
  run id is `R` and 10 random characters (the script's `R%03d` collides after a few dozen items);
- the item is written to a hidden temporary file in the lane (the watcher skips dotfiles and
  anything not .md/.txt), fsynced, then hard-linked to its final name, which fails rather than
  replace an existing item, and the lane directory is fsynced. The script writes in place and
  relies on the watcher sleeping 0.5 s. The temporary's name carries the writer's pid, and the
  next enqueue into that lane removes those of writers no longer running (a kill -9).
"""

from __future__ import annotations

import os
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spine_comms.core.atomic import fsync_dir, sweep_temporaries

LANES = ("queued", "running", "done", "failed", "parked", "archived")
ITEM_SUFFIXES = (".md", ".txt")  # what the watcher picks up
# The bridge's status endpoint pattern; \Z, since Python's $ also matches before a final newline.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9._:-]+\Z")
SESSION_RE = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]*\Z")  # no leading dot: a hidden item is never read
MAX_PART = 128
TEMP_SUFFIX = ".tmp"


class MailroomError(Exception):
    """A mailroom operation refused or failed; the message says what and where."""


class ItemExists(MailroomError):
    """An item with this name, or with this explicit run id, is already in the mailroom."""

    def __init__(self, message: str, existing: Path, lane: str):
        super().__init__(message)
        self.existing = existing
        self.lane = lane


@dataclass(frozen=True)
class EnqueuedItem:
    path: Path
    run_id: str  # the file stem, as the spine names runs
    session_id: str
    slug: str
    lane: str

    @property
    def rid(self) -> str:
        """The last part of the stem (`R...`), what `--run-id` sets."""
        return self.run_id.rsplit("__", 1)[-1]

    def to_dict(self) -> dict:
        return {"path": str(self.path), "run_id": self.run_id, "rid": self.rid, "session_id": self.session_id,
                "slug": self.slug, "lane": self.lane}  # fmt: skip


def clean_slug(slug: str) -> str:
    """agent-enqueue.sh's `tr -cd 'a-zA-Z0-9_-'`, bounded; an empty result becomes `task`."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "", slug or "")[:64]
    return cleaned or "task"


def new_run_id() -> str:
    return "R" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10))


def new_session_id(now: datetime | None = None) -> str:
    return f"S{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%d-%H%M%S}"


def check_part(value: str, pattern: re.Pattern, what: str) -> str:
    if not value or len(value) > MAX_PART or not pattern.match(value) or ".." in value or "__" in value:
        raise MailroomError(
            f"invalid {what} {value[:80]!r}: use letters, digits and . _ : - (at most {MAX_PART}, no '..' or '__'"
            + (", not starting with '.')" if what == "session id" else ")")
        )
    return value


class Mailroom:
    """One mailroom inbox (ctx.mailroom.inbox) with its lanes below it."""

    def __init__(self, inbox: Path):
        self.inbox = Path(inbox)

    def lane_dir(self, lane: str) -> Path:
        if lane not in LANES:
            raise MailroomError(f"unknown lane {lane!r} (one of {', '.join(LANES)})")
        return self.inbox / lane

    def enqueue(
        self,
        text: str,
        *,
        slug: str,
        run_id: str | None = None,
        session_id: str | None = None,
        lane: str = "queued",
        check_run_id: bool = True,
    ) -> EnqueuedItem:
        """Write `text` as a new item. An explicit run id already in any lane raises ItemExists
        (a retried enqueue must not run twice); so does the exact name in the target lane, checked
        atomically by the hard link. Never leaves a partial file under the final name.

        The run id check lists every lane, so its cost grows with the lanes; a caller that keeps
        its own index of what it enqueued (the inbox pipeline) may pass check_run_id=False. The
        check is not atomic across lanes: concurrent writers of one run id need their own lock."""
        slug_clean = clean_slug(slug)
        session = check_part(session_id, SESSION_RE, "session id") if session_id else new_session_id()
        rid = check_part(run_id, RUN_ID_RE, "run id") if run_id else new_run_id()
        final = self.item_path(slug=slug_clean, run_id=rid, session_id=session, lane=lane)
        directory = final.parent
        directory.mkdir(parents=True, exist_ok=True)
        if run_id and check_run_id:
            found = self.find(rid)
            if found:
                raise ItemExists(f"run id {rid} is already in the mailroom ({found[0]}: {found[1]})", found[1],
                                 found[0])  # fmt: skip
        stem = final.stem
        payload = text.encode("utf-8")
        sweep_temporaries(directory)  # what a killed writer left in this lane (named with its pid)
        temp = directory / f".{stem}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # mail is private
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, final)  # unlike rename, a link never replaces what is there
            except FileExistsError:
                raise ItemExists(f"{final} already exists; nothing was overwritten", final, lane) from None
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(directory)
        return EnqueuedItem(final, stem, session, slug_clean, lane)

    def item_path(self, *, slug: str, run_id: str, session_id: str, lane: str = "queued") -> Path:
        """Where the item `<session>__<slug>__<run id>.md` goes in `lane`; every part checked. For a
        writer that stages the item itself (a hidden temporary in the lane, then a hard link)."""
        session = check_part(session_id, SESSION_RE, "session id")
        rid = check_part(run_id, RUN_ID_RE, "run id")
        return self.lane_dir(lane) / f"{session}__{clean_slug(slug)}__{rid}.md"

    def items(self, lane: str) -> list[Path]:
        """The items the watcher would see in `lane`: visible .md/.txt files, sorted by name."""
        directory = self.lane_dir(lane)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        return sorted(
            Path(e.path) for e in entries
            if not e.name.startswith(".") and e.name.endswith(ITEM_SUFFIXES) and e.is_file(follow_symlinks=False)
        )  # fmt: skip

    def find(self, run_id: str, *, suffixes: tuple[str, ...] = ITEM_SUFFIXES) -> tuple[str, Path] | None:
        """The lane and path of an item, by its stem (`S...__slug__R...`) or by its run id part
        (`R...`). Lanes are searched in the watcher's order; the outbox result is not a lane (see
        mailroom.status). A stem is looked up with each of `suffixes` (a writer that knows its
        items' suffix saves the other stat per lane)."""
        if not run_id or not RUN_ID_RE.match(run_id):
            return None
        by_stem = "__" in run_id
        for lane in LANES:
            directory = self.inbox / lane
            if by_stem:
                for suffix in suffixes:
                    candidate = f"{directory}/{run_id}{suffix}"  # os.path on a str: pathlib costs more than the stat
                    if os.path.isfile(candidate):
                        return lane, Path(candidate)
                continue
            try:
                entries = os.scandir(directory)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    stem, dot, suffix = entry.name.rpartition(".")
                    if (stem.endswith(f"__{run_id}") and f".{suffix}" in ITEM_SUFFIXES and dot
                            and not entry.name.startswith(".")):  # fmt: skip
                        return lane, Path(entry.path)
        return None

    def exists(self, run_id: str) -> bool:
        """In any lane, by stem or by run id part: the pipeline's exactly-once check."""
        return self.find(run_id) is not None

    def temporaries(self, lane: str) -> list[Path]:
        """Hidden temporary files a killed writer left behind (the watcher ignores them)."""
        try:
            return [Path(e.path) for e in os.scandir(self.lane_dir(lane))
                    if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX)]  # fmt: skip
        except FileNotFoundError:
            return []

    def status(self, now: datetime) -> dict[str, dict]:
        """lane -> {count, oldest_age_seconds, oldest, temporaries}; age from the file's mtime
        (the watcher's mv keeps it, so it is the time the item was enqueued)."""
        report = {}
        for lane in LANES:
            oldest, oldest_mtime, count = None, None, 0
            for path in self.items(lane):
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # moved by the watcher while we looked
                    continue
                count += 1
                if oldest_mtime is None or mtime < oldest_mtime:
                    oldest, oldest_mtime = path, mtime
            age = None if oldest_mtime is None else round(max(0.0, now.timestamp() - oldest_mtime), 1)
            report[lane] = {
                "count": count,
                "oldest_age_seconds": age,
                "oldest": str(oldest) if oldest else None,
                "temporaries": len(self.temporaries(lane)),
            }
        return report
