"""Faults in the inbox pipeline, each ending with: every message exactly once across the mailroom's lanes.

kill -9 at random instants, the IMAP connection cut mid-fetch by a proxy (Dovecot
still serves: the proxy only forwards bytes, then stops), a full disk (a small
tmpfs as the mailroom), two pollers at once, and a folder recreated under a new
UIDVALIDITY with the same messages."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.cli_process import SPINE_COMMS, clean_env
from tests.integration.inbox_lab import (
    assert_exactly_once,
    checkpoint,
    folder_result,
    items,
    make_root,
    message_ids_in_items,
    run,
)
from tests.mailbox_fill import delete_folder, fill_imap, fill_maildir, folder_uids, imap_client, make_messages
from tests.tcp_relay import Relay

pytestmark = pytest.mark.lab


def _folder() -> str:
    return f"F{uuid.uuid4().hex[:10]}"


def _ids(tag: str, n: int) -> set[str]:
    return {f"<{tag}.{i}@example.org>" for i in range(n)}


def _popen(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [SPINE_COMMS, "communications.inbox.poll", "--root", str(root), "--json", "--enqueue", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(env),
    )  # fmt: skip


def _wait_for_lock_holder(root: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until `proc` holds the mailbox's poll lock: it writes its pid into the lock file once it has the flock."""
    lock = root / "mailroom" / "state" / "communications" / "inbox" / "sink.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == f"pid {proc.pid}":
                return
        assert proc.poll() is None, "the first poll ended before it was seen holding the lock"
        time.sleep(0.01)
    raise AssertionError(f"{lock} never named pid {proc.pid}")


def _no_temporaries(root: Path) -> None:
    """A killed writer may leave a hidden temporary (the watcher ignores them); never a visible partial."""
    for lane_dir in (root / "mailroom" / "inbox").glob("*"):
        for path in lane_dir.iterdir():
            assert path.name.startswith(".") or path.suffix == ".md", path


def test_kill_9_at_random_instants_then_rerun_gives_each_message_once(lab, lab_root, tmp_path) -> None:
    folder, n, trials = _folder(), 500, 20
    fill_maildir(lab, "sink", folder, make_messages(n, seed=11, tag="kill", max_bytes=64 * 1024))
    root = make_root(tmp_path, lab, lab_root, folders=[folder], after="{action: seen}")
    rng = random.Random(int(os.environ.get("KILL_SEED", "20261121")))
    progress = []
    for _ in range(trials):
        child = _popen(root)
        time.sleep(rng.uniform(0.3, 2.5))  # startup, login, fetch, mid-batch, mid-post-commit...
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        progress.append(len(message_ids_in_items(root)))  # also asserts no visible item is partial
        _no_temporaries(root)
    assert progress[-1] > 0, "the kills all landed before any message was processed"
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    final = folder_result(env)
    assert final["errors"] == []
    assert_exactly_once(root, _ids("kill", n))
    uids = folder_uids(lab, "sink", folder)
    assert checkpoint(root, "sink", folder)["last_uid"] == max(uids)
    with imap_client(lab, "sink") as imap:
        imap.select_folder(folder, readonly=True)
        assert imap.search(["UNSEEN"]) == []  # every message flagged, each only after its item was written
    # And the delivery index agrees: one marker per message, no more.
    markers = list((root / "mailroom/state/communications/inbox/sink/delivered").rglob("*.json"))
    assert len(markers) == n
    # The files the killed runs made ahead of need, and every hidden temporary they staged, are swept by
    # the rerun, which leaves none of its own.
    assert _hidden_leftovers(root) == []


def _hidden_leftovers(root: Path) -> list[str]:
    """Every hidden temporary, file made ahead, writer's journal or home left anywhere in the mailroom."""
    found = []
    for path in (root / "mailroom").rglob(".*"):
        journal = path.name == ".writers" and any(path.iterdir())
        if path.name.endswith(".tmp") or path.name.startswith(".ahead") or journal:
            found.append(str(path.relative_to(root)))
    return sorted(found)


def _staged_temporaries(root: Path) -> list[Path]:
    """Temporaries beside their final names (a lane, the message store): what only the journal sweep finds."""
    return [p for p in (root / "mailroom").rglob(".*.tmp") if ".ahead" not in p.parts and ".writers" not in p.parts]


