"""BatchWriter with files made ahead of need: where they come from, where they go, what is left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from spine_comms.inbox import staging
from spine_comms.inbox.staging import AHEAD_PREFIX, NEW, REPLACE, BatchWriter, sweep


def _leftovers(*homes: Path) -> list[str]:
    return sorted(p.name for home in homes if home.exists() for p in home.iterdir())


def _made_ahead(home: Path, timeout: float = 10.0) -> None:
    """Wait until the thread has made a first file in `home` (it runs beside the test)."""
    deadline = time.monotonic() + timeout
    while not _leftovers(home):
        assert time.monotonic() < deadline, f"nothing made ahead in {home}"
        time.sleep(0.005)


def test_files_made_ahead_are_written_placed_and_the_rest_removed_on_close(tmp_path) -> None:
    state, inbox = tmp_path / "state", tmp_path / "inbox"
    homes = [state / ".ahead", inbox / ".ahead"]
    writer = BatchWriter(homes=homes)
    writer.expect(120)
    _made_ahead(homes[0])
    finals = [state / "messages" / f"{i:02x}" / f"m{i}.eml" for i in range(120)]
    items = [inbox / "queued" / f"S1__x__R{i}.md" for i in range(40)]
    staged = [writer.stage(path, f"message {i}".encode()) for i, path in enumerate(finals)]
    staged += [writer.stage(path, f"item {i}", 0o600, NEW) for i, path in enumerate(items)]
    from_ahead = [s for s in staged if s.temp.name.startswith(AHEAD_PREFIX)]
    assert from_ahead, "no staged file used a file made ahead"
    for s in from_ahead:  # each from the home whose parent holds its final name
        assert s.final.is_relative_to(s.temp.parent.parent)
    writer.sync()
    for s in staged:
        writer.place(s)
    writer.sync()
    assert [p.read_bytes() for p in finals] == [f"message {i}".encode() for i in range(120)]
    assert [p.read_text() for p in items] == [f"item {i}" for i in range(40)]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in finals + items)
    writer.close()
    assert _leftovers(*homes) == [] and not any(home.exists() for home in homes)


def test_a_final_name_outside_every_home_gets_its_temporary_beside_it(tmp_path) -> None:
    writer = BatchWriter(homes=[tmp_path / "state" / ".ahead"])
    elsewhere = tmp_path / "other" / "x.json"
    staged = writer.stage(elsewhere, b"{}", 0o600, REPLACE)
    assert staged.temp.parent == elsewhere.parent and not staged.temp.name.startswith(AHEAD_PREFIX)
    writer.sync()
    writer.place(staged)
    assert elsewhere.read_bytes() == b"{}"
    writer.close()


def test_the_deepest_home_serves_a_nested_tree(tmp_path) -> None:
    outer, inner = tmp_path / ".ahead", tmp_path / "state" / ".ahead"
    writer = BatchWriter(homes=[outer, inner])
    writer.expect(100)
    for sub in ("state/messages", "inbox/queued"):
        (tmp_path / sub).mkdir(parents=True)
    assert writer._home_for(tmp_path / "state" / "messages") == inner
    assert writer._home_for(tmp_path / "inbox" / "queued") == outer
    writer.close()


def test_a_discarded_batch_leaves_nothing_in_the_homes(tmp_path) -> None:
    home = tmp_path / ".ahead"
    writer = BatchWriter(homes=[home])
    writer.expect(30)
    for i in range(30):
        writer.stage(tmp_path / "d" / f"f{i}", b"x")
    writer.reset()  # the batch stopped before its commit
    writer.close()
    assert _leftovers(home) == [] and not (tmp_path / "d" / "f0").exists()


def test_sweep_removes_only_what_a_dead_process_made_ahead(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    for name in (f"{AHEAD_PREFIX}{dead_pid}-abc-1.tmp", f"{AHEAD_PREFIX}{os.getpid()}-abc-2.tmp", ".other.tmp", "x.md"):
        (tmp_path / name).write_bytes(b"")
    sweep(tmp_path)
    assert _leftovers(tmp_path) == sorted([f"{AHEAD_PREFIX}{os.getpid()}-abc-2.tmp", ".other.tmp", "x.md"])


def test_a_new_writer_sweeps_what_a_killed_one_left(tmp_path) -> None:
    home = tmp_path / ".ahead"
    code = (
        "import os, sys, time; sys.path.insert(0, sys.argv[2]);"
        "from pathlib import Path; from spine_comms.inbox.staging import BatchWriter;"
        "w = BatchWriter(homes=[Path(sys.argv[1])]); w.expect(100); w.stage(Path(sys.argv[1]).parent / 'f', b'x');"
        "time.sleep(0.3); os._exit(9)"  # no close(): as if killed
    )
    repo = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", code, str(home), repo], check=False, timeout=60)
    assert _leftovers(home), "the killed writer made nothing ahead"
    BatchWriter(homes=[home]).close()
    assert _leftovers(home) == [] and not home.exists()


def test_a_few_messages_get_no_thread_and_a_backlog_no_more_files_than_it_needs(tmp_path) -> None:
    home = tmp_path / ".ahead"
    few = BatchWriter(homes=[home])
    few.expect(3)  # a watch cycle
    staged = few.stage(tmp_path / "d" / "f", b"x")
    assert not home.exists() and not staged.temp.name.startswith(AHEAD_PREFIX)
    few.close()
    backlog = BatchWriter(homes=[home])
    backlog.expect(40)
    _made_ahead(home)
    for i in range(200):  # more than the 2 x 40 it was told of
        backlog.stage(tmp_path / "d" / f"g{i}", b"x")
    made = len(_leftovers(home))  # taken (staged, still in the home until placed) and ready
    assert any(s.temp.name.startswith(AHEAD_PREFIX) for s in backlog.staged) and made <= 80
    backlog.close()
    assert not home.exists()


def test_an_item_never_replaces_one_already_there_with_or_without_renameat2(tmp_path, monkeypatch) -> None:
    for variant in ("renameat2", "link and unlink"):
        if variant != "renameat2":
            monkeypatch.setattr(staging, "_RENAMEAT2", None)
        where = tmp_path / variant.replace(" ", "-")
        writer = BatchWriter(homes=[where / ".ahead"])
        (where / "queued").mkdir(parents=True)
        (where / "queued" / "old.md").write_text("an earlier run's item")
        kept = writer.stage(where / "queued" / "old.md", "a rerun's copy", 0o600, NEW)
        fresh = writer.stage(where / "queued" / "new.md", "a new item", 0o600, NEW)
        writer.sync()
        writer.place(kept)
        writer.place(fresh)
        assert kept.existed and not fresh.existed
        assert (where / "queued" / "old.md").read_text() == "an earlier run's item"
        assert (where / "queued" / "new.md").read_text() == "a new item"
        assert not kept.temp.exists() and not fresh.temp.exists()
        writer.close()


def test_a_new_writer_sweeps_the_temporaries_a_killed_one_left_beside_their_final_names(tmp_path) -> None:
    """kill -9 between stage and place: hidden temporaries in every directory the writer staged into (a lane,
    the message store), none in a home. The next writer's journal sweep removes exactly those."""
    journal, lane, store = tmp_path / "state/.writers", tmp_path / "inbox/queued", tmp_path / "state/messages/ab"
    code = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[1]);"
        "from pathlib import Path; from spine_comms.inbox.staging import BatchWriter, NEW;"
        "base = Path(sys.argv[2]); w = BatchWriter(journal=base / 'state/.writers');"
        "[w.stage(base / d / f'f{i}', b'x' * 100, how=NEW)"
        " for d in ('inbox/queued', 'state/messages/ab') for i in range(3)];"
        "w.sync(); os.kill(os.getpid(), signal.SIGKILL)"
    )  # fmt: skip
    repo = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", code, repo, str(tmp_path)], check=False, timeout=60)
    left = _leftovers(lane) + _leftovers(store)
    assert len(left) == 6 and all(n.startswith(".") and n.endswith(".tmp") for n in left), left
    assert len(list(journal.iterdir())) == 1  # the killed writer's list of directories
    (lane / ".someone-elses.tmp").write_bytes(b"")  # not the dead writer's: stays
    (lane / "S1__x__R1.md").write_bytes(b"item")
    BatchWriter(journal=journal).close()
    assert _leftovers(lane) == [".someone-elses.tmp", "S1__x__R1.md"] and _leftovers(store) == []
    assert not journal.exists() or list(journal.iterdir()) == []


