"""The ledger row is never torn nor glued: whole lines in one write, a torn tail closed first.

The full-disk case runs on a real, small tmpfs filled up (it needs root to mount; skipped otherwise).
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from spine_comms.core.receipt_chain import CHAIN_FILE, chain_writer, read_chain
from spine_comms.core.receipts import LEDGER_HEADER, append_ledger
from tests.receipt_audit import ledger_rows


def row(n: int, error: str = "") -> list[str]:
    key = f"CAP-20300101-00000{n}__mailroom.status__R{n}"
    return [key, "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "done",
            "mailroom.status", "receipt.md", error, "capability"]  # fmt: skip


def test_a_torn_tail_left_by_another_writer_is_closed_before_the_next_row(tmp_path):
    ledger = tmp_path / "ledger.csv"
    append_ledger(ledger, row(1))
    with ledger.open("a") as handle:  # what a full disk left of the spine's `echo ... >> ledger.csv`
        handle.write("CAP-20300101-000002__x__R2,2030-01-01T0")
    append_ledger(ledger, row(3))
    lines = ledger.read_text().splitlines()
    assert lines[0] == ",".join(LEDGER_HEADER)
    assert lines[2] == "CAP-20300101-000002__x__R2,2030-01-01T0"  # kept, alone on its line
    assert lines[3].split(",") == row(3)  # whole: 9 columns, not glued onto the fragment


def test_commas_and_newlines_in_a_cell_never_add_columns_or_lines(tmp_path):
    ledger = tmp_path / "ledger.csv"
    append_ledger(ledger, row(1, error="refused, twice\nthen again"))
    assert ledger_rows(ledger)[0][7] == "refused; twice then again"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free block: what is left over is the ledger's own partly used last page."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_never_leaves_half_a_row_and_the_next_row_is_whole(small_disk):
    ledger = small_disk / "state" / "ledger.csv"
    append_ledger(ledger, row(1))
    before = ledger.read_bytes()
    filler = fill(small_disk)
    # Bigger than what is left of the ledger's last page: the kernel would write part of it.
    with pytest.raises(OSError) as raised:
        append_ledger(ledger, row(2, error="x" * 6000))
    assert raised.value.errno == errno.ENOSPC and str(ledger) in str(raised.value)
    assert ledger.read_bytes() == before  # the fragment was taken back out

    filler.unlink()
    append_ledger(ledger, row(3))
    assert [r[0] for r in ledger_rows(ledger)] == [row(1)[0], row(3)[0]]


def test_a_full_disk_keeps_the_receipt_chain_linked(small_disk):
    receipts = small_disk / "receipts"
    with chain_writer(receipts) as chain:
        chain.append("CAP-20300101-000001__a.b__R1", "1" * 64, "t")
    filler = fill(small_disk)
    with pytest.raises(OSError), chain_writer(receipts) as chain:
        chain.append("CAP-20300101-000002__a.b__R2" + "y" * 6000, "2" * 64, "t")
    filler.unlink()
    with chain_writer(receipts) as chain:
        assert chain.previous == "1" * 64
        chain.append("CAP-20300101-000003__a.b__R3", "3" * 64, "t")
    read = read_chain(receipts)
    assert read.breaks == [] and list(read.entries) == ["CAP-20300101-000001__a.b__R1", "CAP-20300101-000003__a.b__R3"]
    assert os.path.getsize(receipts / CHAIN_FILE) == len((receipts / CHAIN_FILE).read_bytes())
