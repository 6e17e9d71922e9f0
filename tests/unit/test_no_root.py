"""A command run where no root is configured refuses (exit 2) and leaves the directory as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spine_comms.core.errors import UsageError
from spine_comms.core.root import find_root

SCRIPT = Path(sys.executable).parent / "spine-comms"


def run_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    clean.update(env or {})
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ("communications.stack.status",),  # fails on the missing stack contract
        ("communications.inbox.poll", "--json"),
        ("contracts.check",),
        ("receipts", "list"),
    ],
)
def test_an_empty_directory_is_refused_and_left_empty(tmp_path: Path, args):
    done = run_in(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert "not a spine-comms root" in done.stderr
    if args[0] != "receipts":  # the receipts group prints the message alone
        assert "spine-comms init" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_stray_file_does_not_make_a_root(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("x")
    done = run_in(tmp_path, "contracts.check")
    assert done.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("marker", ["bindings", "capabilities", "ops/bindings"])
def test_a_directory_with_a_root_marker_is_a_root(tmp_path: Path, marker: str):
    (tmp_path / marker).mkdir(parents=True)
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        root = find_root(None, {})
    finally:
        os.chdir(old)
    assert root.path == tmp_path.resolve()
    assert root.layout == ("spine" if marker.startswith("ops") else "project")


def test_a_root_named_on_purpose_is_taken_as_it_is(tmp_path: Path):
    # --root or SPINE_ROOT is the operator's choice: the run goes ahead and writes its receipt there.
    assert find_root(str(tmp_path), {}).path == tmp_path.resolve()
    assert find_root(None, {"SPINE_ROOT": str(tmp_path)}).path == tmp_path.resolve()
    done = run_in(tmp_path, "communications.stack.status", env={"SPINE_ROOT": str(tmp_path)})
    assert done.returncode == 2  # the missing stack contract
    assert (tmp_path / "receipts" / "sessions").is_dir()


def test_find_root_refuses_a_plain_working_directory(tmp_path: Path):
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(UsageError) as raised:
            find_root(None, {})
    finally:
        os.chdir(old)
    assert raised.value.exit_code == 2


def test_a_relative_mailroom_runtime_root_is_the_roots_not_the_working_directorys(tmp_path: Path):
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    (root / "bindings" / "mailroom.runtime.contract.yaml").write_text("active: true\nruntime_root: run/mailroom\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_in(elsewhere, "communications.stack.status", "--root", str(root))
    assert done.returncode == 2  # the missing stack contract
    assert list(elsewhere.iterdir()) == []
    assert (root / "run" / "mailroom" / "state" / "ledger.csv").is_file()


def test_a_runtime_root_that_is_not_a_path_is_refused_with_its_line(tmp_path: Path):
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    (root / "bindings" / "mailroom.runtime.contract.yaml").write_text("active: true\nruntime_root: [1, 2]\n")
    done = run_in(tmp_path, "communications.stack.status", "--root", str(root))
    assert done.returncode == 2
    assert "mailroom.runtime.contract.yaml:2: runtime_root: expected a directory path" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