def test_a_writer_that_closes_leaves_no_journal_and_one_that_writes_nothing_makes_none(tmp_path) -> None:
    journal = tmp_path / ".writers"
    BatchWriter(journal=journal).close()
    assert not journal.exists()  # a poll with nothing new makes no file
    writer = BatchWriter(journal=journal)
    writer.place(writer.stage(tmp_path / "d/f", b"x"))
    assert len(list(journal.iterdir())) == 1
    writer.close()
    assert not journal.exists() and (tmp_path / "d/f").read_bytes() == b"x"


def test_write_atomic_temporaries_of_a_dead_writer_are_swept_and_a_live_ones_kept(tmp_path) -> None:
    from spine_comms.core.atomic import sweep_temporaries, write_atomic, writer_pid

    code = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
        "from spine_comms.core import atomic;"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL);"  # killed between fsync and rename
        "atomic.write_atomic(Path(sys.argv[2]) / 'checkpoint.json', 'x')"
    )
    repo = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", code, repo, str(tmp_path)], check=False, timeout=60)
    (dead,) = _leftovers(tmp_path)
    assert dead.startswith(".checkpoint.json.") and writer_pid(dead) is not None
    live = tmp_path / f".other.json.{os.getpid()}-abc.tmp"
    live.write_bytes(b"")
    assert sweep_temporaries(tmp_path) == 1 and _leftovers(tmp_path) == [live.name]
    write_atomic(tmp_path / "x.json", "y")
    assert sorted(_leftovers(tmp_path)) == sorted([live.name, "x.json"])
