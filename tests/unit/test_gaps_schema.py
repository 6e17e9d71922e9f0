"""The gap schema facts, id allocation and the lock's reclaim rules, without the CLI."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spine_comms.core.yaml_roundtrip import RoundTripYaml
from spine_comms.gaps import registry, schema
from spine_comms.gaps.drafts import GapDraft
from spine_comms.gaps.lock import GitLock, LockHeld

SAMPLE = Path("/work/shared/reference/spine-samples/operational.gaps.excerpt.yaml")
GOOD = {"id": "GAP-OP-1", "discovered_by": "audit", "discovered_at": "2026-03-06", "type": "runtime-bug",
        "description": "x\n", "severity": "low", "status": "open"}  # fmt: skip


def test_the_title_is_the_first_non_blank_line_cut_at_110():
    assert schema.derive_title("\n\n  First line  \nsecond") == "First line"
    assert schema.derive_title("a" * 200) == "a" * 110
    assert schema.title_of({"title": "Own title", "description": "other"}) == "Own title"
    assert schema.title_of({"description": "Derived\nmore"}) == "Derived"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, []),
        ({"id": "GAP-1"}, [("id", "must look like GAP-OP-<number> (found 'GAP-1')")]),
        ({"colour": "red"}, [("colour", "unknown key (the gap schema allows only its listed fields)")]),
        ({"status": "accepted"}, [("status", "must be one of open, fixed, closed (found 'accepted')")]),
        ({"discovered_at": "6 March"}, [("discovered_at", "must be a YYYY-MM-DD string (found '6 March')")]),
        ({"parent_loop": "loop-x"}, [("parent_loop", "must match LOOP-.* (found 'loop-x')")]),
        ({"description": None}, [("description", "required")]),
        ({"severity": "high", "status": "fixed"}, [("regression_lock_id", "a high gap that is fixed needs a "
                                                    "regression lock id (not LEGACY-NO-REGRESSION-LOCK-*)")]),
        ({"severity": "critical", "status": "closed", "regression_lock_id": "D221"}, []),
    ],
)  # fmt: skip
def test_violations(change, expected):
    assert schema.violations({**GOOD, **change}) == expected


def test_legacy_locks_are_grandfathered_only_when_checking_the_file_as_it_is():
    legacy = {**GOOD, "severity": "high", "status": "fixed", "regression_lock_id": "LEGACY-NO-REGRESSION-LOCK-PRE-1"}
    assert schema.violations(legacy, grandfathered=True) == []
    assert [f for f, _ in schema.violations(legacy)] == ["regression_lock_id"]


def test_every_entry_of_the_spine_sample_conforms_as_it_is():
    doc = registry.open_gaps(SAMPLE)
    assert [schema.violations(e, grandfathered=True) for e in registry.entries(doc)] == [[]] * 19


def test_ids_continue_from_the_highest_and_an_explicit_id_moves_the_counter():
    doc = RoundTripYaml.from_text('version: 1\nupdated: "x"\ngaps:\n  - id: GAP-OP-7\n  - id: junk\n', "t")
    assert registry.next_number(doc) == 8
    moment = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    drafts = [GapDraft("t", 1, "GAP-OP-20", "runtime-bug", "low", "explicit", "audit", None, "LOOP-A-1"),
              GapDraft("t", 2, "auto", "runtime-bug", "low", "next one", "audit", None, "LOOP-A-1")]  # fmt: skip
    filed = registry.file_gaps(doc, drafts, moment).filed
    assert [e["id"] for e in filed] == ["GAP-OP-20", "GAP-OP-21"]
    assert doc.data["updated"] == "2026-03-06T12:00:00Z"


def test_a_lock_without_pid_is_reclaimed_only_after_300_seconds(tmp_path):
    lock = tmp_path / "mailroom/state/locks/git.gaps.lock"
    lock.mkdir(parents=True)  # an owner that died between mkdir and writing its pid
    now = time.time()
    with pytest.raises(LockHeld, match="no pid yet"):
        GitLock(tmp_path, "gaps", 0, clock=lambda: now).__enter__()
    assert lock.is_dir()
    with GitLock(tmp_path, "gaps", 0, clock=lambda: now + 301) as held:
        assert held.reclaimed == ["no pid"]
        assert (lock / "pid").read_text() == f"{os.getpid()}\n"
    assert not lock.exists()
