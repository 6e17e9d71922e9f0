"""Checkpoints, the poll lock, the delivery index and the content-addressed store (spine_comms.inbox)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spine_comms.inbox.checkpoint import (
    CheckpointStore,
    FolderCheckpoint,
    LockHeld,
    heartbeat_path,
    poll_lock,
    read_heartbeat,
    safe_component,
)
from spine_comms.inbox.store import DeliveryIndex, MessageStore, content_sha256

REPO = Path(__file__).resolve().parents[2]


def test_checkpoint_round_trip_and_no_temporaries(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "ops")
    assert store.load("INBOX") is None
    checkpoint = FolderCheckpoint("INBOX", 1795303294, 41, 77, "2026-11-21T23:21:38Z")
    store.save(checkpoint)
    assert store.load("INBOX") == checkpoint
    checkpoint.last_uid = 42
    store.save(checkpoint)
    assert store.load("INBOX").last_uid == 42
    leftovers = [p.name for p in store.directory.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_each_folder_has_its_own_file_inside_the_state_directory(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "ops")
    names = ["INBOX", "inbox", "../../etc/passwd", "/abs/olute", "Lists.dev", "Lists/dev", "\x00nul", "é" * 200]
    for uid, name in enumerate(names, start=1):
        store.save(FolderCheckpoint(name, 7, uid))
    paths = {store.path(n) for n in names}
    assert len(paths) == len(names)  # INBOX and inbox, Lists.dev and Lists/dev never share a checkpoint
    for name in names:
        path = store.path(name)
        assert path.resolve().parent == store.directory.resolve()
        assert store.load(name).folder == name
    assert all(len(p.name.encode()) < 100 for p in paths)


def test_safe_component_is_never_a_path() -> None:
    for name in ["..", ".", "", "/", "a/../../b", "\\\\server\\share", ".hidden"]:
        part = safe_component(name)
        assert "/" not in part and "\\" not in part and not part.startswith(".") and part not in ("", "..")


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"folder": "INBOX"}', '{"folder": "INBOX", "uidvalidity": "x", "last_uid": 1}', "[]"],
)
def test_a_damaged_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path, content: str) -> None:
    store = CheckpointStore(tmp_path, "ops")
    store.path("INBOX").parent.mkdir(parents=True)
    store.path("INBOX").write_text(content)
    with pytest.raises(ValueError, match="checkpoint"):
        store.load("INBOX")


def test_state_directory_relative_or_absolute(tmp_path: Path) -> None:
    from spine_comms.contracts.inbox import InboxContract

    def contract(where: str) -> InboxContract:
        return InboxContract(version=1, mailboxes=[{"id": "ops"}], state_directory=where)

    assert contract("communications/inbox").state_path(tmp_path) == tmp_path / "communications/inbox"
    assert contract("/var/lib/x").state_path(tmp_path) == Path("/var/lib/x")


def test_lock_excludes_a_second_holder_and_frees_on_exit(tmp_path: Path) -> None:
    with poll_lock(tmp_path, "ops") as path:
        assert path.read_text().strip() == f"pid {os.getpid()}"
        with pytest.raises(LockHeld, match="another poll holds the lock") as caught, poll_lock(tmp_path, "ops"):
            pass
        assert f"pid {os.getpid()}" in str(caught.value)
        with poll_lock(tmp_path, "alerts"):  # another mailbox is not blocked
            pass
    with poll_lock(tmp_path, "ops"):
        pass


def test_lock_wait_times_out_then_succeeds_once_freed(tmp_path: Path) -> None:
    holder = _hold_lock_in_child(tmp_path, seconds=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld), poll_lock(tmp_path, "ops", wait=0.3):
            pass
        assert 0.25 <= time.monotonic() - started < 0.9
        with poll_lock(tmp_path, "ops", wait=5.0):
            assert time.monotonic() - started >= 0.9  # got it only after the child let go
    finally:
        holder.wait(timeout=10)


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    holder = _hold_lock_in_child(tmp_path, seconds=60)
    with pytest.raises(LockHeld), poll_lock(tmp_path, "ops"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with poll_lock(tmp_path, "ops", wait=2.0):
        pass


def _hold_lock_in_child(state_dir: Path, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from spine_comms.inbox.checkpoint import poll_lock
        with poll_lock(Path({str(state_dir)!r}), "ops"):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_heartbeat_read_when_present_and_sane(tmp_path: Path) -> None:
    assert read_heartbeat(tmp_path, "ops") is None
    heartbeat_path(tmp_path, "ops").write_text(json.dumps({"at": "2026-11-21T23:00:00Z", "pid": 1, "mailbox": "ops"}))
    assert read_heartbeat(tmp_path, "ops")["at"] == "2026-11-21T23:00:00Z"
    heartbeat_path(tmp_path, "ops").write_text("{half")
    assert read_heartbeat(tmp_path, "ops") is None


def test_delivery_index_records_and_finds(tmp_path: Path) -> None:
    index = DeliveryIndex(tmp_path, "ops")
    identity = content_sha256(b"message")
    assert index.get(identity) is None
    index.record(identity, {"run_id": "Rabc", "lane": "queued"})
    assert index.get(identity) == {"run_id": "Rabc", "lane": "queued"}
    index.path(identity).write_text("garbage")
    assert index.get(identity) == {"damaged": True}  # still committed: never enqueued twice
    with pytest.raises(ValueError):
        index.path("../../etc/passwd")


def test_delivery_marker_is_a_link_to_the_normalized_json(tmp_path: Path, monkeypatch) -> None:
    store, index = MessageStore(tmp_path), DeliveryIndex(tmp_path, "ops")
    identity = content_sha256(b"message")
    delivery = {"run_id": "Rabc", "lane": "parked", "path": "/x/item.md"}
    stored = store.put_normalized(identity, {"message_id": "<m@x>", "spine_comms": {"delivery": delivery}})
    assert index.get(identity) is None
    marker = index.link(identity, stored)  # the first marker under its prefix: the directory is made
    assert marker.stat().st_ino == stored.stat().st_ino and index.get(identity) == delivery
    assert index.link(identity, stored) == marker  # linking again changes nothing
    # A newer parser rewriting the .json (a new file) leaves the marker with what was delivered.
    store.put_normalized(identity, {"message_id": "<m@x>", "spine_comms": {"delivery": {"lane": "queued"}}})
    assert index.get(identity) == delivery

    # Where hard links do not work, the marker is a copy.
    other = content_sha256(b"other")
    stored = store.put_normalized(other, {"spine_comms": {"delivery": delivery}})

    def no_links(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    marker = index.link(other, stored)
    assert marker.stat().st_ino != stored.stat().st_ino and index.get(other) == delivery


def test_store_is_content_addressed_and_keeps_names_inside(tmp_path: Path) -> None:
    store = MessageStore(tmp_path)
    sha = content_sha256(b"raw")
    first = store.put_raw(sha, b"raw")
    assert first == tmp_path / "messages" / sha[:2] / f"{sha}.eml" and first.read_bytes() == b"raw"
    assert store.put_raw(sha, b"raw") == first
    payload_sha = content_sha256(b"pdf")
    for hostile in ["../../escape.txt", "/etc/passwd", "..", "", "a\x00b", "dir/name"]:
        path = store.put_attachment(payload_sha, hostile, b"pdf")
        assert path.resolve().parent == (tmp_path / "attachments" / payload_sha[:2] / payload_sha).resolve()
    assert not (tmp_path.parent / "escape.txt").exists()
    with pytest.raises(ValueError):
        store.put_raw("../x", b"")