def test_kill_9_while_temporaries_are_staged_then_the_next_run_sweeps_them(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 600
    fill_maildir(lab, "sink", folder, make_messages(n, seed=19, tag="sweep", max_bytes=96 * 1024))
    root = make_root(tmp_path, lab, lab_root, folders=[folder], after="{action: seen}")
    caught = 0
    for _ in range(6):
        child = _popen(root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None and not _staged_temporaries(root):
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        caught += bool(_staged_temporaries(root))
        message_ids_in_items(root)  # no visible item is partial
    assert caught >= 2, "no kill landed while temporaries were staged"
    assert _staged_temporaries(root), "the last kill should have left some for the rerun to sweep"
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    assert _hidden_leftovers(root) == []
    assert_exactly_once(root, _ids("sweep", n))


class CuttingProxy(Relay):
    """Relays TCP to Dovecot and drops the connection after `cut_after` bytes from the server."""

    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        self.cut_after, self.cuts = cut_after, 0
        super().__init__(upstream)

    def forward(self, data: bytes, *, to_server: bool, so_far: int) -> tuple[bytes, bool]:
        if to_server or so_far + len(data) <= self.cut_after:
            return data, True
        self.cuts += 1
        return data[: self.cut_after - so_far], False


def test_connection_cut_mid_fetch_then_rerun_gives_each_message_once(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 200
    fill_maildir(lab, "sink", folder, make_messages(n, seed=12, tag="cut", max_bytes=64 * 1024))
    root = make_root(tmp_path, lab, lab_root, folders=[folder], after="{action: seen}")
    stages = []
    for cut_after in (3_000, 40_000, 400_000, 800_000, 1_500_000):
        proxy = CuttingProxy((lab["host"], lab["ports"]["imaps"]), cut_after)
        try:
            code, env, _ = run(root, "--enqueue", env={"STALWART_IMAP_PORT": str(proxy.port)}, timeout=120)
        finally:
            proxy.close()
        assert code in (1, 3), (cut_after, env["status"], env["summary"])
        assert proxy.cuts >= 1
        if code == 1:
            error = env["data"]["mailboxes"][0]["error"]
            stages.append(error["stage"])
            assert error and "imap" in error["stage"], error
        message_ids_in_items(root)  # no partial item
    assert any(s == "imap fetch" for s in stages), stages  # at least one cut landed inside a FETCH
    assert 0 < len(message_ids_in_items(root)) < n
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    assert_exactly_once(root, _ids("cut", n))
    assert checkpoint(root, "sink", folder)["last_uid"] == max(folder_uids(lab, "sink", folder))


def _mount_tmpfs(path: Path, size: str, inodes: int | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit {done.returncode}"
        pytest.skip(f"cannot mount a tmpfs here ({why}): the full-disk case needs root")


def _placed_report(env: dict) -> int:
    """Items the run says it placed (enqueued or quarantined), over every mailbox."""
    return sum(m.get("enqueued", 0) + m.get("quarantined", 0) for m in env["data"]["mailboxes"])


def test_full_disk_writes_no_partial_item_and_keeps_the_checkpoint(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 30
    messages = make_messages(n, seed=13, tag="full", min_bytes=120 * 1024, max_bytes=140 * 1024, every=0)
    fill_imap(lab, "sink", folder, messages, connections=2)
    root = make_root(tmp_path, lab, lab_root, folders=[folder], after="{action: seen}")
    mailroom = root / "mailroom"
    _mount_tmpfs(mailroom, "2m")
    try:
        # 1. The disk fills up partway through: what was written is whole, the rest is not started, and
        #    the report counts exactly what the watcher will see (partial, exit 1: it changed the mailroom).
        code, env, _ = run(root, "--enqueue")
        assert code == 1 and env["status"] == "partial", env["summary"]
        error = env["data"]["mailboxes"][0]["error"]
        assert error["stage"] == "store" and "No space left on device" in error["error"]
        assert str(mailroom) in error["error"]  # the path is named
        written = message_ids_in_items(root)  # asserts every visible item is complete
        assert 0 < len(written) < n
        assert _placed_report(env) == len(written)
        _no_temporaries(root)
        cp = checkpoint(root, "sink", folder)
        committed = [e["uid"] for e in folder_result(env)["enqueued_messages"]]
        assert len(committed) == len(written)
        # Advanced exactly to the last written message (or not written at all: the disk was full).
        assert cp is None or cp["last_uid"] == max(committed)
        with imap_client(lab, "sink") as imap:
            imap.select_folder(folder, readonly=True)
            assert len(imap.search(["UNSEEN"])) == n - len(written)  # only written ones were flagged

        # 2. Full from the start: nothing written, the checkpoint stays where it was: error, exit 3 (never 70),
        #    naming the full file system's path.
        filler = mailroom / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False)
        before = checkpoint(root, "sink", folder)
        code, env, stderr = run(root, "--enqueue")
        assert code == 3 and env["status"] == "error", (code, env["summary"], stderr[-500:])
        error = json.dumps(env["data"]["mailboxes"][0]["error"])
        assert "No space left on device" in error and str(mailroom) in error
        assert _placed_report(env) == 0
        assert message_ids_in_items(root) == written and checkpoint(root, "sink", folder) == before
        _no_temporaries(root)

        # 3. Space again: the rerun completes, each message exactly once.
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=64m", str(mailroom)], check=True)
        code, env, _ = run(root, "--enqueue")
        assert code == 0, env["summary"]
        assert_exactly_once(root, _ids("full", n))
    finally:
        subprocess.run(["umount", "-l", str(mailroom)], check=False)


def test_no_free_inode_is_a_clear_error_and_never_70(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 40
    fill_imap(lab, "sink", folder, make_messages(n, seed=17, tag="inode", max_bytes=4 * 1024), connections=2)
    root = make_root(tmp_path, lab, lab_root, folders=[folder], after="{action: seen}")
    mailroom = root / "mailroom"
    codes = []
    for inodes in (12, 40, 80, 160):  # from "nothing fits" to "runs out halfway"
        subprocess.run(["umount", "-l", str(mailroom)], check=False, capture_output=True)
        _mount_tmpfs(mailroom, "64m", inodes=inodes)
        try:
            code, env, stderr = run(root, "--enqueue")
            codes.append(code)
            assert code in (0, 1, 3), (inodes, code, stderr[-800:])
            placed = _placed_report(env) if env else 0
            written = message_ids_in_items(root)
            assert placed == len(written), (inodes, placed, len(written))  # the report is what was placed
            if code == 3:
                assert env["status"] == "error" and placed == 0
                assert "No space left on device" in json.dumps(env["data"]) + json.dumps(env.get("error"))
            _no_temporaries(root)
        finally:
            subprocess.run(["umount", "-l", str(mailroom)], check=False)
    assert 3 in codes and 1 in codes, codes


def test_health_fails_a_mailroom_short_of_inodes_before_a_poll_would(lab, lab_root, tmp_path) -> None:
    from tests.integration.inbox_lab import capability

    root = make_root(tmp_path, lab, lab_root, folders=[_folder()])
    mailroom = root / "mailroom"
    for inodes, expected in ((400, "fail"), (100_000, "ok")):
        _mount_tmpfs(mailroom, "64m", inodes=inodes)
        (mailroom / "inbox" / "queued").mkdir(parents=True)
        try:
            _, env, _ = capability(root, "communications.inbox.health")
        finally:
            subprocess.run(["umount", "-l", str(mailroom)], check=False)
        check = next(c for c in env["checks"] if c["id"] == "inbox.health.mailroom")
        assert check["status"] == expected, check
        if expected == "fail":
            assert "free inodes" in check["detail"] and str(mailroom) in check["detail"]


def test_a_commit_stopped_by_a_full_disk_reports_the_items_it_placed(lab, lab_root, tmp_path, monkeypatch) -> None:
    """The disk fills between the items and their delivery markers: the items are in the mailroom, so the
    report counts them (never "0 enqueued; nothing committed"), and the rerun marks them, each once."""
    import errno

    from spine_comms.inbox import store
    from spine_comms.inbox.pipeline import process_new
    from spine_comms.protocols.imap import session
    from tests.integration.inbox_lab import in_process

    folder, n = _folder(), 12
    fill_imap(lab, "sink", folder, make_messages(n, seed=18, tag="mark", max_bytes=8 * 1024), connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder])
    real_link, calls = store.DeliveryIndex.link, []

    def full_after_five(self, identity, normalized):
        calls.append(identity)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_link(self, identity, normalized)

    monkeypatch.setattr(store.DeliveryIndex, "link", full_after_five)
    ctx, contract, mailbox = in_process(root, monkeypatch)
    with session(mailbox.imap) as imap:
        outcome = process_new(ctx, contract, mailbox, imap)
    placed = message_ids_in_items(root)
    counts = outcome.to_dict()
    assert outcome.error and outcome.error.get("disk_full"), outcome.error
    assert counts["enqueued"] == len(placed) > 0, (counts, len(placed))
    assert "without their delivery markers" in outcome.error["error"]
    monkeypatch.setattr(store.DeliveryIndex, "link", real_link)
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    assert_exactly_once(root, _ids("mark", n))


def test_two_pollers_at_once_one_exits_or_waits_and_none_duplicates(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 300
    fill_maildir(lab, "sink", folder, make_messages(n, seed=14, tag="two", max_bytes=64 * 1024))
    root = make_root(tmp_path, lab, lab_root, folders=[folder])
    first = _popen(root)
    # Once the first holds the lock it is paused, so the second surely starts while it is held (a fast
    # first poll could otherwise finish before the second process has even imported its modules).
    _wait_for_lock_holder(root, first)
    first.send_signal(signal.SIGSTOP)
    try:
        second = _popen(root)
        out2, _ = second.communicate(timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    out1, _ = first.communicate(timeout=300)
    env1, env2 = json.loads(out1), json.loads(out2)
    assert first.returncode == 0 and env1["status"] == "ok"
    assert second.returncode == 0 and env2["status"] == "warn"  # exits without error
    locked = env2["data"]["mailboxes"][0]["locked"]
    assert locked and "another poll holds the lock" in locked
    assert_exactly_once(root, _ids("two", n))

    # With --lock-wait the second waits for the first and then finds nothing left to do.
    more = make_messages(n + 150, seed=15, tag="two", max_bytes=64 * 1024)[n:]
    fill_maildir(lab, "sink", folder, more)
    first, second = _popen(root), None
    time.sleep(0.8)
    second = _popen(root, "--lock-wait", "300")
    env1, env2 = (json.loads(p.communicate(timeout=300)[0]) for p in (first, second))
    assert first.returncode == 0 and second.returncode == 0
    assert env2["data"]["mailboxes"][0]["locked"] is None
    assert env1["data"]["mailboxes"][0]["enqueued"] + env2["data"]["mailboxes"][0]["enqueued"] == 150
    assert_exactly_once(root, _ids("two", n + 150))


def test_uidvalidity_change_rebaselines_without_re_enqueueing(lab, lab_root, tmp_path) -> None:
    folder, n = _folder(), 20
    messages = make_messages(n + 2, seed=16, tag="uv", max_bytes=32 * 1024)
    fill_imap(lab, "sink", folder, messages[:n], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder])
    code, env, _ = run(root, "--enqueue")
    assert code == 0 and folder_result(env)["enqueued"] == n
    old = checkpoint(root, "sink", folder)

    delete_folder(lab, "sink", folder)
    time.sleep(1.1)  # Dovecot's UIDVALIDITY is a timestamp: a new second gives a new one
    fill_imap(lab, "sink", folder, messages, connections=1)  # the same 20, plus 2 new
    code, env, _ = run(root, "--enqueue")
    assert code == 0, env["summary"]
    result = folder_result(env)
    assert result["uidvalidity"] != old["uidvalidity"]
    assert result["rebaselined"] and "UIDVALIDITY changed" in result["rebaselined"]
    assert (result["new"], result["enqueued"], result["duplicates"]) == (n + 2, 2, n)
    assert_exactly_once(root, _ids("uv", n + 2))
    cp = checkpoint(root, "sink", folder)
    assert cp["uidvalidity"] == result["uidvalidity"] and cp["rebaselined_at"]
    assert len(items(root)["queued"]) == n + 2
