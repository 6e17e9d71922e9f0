"""gaps.file, gaps.list and gaps.close through the CLI on a copy of the spine's own gaps file.

No server is involved: the registry is a file, the lock a directory, --commit a real git.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cli_process import SPINE_COMMS, run_capability
from tests.receipt_audit import validate_receipt

SAMPLE = Path("/work/shared/reference/spine-samples/operational.gaps.excerpt.yaml")
LOOP = "LOOP-COMMS-AGENTIC-LAYER-20260223"


def run(root: Path, capability: str, *args: str, env: dict | None = None, json_out: bool = True):
    done = run_capability(root, capability, *args, env=env, json_out=json_out)
    return done.code, done.envelope if json_out else done.stdout, done.stderr


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "bindings").mkdir(parents=True)
    shutil.copy(SAMPLE, base / "bindings/operational.gaps.yaml")
    return base


def gaps_file(root: Path) -> Path:
    return root / "bindings/operational.gaps.yaml"


def file_args(description: str = "CalDAV endpoint not in the stack contract", **extra: str) -> list[str]:
    args = {"--type": "missing-entry", "--severity": "medium", "--description": description,
            "--discovered-by": "contract.endpoints.sync", "--loop-id": LOOP, **extra}  # fmt: skip
    return [part for flag, value in args.items() for part in (flag, value)]


def diff_blocks(old: str, new: str):
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [(tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def test_filing_on_the_spine_sample_changes_only_the_appended_entry_and_the_stamp(root):
    before = gaps_file(root).read_text()
    doc = {"--doc": "ops/bindings/communications.stack.contract.yaml"}
    code, env, _ = run(
        root, "gaps.file", *file_args("CalDAV endpoint not in the stack contract.\nSecond line.\n", **doc)
    )
    assert code == 0 and env["status"] == "ok", env
    after = gaps_file(root).read_text()
    blocks = diff_blocks(before, after)
    assert [tag for tag, _, _ in blocks] == ["replace", "insert"]
    assert blocks[0][1] == ['updated: "2026-03-05T06:09:07Z"\n'] and blocks[0][2][0].startswith('updated: "20')
    inserted = "".join(blocks[1][2])
    assert after.endswith(inserted) and inserted.startswith("  - id: GAP-OP-849\n")  # max existing (848) + 1
    entry = yaml.safe_load(after)["gaps"][-1]
    assert entry == {
        "id": "GAP-OP-849", "title": "CalDAV endpoint not in the stack contract.", "discovered_by":
        "contract.endpoints.sync", "discovered_at": entry["discovered_at"], "type": "missing-entry",
        "classification": "missing-entry", "doc": "ops/bindings/communications.stack.contract.yaml",
        "description": "CalDAV endpoint not in the stack contract.\nSecond line.\n", "severity": "medium",
        "status": "open", "parent_loop": LOOP, "notes": entry["notes"],
    }  # fmt: skip
    assert entry["notes"].startswith("Filed via gaps.file at 20") and len(entry["discovered_at"]) == 10
    assert env["data"]["filed"][0]["id"] == "GAP-OP-849" and env["data"]["written"] is True
    assert env["data"]["commit"] is None
    validate_receipt(Path(env["receipt"]) / "receipt.json")


def test_an_open_gap_with_the_same_title_is_not_filed_twice(root):
    assert run(root, "gaps.file", *file_args("Same title\nfirst body"))[0] == 0
    before = gaps_file(root).read_bytes()
    code, env, _ = run(root, "gaps.file", *file_args("Same title\nanother body"))
    assert code == 0 and env["data"]["filed"] == []
    assert env["data"]["skipped"] == [{"title": "Same title", "existing_id": "GAP-OP-849"}]
    assert gaps_file(root).read_bytes() == before  # not even the stamp moves
    code, text, _ = run(root, "gaps.file", *file_args("Same title\nthird"), json_out=False)
    assert "SKIPPED_DUPLICATE: GAP-OP-849" in text


def test_bad_input_gives_one_line_per_problem_exit_2_and_writes_nothing(root):
    before = gaps_file(root).read_bytes()
    code, text, err = run(root, "gaps.file", "--type", "typo", "--severity", "huge", "--discovered-by", "x",
                          "--id", "GAP-1", json_out=False)  # fmt: skip
    assert code == 2, (text, err)
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert lines == [
        "error: gaps.file: --id: must be auto or GAP-OP-<number> (found 'GAP-1')",
        "error: gaps.file: --type: required, one of stale-ssot, missing-entry, agent-behavior, unclear-doc, "
        "duplicate-truth, runtime-bug (found 'typo')",
        "error: gaps.file: --severity: required, one of low, medium, high, critical (found 'huge')",
        "error: gaps.file: --description: required: --description TEXT or --description-file PATH",
        "error: gaps.file: --loop-id: Policy requires --loop-id (no-new-unlinked-gap)",
    ]
    assert "Traceback" not in text + err
    code, env, _ = run(root, "gaps.file", *file_args(**{"--id": "GAP-OP-842"}))
    assert code == 2 and "GAP-OP-842 already exists" in env["error"]["problems"][0]
    assert gaps_file(root).read_bytes() == before


def test_the_loop_is_inferred_from_a_loop_discoverer_and_aliases_warn(root):
    code, env, _ = run(root, "gaps.file", "--type", "runtime-bug", "--severity", "low", "--description", "inferred",
                       "--discovered-by", LOOP)  # fmt: skip
    assert code == 0 and env["data"]["filed"][0]["parent_loop"] == LOOP
    code, env, err = run(root, "gaps.file", *file_args("via alias")[:-2], "--parent-loop", "LOOP-OTHER-1")
    assert code == 0 and env["status"] == "warn" and env["data"]["filed"][0]["parent_loop"] == "LOOP-OTHER-1"
    assert "--parent-loop is an alias of --loop-id" in err


def test_a_batch_files_each_new_gap_and_names_bad_items_by_line(root, tmp_path):
    (tmp_path / "long.txt").write_text("From a file\nwith detail\n")
    batch = tmp_path / "batch.yaml"
    batch.write_text(yaml.safe_dump({"gaps": [
        {"type": "runtime-bug", "severity": "low", "description": "Batch one"},
        {"type": "stale-ssot", "severity": "high", "description_file": "long.txt", "parent_loop": "LOOP-B-2"},
        {"type": "runtime-bug", "severity": "low", "description": "Batch one"},  # same title: skipped
    ]}, sort_keys=False))  # fmt: skip
    before = gaps_file(root).read_text()
    code, env, _ = run(root, "gaps.file", "--batch", str(batch), "--discovered-by", "audit", "--loop-id", LOOP)
    assert code == 0, env
    assert [(e["id"], e["parent_loop"]) for e in env["data"]["filed"]] == [("GAP-OP-849", LOOP),
                                                                          ("GAP-OP-850", "LOOP-B-2")]  # fmt: skip
    assert env["data"]["skipped"] == [{"title": "Batch one", "existing_id": "GAP-OP-849"}]
    assert yaml.safe_load(gaps_file(root).read_text())["gaps"][-1]["description"] == "From a file\nwith detail\n"
    assert [tag for tag, _, _ in diff_blocks(before, gaps_file(root).read_text())] == ["replace", "insert"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("- type: runtime-bug\n  severity: low\n  description: ok\n- type: nope\n  severity: low\n"
                   "  description: x\n  colour: red\n")  # fmt: skip
    snapshot = gaps_file(root).read_bytes()
    code, env, _ = run(root, "gaps.file", "--batch", str(bad), "--discovered-by", "audit", "--loop-id", LOOP)
    assert code == 2
    assert env["error"]["problems"] == [
        f"{bad}:7: gaps[1].colour: unknown key (allowed: description, description_file, discovered_by, doc, id, "
        "loop_id, parent_loop, severity, type)",
        f"{bad}:4: gaps[1].type: required, one of stale-ssot, missing-entry, agent-behavior, unclear-doc, "
        "duplicate-truth, runtime-bug (found 'nope')",
    ]
    assert gaps_file(root).read_bytes() == snapshot


def test_two_concurrent_writers_both_land_with_distinct_ids(root):
    commands = [[SPINE_COMMS, "gaps.file", "--root", str(root), "--json", *file_args(f"Concurrent gap {i}")]
                for i in range(4)]  # fmt: skip
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    ids = sorted(json.loads(out)["data"]["filed"][0]["id"] for out, _ in outs)
    assert ids == ["GAP-OP-849", "GAP-OP-850", "GAP-OP-851", "GAP-OP-852"]
    gaps = yaml.safe_load(gaps_file(root).read_text())["gaps"]
    assert sorted(g["title"] for g in gaps[-4:]) == [f"Concurrent gap {i}" for i in range(4)]
    assert not (root / "mailroom/state/locks/git.gaps.lock").exists()


def test_a_held_lock_makes_the_writer_wait_then_give_up_and_a_dead_owner_s_lock_is_taken_over(root):
    lock = root / "mailroom/state/locks/git.gaps.lock"
    lock.mkdir(parents=True)
    (lock / "pid").write_text(f"{os.getpid()}\n")  # this test process: alive
    (lock / "created_at_epoch").write_text(f"{int(time.time())}\n")
    before = gaps_file(root).read_bytes()
    code, env, _ = run(root, "gaps.file", *file_args(), "--wait-seconds", "0.3")
    assert code == 3 and env["error"]["reference"] == "lock-held" and f"pid {os.getpid()}" in env["error"]["message"]
    assert gaps_file(root).read_bytes() == before

    command = [SPINE_COMMS, "gaps.file", "--root", str(root), "--json", *file_args("waited"), "--wait-seconds", "60"]
    waiting = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "waiting up to 60 s for the gaps lock (pid" in waiting.stderr.readline()  # it is blocked on the lock
    shutil.rmtree(lock)  # the other writer is done
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert json.loads(out)["data"]["filed"][0]["id"] == "GAP-OP-849"

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.mkdir()
    (lock / "pid").write_text(f"{dead.pid}\n")
    code, env, _ = run(root, "gaps.file", *file_args("after a crash"), "--wait-seconds", "0")
    assert code == 0 and env["data"]["filed"][0]["id"] == "GAP-OP-850" and not lock.exists()


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env).stdout


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


def test_commit_commits_the_gaps_file_alone_with_the_spine_s_trailers(root):
    git(root, "init", "-q")
    (root / "other.txt").write_text("x\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "seed")
    (root / "other.txt").write_text("staged, not ours\n")
    git(root, "add", "other.txt")
    env = {**GIT_ENV, "SPINE_CAP_RUN_KEY": ""}
    code, out, _ = run(root, "gaps.file", *file_args(), "--commit", env=env)
    assert code == 0, out
    assert out["data"]["commit"] == git(root, "rev-parse", "HEAD").strip()
    message = git(root, "log", "-1", "--format=%B")
    assert message.startswith("gov(GAP-OP-849): register gap via gaps.file\n\nFiled IDs: GAP-OP-849\n")
    assert "Gap-Mutation: capability\nGap-Capability: gaps.file\nGap-Run-Key: manual\n" in message
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == ["bindings/operational.gaps.yaml"]
    assert git(root, "diff", "--cached", "--name-only").split() == ["other.txt"]  # still staged, untouched

    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-849", "--status", "fixed", "--fixed-in", "abc123",
                       "--commit", "--execute", "--yes", env=env)  # fmt: skip
    assert code == 0, out
    message = git(root, "log", "-1", "--format=%B")
    assert message.startswith("fix(GAP-OP-849): mark fixed via gaps.close\n")
    assert "Gap-Capability: gaps.close\n" in message and "Regression-Lock-ID: none\n" in message


def test_a_commit_refused_by_a_hook_puts_the_file_back(root):
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "seed")
    hook = root / ".git/hooks/pre-commit"
    hook.write_text("#!/bin/sh\necho 'commits on main are blocked' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = gaps_file(root).read_bytes()
    code, out, _ = run(root, "gaps.file", *file_args(), "--commit", env=GIT_ENV)
    assert code == 1 and out["status"] == "fail" and out["data"]["written"] is False
    assert "commits on main are blocked" in out["checks"][-1]["detail"]
    assert gaps_file(root).read_bytes() == before and git(root, "status", "--porcelain", "--", "bindings") == ""


def test_commit_outside_git_is_refused_before_anything_is_written(root):
    before = gaps_file(root).read_bytes()
    code, out, _ = run(root, "gaps.file", *file_args(), "--commit", env={"GIT_CEILING_DIRECTORIES": str(root.parent)})
    assert code == 2 and "not in a git work tree" in out["error"]["message"]
    assert gaps_file(root).read_bytes() == before


def test_close_needs_approval_a_real_regression_lock_for_high_and_changes_only_that_entry(root):
    run(root, "gaps.file", *file_args("A medium gap"))
    run(root, "gaps.file", *file_args("A high gap", **{"--severity": "high"}))
    before = gaps_file(root).read_text()
    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-849", "--status", "fixed", "--execute")
    assert code == 2 and "needs approval" in out["error"]["message"] and gaps_file(root).read_text() == before
    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-849", "--status", "fixed", "--yes")
    assert code == 0 and out["dry_run"] is True and gaps_file(root).read_text() == before  # never on a default

    for lock_args in ([], ["--regression-lock-id", "LEGACY-NO-REGRESSION-LOCK-PRE-20260301"]):
        code, out, _ = run(
            root, "gaps.close", "--id", "GAP-OP-850", "--status", "closed", "--execute", "--yes", *lock_args
        )
        assert code == 2 and "--regression-lock-id is required" in out["error"]["problems"][0]
        assert gaps_file(root).read_text() == before

    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-850", "--status", "fixed", "--fixed-in", "commit abc",
                       "--regression-lock-id", "D221", "--notes", "fixed by the lab\nand proven", "--execute",
                       "--yes")  # fmt: skip
    assert code == 0, out
    after = gaps_file(root).read_text()
    blocks = diff_blocks(before, after)
    assert blocks[0][1][0].startswith("updated: ")
    changed = [line for _, old, new in blocks[1:] for line in old + new]
    assert all(line.startswith("    ") for line in changed)  # inside the closed entry only
    entry = yaml.safe_load(after)["gaps"][-1]
    assert entry["id"] == "GAP-OP-850" and entry["status"] == "fixed" and entry["regression_lock_id"] == "D221"
    assert entry["fixed_in"] == "commit abc" and entry["notes"] == "fixed by the lab\nand proven"
    assert len(entry["fixed_at"]) == 10 and yaml.safe_load(after)["gaps"][-2]["status"] == "open"

    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-850", "--status", "closed", "--execute", "--yes")
    assert code == 0 and out["data"]["skipped"] == [{"id": "GAP-OP-850", "status": "fixed"}]
    assert gaps_file(root).read_text() == after
    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-9999", "--status", "closed", "--execute", "--yes")
    assert code == 2 and "GAP-OP-9999 is not in" in out["error"]["problems"][0]


def test_close_dry_run_shows_the_diff_and_writes_nothing(root):
    run(root, "gaps.file", *file_args("Dry run gap"))
    before = gaps_file(root).read_bytes()
    code, out, _ = run(root, "gaps.close", "--id", "GAP-OP-849", "--status", "closed", "--dry-run")
    assert code == 0 and out["data"]["written"] is False
    assert "-    status: open" in out["data"]["diff"] and "+    status: closed" in out["data"]["diff"]
    assert gaps_file(root).read_bytes() == before


def test_list_filters_and_checks_the_schema(root):
    run(root, "gaps.file", *file_args("Open one"))
    run(root, "gaps.file", *file_args("Open two", **{"--severity": "low", "--type": "runtime-bug",
                                                     "--loop-id": "LOOP-OTHER-2"}))  # fmt: skip
    code, out, _ = run(root, "gaps.list")
    assert code == 0 and [g["id"] for g in out["data"]["gaps"]] == ["GAP-OP-849", "GAP-OP-850"]
    assert out["data"]["counts"] == {"fixed": 19, "open": 2} and out["status"] == "ok"
    code, out, _ = run(root, "gaps.list", "--all", "--severity", "high", "--type", "runtime-bug")
    assert [g["id"] for g in out["data"]["gaps"]] == ["GAP-OP-006", "GAP-OP-008", "GAP-OP-843", "GAP-OP-845"]
    code, out, _ = run(root, "gaps.list", "--loop", "LOOP-OTHER-2")
    assert [g["id"] for g in out["data"]["gaps"]] == ["GAP-OP-850"]
    code, text, _ = run(root, "gaps.list", "--status", "fixed", "--loop", LOOP, json_out=False)
    assert "GAP-OP-842  fixed   medium    missing-entry    LOOP-COMMS-AGENTIC-LAYER-20260223" in text
    code, out, _ = run(root, "gaps.list", "--status", "wontfix")
    assert code == 2 and "--status 'wontfix'" in out["error"]["message"]

    text = gaps_file(root).read_text().replace("    notes: \"Filed via gaps.file at 2026-02-24T05:19:46Z\"\n",
                                               "    colour: red\n")  # fmt: skip
    gaps_file(root).write_text(text)
    code, out, _ = run(root, "gaps.list", "--all")
    assert code == 0 and out["status"] == "warn"
    assert out["data"]["schema_violations"] == ["GAP-OP-848: colour: unknown key (the gap schema allows only its "
                                                "listed fields)"]  # fmt: skip


def test_a_spine_checkout_uses_ops_bindings(tmp_path):
    spine = tmp_path / "spine"
    (spine / "ops/bindings").mkdir(parents=True)
    shutil.copy(SAMPLE, spine / "ops/bindings/operational.gaps.yaml")
    code, out, _ = run(spine, "gaps.file", *file_args())
    assert code == 0 and out["data"]["file"] == str(spine / "ops/bindings/operational.gaps.yaml")


def test_a_root_without_a_gaps_file_gets_a_new_one(tmp_path):
    fresh = tmp_path / "fresh"
    (fresh / "bindings").mkdir(parents=True)
    code, out, _ = run(fresh, "gaps.file", *file_args())
    assert code == 0 and out["data"]["filed"][0]["id"] == "GAP-OP-1"
    data = yaml.safe_load((fresh / "bindings/operational.gaps.yaml").read_text())
    assert data["version"] == 1 and [g["id"] for g in data["gaps"]] == ["GAP-OP-1"]
    code, out, _ = run(fresh, "gaps.file", *file_args("second"), "--dry-run")
    assert code == 0 and any(line.startswith("+  - id: GAP-OP-2") for line in out["data"]["diff"])
    assert len(yaml.safe_load((fresh / "bindings/operational.gaps.yaml").read_text())["gaps"]) == 1
