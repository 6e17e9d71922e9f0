"""The receipt chain: one line per run, each linking the run before it, beside the receipts.

`receipts/sessions/.chain.jsonl` holds `{"run_key", "link", "previous", "at"}` per run, in the
order runs finished; `link` is the digest of that run's seal (receipt_seal.py) and `previous` the
link of the line before (zeros for the first). The seal inside each receipt.json carries the same
`previous`, so every receipt names the run before it.

Why a sidecar and not the ledger: the ledger keeps the spine's 9-column header (its readers, and
the spine's own cap.sh writing rows with echo, know nothing of a tenth column); the ledger may live
in a runtime root outside the root the gates read; and under the spine's runner spine-comms writes
no ledger row at all but still seals receipt.json. The seal records the digest of the ledger row
it wrote, so the row is bound too. The name starts with a dot so the spine's readers (`ls -1t
receipts/sessions`, `RCAP-*` globs) never see it.

Writers hold an exclusive flock on the file while they read the last link, append their line and
write their receipt (verify runs gates as parallel processes, each writing a receipt); the line goes
in before the receipt directory appears, so a reader that sees a receipt finds its line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spine_comms.core.appendfile import append_line, locked_append

CHAIN_FILE = ".chain.jsonl"
GENESIS = "0" * 64
_TAIL_BYTES = 64 * 1024


@dataclass
class ChainWriter:
    path: Path
    fd: int
    previous: str

    def append(self, run_key: str, link: str, at: str) -> None:
        line = json.dumps({"run_key": run_key, "link": link, "previous": self.previous, "at": at},
                          separators=(",", ":"))  # fmt: skip
        append_line(self.fd, self.path, line + "\n")


@contextmanager
def chain_writer(receipts_dir: Path) -> Iterator[ChainWriter]:
    """The chain, locked for one run: `previous` is the link of its last whole line."""
    path = receipts_dir / CHAIN_FILE
    with locked_append(path) as fd:
        yield ChainWriter(path, fd, _last_link(fd))


def _last_link(fd: int) -> str:
    size = os.fstat(fd).st_size
    start = max(0, size - _TAIL_BYTES)
    tail = os.pread(fd, size - start, start).decode("utf-8", errors="replace")
    lines = tail.split("\n")[:-1]  # what follows the last newline is a torn tail: never a link
    for line in reversed(lines):
        entry = _entry(line)
        if entry:
            return entry["link"]
    return GENESIS


def _entry(line: str) -> dict | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("run_key", "link", "previous")):
        return entry
    return None


@dataclass
class Chain:
    """The chain as a reader sees it: entries by run key, and where consecutive lines do not link."""

    path: Path
    entries: dict[str, dict] = field(default_factory=dict)
    breaks: list[str] = field(default_factory=list)
    _size: int = -1

    def load(self) -> Chain:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        self._size = len(raw)
        self.entries, self.breaks = {}, []
        previous, number = GENESIS, 0
        text = raw.decode("utf-8", errors="replace")
        for number, line in enumerate(text.split("\n")[:-1], start=1):
            entry = _entry(line)
            if entry is None:
                continue  # a mended torn tail: the next writer linked past it
            if entry["previous"] != previous:
                self.breaks.append(f"{self.path.name} line {number} ({entry['run_key']}) does not link to the line "
                                   "before it: lines were removed, inserted or edited")  # fmt: skip
            entry["line"] = number
            self.entries[entry["run_key"]] = entry
            previous = entry["link"]
        return self

    def find(self, run_key: str) -> dict | None:
        """The run's line; a receipt newer than our read sends us back to the file once."""
        if run_key not in self.entries and self._size != _size_of(self.path):
            self.load()
        return self.entries.get(run_key)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def read_chain(receipts_dir: Path) -> Chain:
    return Chain(receipts_dir / CHAIN_FILE).load()
