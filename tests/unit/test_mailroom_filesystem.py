"""The filesystem mailroom against a real directory: names, no overwrite, no partial file ever seen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spine_comms.mailroom.filesystem import LANES, ItemExists, Mailroom, MailroomError, clean_slug


def test_names_follow_agent_enqueue(tmp_path):
    room = Mailroom(tmp_path / "inbox")
    item = room.enqueue("hello\n", slug="my slug!/../x", run_id="RCLIENT", session_id="S20260210-123456")
    assert item.path == tmp_path / "inbox/queued/S20260210-123456__myslugx__RCLIENT.md"
    assert item.run_id == "S20260210-123456__myslugx__RCLIENT" == item.path.stem
    assert (item.session_id, item.slug, item.lane, item.rid) == ("S20260210-123456", "myslugx", "queued", "RCLIENT")
    assert item.path.read_text() == "hello\n"
    assert item.path.stat().st_mode & 0o777 == 0o600


def test_defaults_are_utc_session_and_random_run_id(tmp_path):
    room = Mailroom(tmp_path)
    before = datetime.now(UTC).replace(microsecond=0)
    item = room.enqueue("x", slug="")
    stamp = datetime.strptime(item.session_id, "S%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)
    assert item.slug == "task" and item.rid.startswith("R") and len(item.rid) == 11
    assert len({room.enqueue("x", slug="t").rid for _ in range(200)}) == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [("run_id", "R/../../etc"), ("run_id", "R 1"), ("run_id", "a__b"), ("run_id", ".."), ("run_id", "R\n"),
     ("session_id", ".hidden"), ("session_id", "S/x"), ("session_id", "x" * 200), ("run_id", "é")],
)  # fmt: skip
def test_unsafe_run_and_session_ids_are_refused(tmp_path, field, value):
    with pytest.raises(MailroomError):
        Mailroom(tmp_path).enqueue("x", slug="t", **{field: value})
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_slug_cleaning():
    assert clean_slug("a b/c.d-e_f") == "abcd-e_f"
    assert clean_slug("../../") == "task"
    assert len(clean_slug("x" * 500)) == 64


def test_an_existing_item_is_never_overwritten(tmp_path):
    room = Mailroom(tmp_path)
    first = room.enqueue("first", slug="t", run_id="R1", session_id="S1")
    with pytest.raises(ItemExists) as raised:
        room.enqueue("second", slug="t", run_id="R1", session_id="S1")
    assert raised.value.existing == first.path and raised.value.lane == "queued"
    assert first.path.read_text() == "first"
    # The same run id from another session is the same run: refused too, wherever it now is.
    done = tmp_path / "done"
    done.mkdir()
    first.path.rename(done / first.path.name)
    with pytest.raises(ItemExists) as raised:
        room.enqueue("again", slug="other", run_id="R1", session_id="S2")
    assert raised.value.lane == "done"
    assert [p.name for p in (tmp_path / "queued").iterdir()] == []  # no temporary left behind either


def test_the_hard_link_refuses_a_name_that_appears_meanwhile(tmp_path, monkeypatch):
    """The cross-lane check is advisory; the link itself is what guarantees no overwrite."""
    room = Mailroom(tmp_path)
    (tmp_path / "queued").mkdir()
    (tmp_path / "queued/S1__t__R9.md").write_text("theirs")
    monkeypatch.setattr(room, "find", lambda run_id: None)  # a racing writer the check did not see
    with pytest.raises(ItemExists):
        room.enqueue("mine", slug="t", run_id="R9", session_id="S1")
    assert (tmp_path / "queued/S1__t__R9.md").read_text() == "theirs"
    assert sorted(p.name for p in (tmp_path / "queued").iterdir()) == ["S1__t__R9.md"]


def test_find_by_stem_or_run_id_across_lanes(tmp_path):
    room = Mailroom(tmp_path)
    item = room.enqueue("x", slug="t", run_id="R77", session_id="S5")
    assert room.find("R77") == ("queued", item.path)
    assert room.find(item.run_id) == ("queued", item.path)
    for lane in ("running", "done", "failed", "parked", "archived"):
        target = tmp_path / lane / item.path.name
        target.parent.mkdir(exist_ok=True)
        room.find("R77")[1].rename(target)
        assert room.find("R77") == (lane, target) and room.exists(item.run_id)
    txt = tmp_path / "queued/S6__t__R88.txt"
    txt.write_text("the watcher takes .txt too")
    assert room.find("R88") == ("queued", txt)
    assert room.find("R7") is None and room.find("77") is None and not room.exists("R404")
    assert room.find("../R77") is None


def test_status_counts_and_ages(tmp_path):
    room = Mailroom(tmp_path)
    now = datetime.now(UTC)
    old = room.enqueue("x", slug="t")
    room.enqueue("y", slug="t")
    stamp = (now - timedelta(minutes=30)).timestamp()
    os.utime(old.path, (stamp, stamp))
    (tmp_path / "queued/.S__t__R.abcd.tmp").write_text("half")
    (tmp_path / "queued/notes.json").write_text("{}")  # not an item: the watcher skips it
    status = room.status(now)
    assert list(status) == list(LANES)
    assert status["queued"]["count"] == 2 and status["queued"]["oldest"] == str(old.path)
    assert 1790 <= status["queued"]["oldest_age_seconds"] <= 1810
    assert status["queued"]["temporaries"] == 1
    assert status["done"] == {"count": 0, "oldest_age_seconds": None, "oldest": None, "temporaries": 0}


def test_a_reader_polling_the_lane_never_sees_a_partial_item(tmp_path):
    room = Mailroom(tmp_path)
    (tmp_path / "queued").mkdir()
    texts = [f"{i:04d}\n" + ("abcdefghij" * 20_000) + f"\nEND {i:04d}\n" for i in range(500)]
    expected = {t.split("\n", 1)[0]: t for t in texts}
    seen, bad, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set() or len(seen) < len(texts):
            for path in room.items("queued"):
                if path.name in seen:
                    continue
                data = path.read_text()
                if data != expected.get(data.split("\n", 1)[0]):
                    bad.append((path.name, len(data)))
                seen.add(path.name)
            if stop.is_set() and len(seen) >= len(texts):
                break

    thread = threading.Thread(target=reader)
    thread.start()
    for text in texts:
        room.enqueue(text, slug="big")
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert bad == [] and len(seen) == 500


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from spine_comms.mailroom.filesystem import Mailroom
    room = Mailroom(Path(sys.argv[1]))
    text = "x" * (8 * 1024 * 1024)
    i = 0
    while True:
        room.enqueue(text + f"END{i}", slug="kill", run_id=f"R{i}", session_id="S1")
        print(i, flush=True)
        i += 1
""")


