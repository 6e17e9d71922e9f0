"""receipts.prune against real receipt directories written by the runner, aged by their run key."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest

from spine_comms.core.options import GlobalOptions
from spine_comms.core.result import Result
from spine_comms.core.runner import execute
from spine_comms.operations.retention import disk_usage


def make_receipt(root: Path, capability: str, age_days: float, tag: str, padding: int = 0) -> Path:
    """A receipt the runner really wrote under a run key `age_days` old (local time, like cap.sh): sealed and
    chained as any other, so the receipt audit every test ends with holds it to that."""
    out = io.StringIO()
    when = datetime.now().astimezone() - timedelta(days=age_days)
    aged = f"CAP-{when:%Y%m%d-%H%M%S}__{capability}__R{tag}"
    with mock.patch("spine_comms.core.receipts.new_run_key", lambda cap, now: aged):
        code = execute(capability=capability, safety="read-only", approval="auto", function=lambda ctx: Result(),
                       kwargs={}, options=GlobalOptions(root=str(root), json=True),
                       argv=["spine-comms", capability], env={}, stdout=out, stderr=io.StringIO())  # fmt: skip
    assert code == 0
    target = Path(json.loads(out.getvalue())["receipt"])
    assert target.name == f"R{aged}"
    if padding:
        (target / "padding.bin").write_bytes(b"x" * padding)
    return target


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    return {
        "root": root,
        "stack_old": make_receipt(root, "communications.stack.status", 30, "old1", 5000),
        "stack_older": make_receipt(root, "communications.stack.status", 40, "old2", 7000),
        "stack_new": make_receipt(root, "communications.stack.status", 1, "new1"),
        "dns_only_old": make_receipt(root, "dns.mail.status", 100, "lone"),  # the only dns receipt: kept
        "sieve_old": make_receipt(root, "sieve.status", 15, "sv1"),
        "sieve_latest_old": make_receipt(root, "sieve.status", 14.5, "sv2"),
    }


def sessions(root: Path) -> set[str]:
    return {p.name for p in (root / "receipts" / "sessions").iterdir()
            if "receipts.prune" not in p.name and not p.name.startswith(".")}  # fmt: skip


def test_dry_run_lists_what_would_go_and_removes_nothing(cli, tree):
    root = tree["root"]
    before = sessions(root)
    done = cli("receipts.prune", "--root", str(root), "--json")
    assert done.exit_code == 0, done.stderr
    data = done.json()["data"]
    assert data["dry_run"] is True
    assert sessions(root) == before
    expired = {Path(e["directory"]).name for e in data["expired"]}
    assert expired == {tree[k].name for k in ("stack_old", "stack_older", "sieve_old")}
    latest_kept = {Path(e["directory"]).name for e in data["kept_latest"]}
    assert latest_kept == {tree["dns_only_old"].name, tree["sieve_latest_old"].name}
    sizes = sum(disk_usage(tree[k])[0] for k in ("stack_old", "stack_older", "sieve_old"))
    assert data["would_free_bytes"] == sizes and data["bytes_freed"] == 0 and data["removed"] == 0


def test_execute_needs_approval(cli, tree):
    root = tree["root"]
    before = sessions(root)
    done = cli("receipts.prune", "--root", str(root), "--execute")
    assert done.exit_code == 2
    assert "needs approval" in done.stderr + done.stdout
    assert sessions(root) == before


def test_execute_removes_expired_but_never_a_capabilitys_latest(cli, tree):
    root = tree["root"]
    expected_bytes = sum(disk_usage(tree[k])[0] for k in ("stack_old", "stack_older", "sieve_old"))
    done = cli("receipts.prune", "--root", str(root), "--execute", "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    data = done.json()["data"]
    assert data["removed"] == 3 and data["bytes_freed"] == expected_bytes and expected_bytes > 12000
    left = sessions(root)
    assert left == {tree[k].name for k in ("stack_new", "dns_only_old", "sieve_latest_old")}
    # the prune's own receipt is written, and a second run finds nothing more to remove
    again = cli("receipts.prune", "--root", str(root), "--execute", "--yes", "--json")
    assert again.json()["data"]["removed"] == 0
    assert sessions(root) == left


def test_symlinks_are_never_followed_nor_removed(cli, tree, tmp_path):
    root = tree["root"]
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    old = datetime.now().astimezone() - timedelta(days=60)
    link = root / "receipts" / "sessions" / f"RCAP-{old:%Y%m%d-%H%M%S}__communications.stack.status__Rlink"
    link.symlink_to(outside, target_is_directory=True)
    (tree["stack_older"] / "escape").symlink_to(outside, target_is_directory=True)  # inside an expired receipt
    done = cli("receipts.prune", "--root", str(root), "--execute", "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    data = done.json()["data"]
    assert link.is_symlink() and (outside / "keep.txt").read_text() == "mine"
    assert not tree["stack_older"].exists()
    assert [s["reason"] for s in data["skipped"]] == ["symlink"]
    assert any(c["id"] == "receipts.prune.skipped" and c["status"] == "warn" for c in done.json()["checks"])


def test_a_receipts_directory_that_is_a_symlink_is_refused(cli, tmp_path):
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere" / "sessions"
    elsewhere.mkdir(parents=True)
    old = datetime.now().astimezone() - timedelta(days=60)
    victim = elsewhere / f"RCAP-{old:%Y%m%d-%H%M%S}__x.y__Rv"
    victim.mkdir()
    (victim / "receipt.md").write_text("Run ID")
    (root / "receipts").mkdir()
    (root / "receipts" / "sessions").symlink_to(elsewhere, target_is_directory=True)
    done = cli("receipts.prune", "--root", str(root), "--execute", "--yes")
    assert done.exit_code == 2
    assert victim.is_dir()


def spine_root(tmp_path: Path, policy: str) -> Path:
    root = tmp_path / "spine"
    (root / "ops" / "bindings").mkdir(parents=True)
    (root / "ops" / "bindings" / "evidence.retention.policy.yaml").write_text(policy)
    return root


def test_the_spines_policy_file_sets_the_retention(cli, tmp_path):
    root = spine_root(tmp_path, "version: 1\nretention_classes:\n  session_receipts:\n"
                                "    path_pattern: \"receipts/sessions/RCAP-*\"\n    retention_days: 3\n"
                                "    purge_eligible: true\n")  # fmt: skip
    four = make_receipt(root, "gaps.list", 4, "a")
    make_receipt(root, "gaps.list", 2, "b")
    done = cli("receipts.prune", "--root", str(root), "--json")
    data = done.json()["data"]
    assert data["policy"]["retention_days"] == 3 and data["policy"]["source"].endswith("evidence.retention.policy.yaml")
    assert [Path(e["directory"]).name for e in data["expired"]] == [four.name]
    assert done.json()["checks"][0]["detail"].startswith("receipts/sessions/RCAP-* kept 3 days")


def test_without_a_policy_the_spines_default_applies(cli, tree):
    data = cli("receipts.prune", "--root", str(tree["root"]), "--json").json()["data"]
    assert data["policy"] == {"pattern": "receipts/sessions/RCAP-*", "retention_days": 14, "source": "default",
                              "purge_eligible": True}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ("retention_classes:\n  session_receipts:\n    path_pattern: x\n    retention_days: no\n", "retention_days", 4),
        ('retention_classes:\n  session_receipts:\n    path_pattern: "../../RCAP-*"\n', "path_pattern", 3),
        ('retention_classes:\n  session_receipts:\n    path_pattern: "/tmp/RCAP-*"\n', "path_pattern", 3),
        ('retention_classes:\n  session_receipts:\n    path_pattern: "receipts/*/RCAP-*"\n', "path_pattern", 3),
        ("retention_classes:\n  session_receipts:\n    retention_days: 0\n", "retention_days", 3),
    ],
)
def test_a_bad_policy_is_exit_2_with_file_and_line(cli, tmp_path, body, field, line):
    root = spine_root(tmp_path, body)
    done = cli("receipts.prune", "--root", str(root))
    assert done.exit_code == 2
    assert f"evidence.retention.policy.yaml:{line}: {field}:" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_a_policy_that_forbids_purging_removes_nothing(cli, tmp_path):
    policy = 'retention_classes:\n  session_receipts:\n    path_pattern: "receipts/sessions/RCAP-*"\n'
    root = spine_root(tmp_path, policy + "    retention_days: 1\n    purge_eligible: false\n")
    old = make_receipt(root, "gaps.list", 10, "a")
    make_receipt(root, "gaps.list", 0.1, "b")
    done = cli("receipts.prune", "--root", str(root), "--execute", "--yes", "--json")
    assert old.is_dir()
    assert done.json()["status"] == "warn"
    assert done.json()["data"]["removed"] == 0
