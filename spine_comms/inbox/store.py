"""What the pipeline keeps in its state directory, and the index that makes delivery exactly-once.

Content-addressed, so storing twice is harmless and a rerun after a crash
rewrites nothing it already has:

    messages/<sha[:2]>/<sha>.eml            the raw message as fetched
    messages/<sha[:2]>/<sha>.json           the normalized message (parse_message(...).to_dict())
    attachments/<sha[:2]>/<sha>/<safe name> each attachment, under its own content hash
    <mailbox>/delivered/<id[:2]>/<id>.json  one marker per message identity: committed, and how; a
                                            hard link to the message's .json (its `spine_comms`
                                            block says how it was delivered), so a marker costs
                                            a directory entry, not a new file

Every file is written atomically (temporary file, fsync, rename), or staged in the batch's
BatchWriter and made durable with the rest of the batch (staging.py). Names come
from hashes and from the parser's safe attachment names, which are checked
again here: nothing a message says can name a path outside this directory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import orjson

from spine_comms.core.atomic import write_atomic
from spine_comms.inbox.staging import REPLACE, SAME, BatchWriter

_HEX = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[^/\\\x00]{1,255}$")


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MessageStore:
    """Raw messages, normalized JSON and attachments, content-addressed under `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir

    def _message_path(self, sha: str, suffix: str) -> Path:
        if not _HEX.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        return self.root / "messages" / sha[:2] / f"{sha}{suffix}"

    def put_raw(self, sha: str, raw: bytes, batch: BatchWriter | None = None) -> Path:
        """With `batch`, staged for the batch's commit; a file already there is neither written nor synced."""
        path = self._message_path(sha, ".eml")
        if not os.path.exists(path):
            _write(path, raw, SAME, batch)
        return path

    def normalized_path(self, sha: str) -> Path:
        return self._message_path(sha, ".json")

    def put_normalized(self, sha: str, normalized: dict, batch: BatchWriter | None = None) -> Path:
        path = self.normalized_path(sha)
        # Rewritten each time: the same bytes give the same JSON, and a newer parser may know more.
        # Compact: json's C encoder runs only without indent (indent=1 took half a millisecond per message).
        _write(path, dumps(normalized), REPLACE, batch)
        return path

    def put_attachment(self, sha: str, filename: str, payload: bytes, batch: BatchWriter | None = None) -> Path:
        if not _HEX.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        name = filename if _SAFE_NAME.match(filename or "") and filename not in (".", "..") else "attachment.bin"
        directory = self.root / "attachments" / sha[:2] / sha
        path = directory / name
        # The parser already made the name safe; a second look costs nothing and keeps the promise here.
        if path.resolve().parent != directory.resolve():
            path = directory / "attachment.bin"
        if not path.exists():
            _write(path, payload, SAME, batch)
        return path


class DeliveryIndex:
    """One marker per message identity and mailbox: the message was committed (enqueued, parked,
    dropped). A name per entry keeps each commit O(1), whatever the mailbox has seen before."""

    def __init__(self, state_dir: Path, mailbox_id: str) -> None:
        self.directory = state_dir / mailbox_id / "delivered"

    def path(self, identity: str) -> Path:
        if not _HEX.match(identity):
            raise ValueError(f"not a sha256: {identity!r}")
        return self.directory / identity[:2] / f"{identity}.json"

    def get(self, identity: str) -> dict | None:
        """The marker's delivery record ({run_id, lane, ...}), or None when the identity was never committed."""
        try:
            data = json.loads(self.path(identity).read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            # A marker is written atomically, so a damaged one was damaged by someone else; it
            # still says "committed" (its name is the identity), which is what matters here.
            return {"damaged": True}
        if not isinstance(data, dict):
            return {"damaged": True}
        linked = (data.get("spine_comms") or {}).get("delivery") if "spine_comms" in data else None
        return linked if isinstance(linked, dict) else data  # a linked .json, or a marker of its own

    def link(self, identity: str, normalized: Path) -> Path:
        """Mark `identity` committed: its marker becomes a second name of the stored `normalized` .json
        (already synced and placed), which costs a directory entry instead of a new file. Durable
        after the batch's next sync. A link never replaces: a marker already there (another run
        committed the same message) stays, and says the same. A state directory where hard links
        do not work gets a copy instead."""
        path = self.path(identity)
        for attempt in (1, 2):
            try:
                os.link(normalized, path)
            except FileExistsError:
                pass
            except FileNotFoundError:
                if attempt == 2 or not normalized.exists():
                    raise
                path.parent.mkdir(parents=True, exist_ok=True)  # the first marker under this prefix
                continue
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                write_atomic(path, normalized.read_bytes(), 0o600)
            return path
        return path

    def record(self, identity: str, entry: dict, batch: BatchWriter | None = None) -> Path:
        path = self.path(identity)
        _write(path, dumps(entry), REPLACE, batch)
        return path


# orjson encodes a normalized message (its ~50 KB of text) in about a seventh of json's time. Its
# native forms of datetimes and dataclasses are passed to `default`, as json does, so the two agree
# but for the spaces json puts after separators; what orjson refuses (a lone surrogate, an integer
# wider than 64 bits) is encoded by json, as before. (A float that is not finite, which no message
# yields, becomes null: valid JSON, where json wrote Infinity.)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def dumps(data: dict) -> bytes:
    """One JSON document in UTF-8, ending with a line break."""
    try:
        return orjson.dumps(data, default=str, option=_ORJSON_OPTIONS | orjson.OPT_APPEND_NEWLINE)
    except (orjson.JSONEncodeError, TypeError):
        return (json.dumps(data, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _write(path: Path, data: str | bytes, how: str, batch: BatchWriter | None) -> None:
    if batch is None:
        write_atomic(path, data, 0o600)
    else:
        batch.stage(path, data, 0o600, how)