def test_kill_9_mid_enqueue_leaves_no_partial_item(tmp_path):
    expected_size = 8 * 1024 * 1024 + 3
    interrupted = 0
    for trial in range(8):
        inbox = tmp_path / f"t{trial}"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(inbox)], stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parents[2])  # fmt: skip
        child.stdout.readline()  # at least one item is done, the next is being written
        time.sleep(0.005 * trial)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        room = Mailroom(inbox)
        items = room.items("queued")
        assert items, trial
        interrupted += bool(room.temporaries("queued"))  # killed inside a write: the case that matters
        for path in items:
            data = path.read_bytes()
            index = int(path.stem.rsplit("__R", 1)[1])
            assert len(data) == expected_size + len(str(index)) and data.endswith(f"END{index}".encode()), path
    assert interrupted >= 1  # otherwise no trial proved anything


def test_a_caller_with_its_own_index_may_skip_the_run_id_scan(tmp_path):
    room = Mailroom(tmp_path)
    first = room.enqueue("a", slug="t", run_id="R5", session_id="S1")
    second = room.enqueue("b", slug="t", run_id="R5", session_id="S2", check_run_id=False)
    assert first.path != second.path and first.path.read_text() == "a"
    with pytest.raises(ItemExists):  # the exact name is still never replaced
        room.enqueue("c", slug="t", run_id="R5", session_id="S2", check_run_id=False)


def test_an_enqueue_sweeps_the_temporaries_killed_writers_left_in_its_lane(tmp_path):
    from spine_comms.mailroom.filesystem import Mailroom

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    room = Mailroom(tmp_path / "inbox")
    lane = room.lane_dir("queued")
    lane.mkdir(parents=True)
    (lane / f".S1__t__R1.{dead}-abcd1234.tmp").write_bytes(b"half")
    (lane / ".not-ours.tmp").write_bytes(b"")
    assert len(room.temporaries("queued")) == 2
    room.enqueue("hello", slug="t")
    assert [p.name for p in room.temporaries("queued")] == [".not-ours.tmp"]
