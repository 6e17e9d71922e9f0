"""spine.install on a synthetic spine checkout built from the operator's real registry files.

What must hold: a dry run writes nothing; --execute needs approval; the files change only by
inserted lines (and the registry's `updated` stamp), every other byte as it was; a second run
changes nothing; the result passes capabilities.verify --spine-root; ids the spine owns are left
alone unless --force; the shims run spine-comms.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spine_comms.core.registry import CapabilitySpec
from spine_comms.governance.spine_entries import registry_entry
from tests.spine_checkout import build_spine_checkout

FILES = ("ops/capabilities.yaml", "ops/bindings/capability_map.yaml", "ops/plugins/MANIFEST.yaml")
# Ids of this toolkit that the sample spine registers to its own scripts.
SPINE_OWNED = {
    "communications.stack.status", "calendar.sync.plan", "calendar.sync.execute", "communications.inbox.poll",
    "verify.core.run", "verify.pack.run", "gaps.file", "gaps.close", "communications.mail.search",
}  # fmt: skip
# Capabilities whose code is in this commit's tree (the parity check imports the code of what it installs).
SUBSET = ("dns.mail.status", "mail.auth.probe", "sieve.status", "sieve.apply", "capabilities.verify", "loop.evidence")


@pytest.fixture
def spine(tmp_path: Path) -> Path:
    return build_spine_checkout(tmp_path / "spine")


def snapshot(spine: Path) -> dict[str, bytes]:
    return {p.relative_to(spine).as_posix(): p.read_bytes() for p in sorted(spine.rglob("*"))
            if p.is_file() and ".git" not in p.parts}  # fmt: skip


def install(cli, root: Path, spine: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    done = cli("spine.install", "--root", str(root), "--json", "--spine-root", str(spine), *args, env=env)
    assert done.stdout.startswith("{"), done.stderr
    return done.exit_code, done.json()


def verify(cli, root: Path, spine: Path) -> dict:
    done = cli("capabilities.verify", "--root", str(root), "--json", "--spine-root", str(spine))
    return done.json()


def only(*ids: str) -> list[str]:
    return [arg for cap in ids for arg in ("--only", cap)]


def only_insertions(before: str, after: str, allowed_replacements: int = 0) -> bool:
    opcodes = difflib.SequenceMatcher(a=before.splitlines(True), b=after.splitlines(True), autojunk=False).get_opcodes()
    replaced = [op for op in opcodes if op[0] == "replace"]
    return all(op[0] in ("equal", "insert", "replace") for op in opcodes) and len(replaced) <= allowed_replacements


def test_a_dry_run_shows_the_diff_and_writes_nothing(cli, root, spine):
    before = snapshot(spine)
    code, envelope = install(cli, root, spine)
    assert code == 0 and envelope["status"] == "warn"
    assert snapshot(spine) == before
    data = envelope["data"]
    assert data["mode"] == "dry-run" and data["written"] == []
    assert set(data["files_changed"]) == set(FILES)
    assert "+  dns.mail.status:" in data["diff"] and "+updated: " + f'"{_today()}"' in data["diff"]
    assert {c["id"] for c in data["capabilities"] if c["action"] == "conflict"} == SPINE_OWNED
    assert envelope["summary"][-1] == "run again with --execute --yes to write these changes"


def test_execute_needs_approval(cli, root, spine):
    before = snapshot(spine)
    done = cli("spine.install", "--root", str(root), "--spine-root", str(spine), "--execute")
    assert done.exit_code == 2 and "needs approval" in done.stdout
    assert snapshot(spine) == before


def test_install_changes_only_inserted_lines_passes_verify_and_is_idempotent(cli, root, spine):
    before = snapshot(spine)
    code, envelope = install(cli, root, spine, "--execute", "--yes", *only(*SUBSET, "communications.inbox.poll"))
    assert code == 0, envelope["checks"]
    assert envelope["data"]["counts"] == {"add": len(SUBSET), "update": 0, "same": 0, "conflict": 1, "take-over": 0}
    after = snapshot(spine)
    registry, cmap, manifest = (path for path in FILES)
    assert only_insertions(before[registry].decode(), after[registry].decode(), allowed_replacements=1)
    changed = [line for line in difflib.unified_diff(before[registry].decode().splitlines(),
                                                        after[registry].decode().splitlines(), n=0)
               if line.startswith("-") and not line.startswith("---")]  # fmt: skip
    assert changed == ['-updated: "2026-03-03"']
    assert only_insertions(before[cmap].decode(), after[cmap].decode())
    assert only_insertions(before[manifest].decode(), after[manifest].decode())
    new_files = sorted(set(after) - set(before))
    assert new_files == sorted(f"ops/plugins/communications/bin/spine-comms-{c.replace('.', '-')}" for c in SUBSET)
    for name in new_files:
        assert os.access(spine / name, os.X_OK)
    assert after["ops/plugins/communications/bin/communications-inbox-poll"] == before[
        "ops/plugins/communications/bin/communications-inbox-poll"]  # fmt: skip

    checked = verify(cli, root, spine)
    assert checked["status"] == "ok", checked["data"]["lines"]
    assert {c["id"]: c["status"] for c in checked["checks"]}["registry.cli.command"] == "ok"

    code, again = install(cli, root, spine, "--execute", "--yes", *only(*SUBSET, "communications.inbox.poll"))
    assert code == 0 and again["data"]["written"] == [] and again["data"]["files_changed"] == []
    assert again["data"]["counts"]["same"] == len(SUBSET)
    assert snapshot(spine) == after


def test_the_whole_toolkit_installs_and_passes_the_spines_gates(cli, root, spine):
    code, envelope = install(cli, root, spine, "--execute", "--yes")
    assert envelope["data"]["counts"]["conflict"] == len(SPINE_OWNED)
    assert {c["id"]: c["status"] for c in envelope["checks"]}["install.parity"] == "ok", envelope["checks"]
    checked = verify(cli, root, spine)
    assert checked["status"] == "ok", checked["data"]["lines"]
    assert code == 0


def test_an_installed_entry_that_drifted_is_brought_back_in_place(cli, root, spine):
    install(cli, root, spine, "--execute", "--yes", *only("sieve.status"))
    path = spine / "ops/capabilities.yaml"
    installed = path.read_text()
    drifted = installed.replace("    safety: read-only\n    approval: auto\n    lifecycle: ready\n    outputs:\n"
                                "      - stdout\n      - receipts/sessions/R<run_key>/receipt.json\n    domain: "
                                "communications\n    plane: fabric\n    arg_protocol: argparse\n",
                                "    safety: mutating\n    approval: auto\n    lifecycle: ready\n    outputs:\n"
                                "      - stdout\n      - receipts/sessions/R<run_key>/receipt.json\n    domain: "
                                "communications\n    plane: fabric\n    arg_protocol: argparse\n")  # fmt: skip
    assert drifted.count("safety: mutating") == installed.count("safety: mutating") + 1
    path.write_text(drifted)
    _, envelope = install(cli, root, spine, "--execute", "--yes", *only("sieve.status"))
    assert envelope["data"]["capabilities"][0]["action"] == "update"
    assert "registry.safety" in envelope["data"]["capabilities"][0]["reason"]
    assert path.read_text() == installed


def test_force_takes_over_a_spine_id_and_keeps_its_old_script(cli, root, spine):
    old_script = spine / "ops/plugins/communications/bin/communications-inbox-poll"
    old = old_script.read_bytes()
    _, envelope = install(cli, root, spine, "--execute", "--yes", *only("communications.inbox.poll"),
                             "--force", "communications.inbox.poll")  # fmt: skip
    assert envelope["data"]["capabilities"][0]["action"] == "take-over"
    assert envelope["data"]["by_hand"] == []  # its flow-style tags and outputs are documentation: left as they are
    import yaml

    entry = yaml.safe_load((spine / "ops/capabilities.yaml").read_text())["capabilities"]["communications.inbox.poll"]
    assert entry["command"] == "./ops/plugins/communications/bin/spine-comms-communications-inbox-poll"
    assert entry["arg_protocol"] == "argparse" and entry["safety"] == "mutating"
    assert entry["implementation_repo"] == "/Users/ronnyworks/code/agentic-spine"  # keys it does not own stay
    link = yaml.safe_load((spine / "ops/bindings/capability_map.yaml").read_text())["capabilities"][
        "communications.inbox.poll"]  # fmt: skip
    assert link["script"] == "spine-comms-communications-inbox-poll"
    assert old_script.read_bytes() == old
    assert verify(cli, root, spine)["data"]["failing_rules"] == []


def test_a_foreign_file_at_a_shim_path_is_a_conflict_left_alone(cli, root, spine):
    foreign = spine / "ops/plugins/communications/bin/spine-comms-sieve-status"
    foreign.write_text("#!/bin/sh\necho mine\n")
    _, envelope = install(cli, root, spine, "--execute", "--yes", *only("sieve.status"))
    assert envelope["data"]["capabilities"][0]["action"] == "conflict"
    assert foreign.read_text() == "#!/bin/sh\necho mine\n"
    assert {c["id"]: c["status"] for c in envelope["checks"]}["install.conflicts"] == "warn"


def test_a_dead_owners_lock_is_reclaimed_and_the_lock_is_gone_afterwards(cli, root, spine):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = spine / "mailroom/state/locks/git.capability_register.lock"
    lock.mkdir(parents=True)
    (lock / "pid").write_text(dead.stdout)
    code, _ = install(cli, root, spine, "--execute", "--yes", *only("sieve.status"))
    assert code == 0 and not lock.exists()


def test_the_shim_runs_spine_comms_with_the_arguments_verbatim(cli, root, spine, tmp_path):
    install(cli, root, spine, "--execute", "--yes", *only("capabilities.verify"))
    shim = spine / "ops/plugins/communications/bin/spine-comms-capabilities-verify"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    done = subprocess.run([str(shim), "--root", str(root), "--json", "--spine-root", str(spine)], cwd=spine,
                          capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    assert done.stdout.startswith("{") and '"capability": "capabilities.verify"' in done.stdout, done.stderr
    moved = tmp_path / "elsewhere"
    moved.write_text('#!/bin/sh\necho "moved: $*"\n')
    moved.chmod(0o755)
    done = subprocess.run([str(shim), "--json", "a b"], capture_output=True, text=True, timeout=30,
                          env={**env, "SPINE_COMMS_BIN": str(moved)}, check=False)  # fmt: skip
    assert done.stdout == "moved: capabilities.verify --json a b\n"


def test_touches_api_brings_its_secrets_preconditions():
    spec = CapabilitySpec("x.y", "d", "read-only", "auto", "", "p", "s",
                          entry={"touches_api": True, "requires": ["calendar.generate"]})  # fmt: skip
    entry = registry_entry(spec)
    assert entry["touches_api"] is True
    assert entry["requires"] == ["calendar.generate", "secrets.binding", "secrets.auth.status"]
    assert "touches_api" not in registry_entry(CapabilitySpec("x.y", "d", "read-only", "auto", "", "p", "s"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--spine-root DIR is required"),
        (("--spine-root", "/nonexistent/spine"), "is not a spine checkout"),
        (("--only", "no.such.cap"), "not a spine-comms capability: no.such.cap"),
    ],
)
def test_bad_input_is_exit_2(cli, root, spine, args, message):
    if args and args[0] == "--only":
        args = ("--spine-root", str(spine), *args)
    done = cli("spine.install", "--root", str(root), *args)
    assert done.exit_code == 2 and message in done.stdout and "Traceback" not in done.stdout + done.stderr


def _today() -> str:
    from datetime import datetime

    return datetime.now().astimezone().date().isoformat()


def test_a_spine_with_duplicate_keys_installs_and_reports_what_it_wrote(cli, root, tmp_path):
    """The real checkout repeats a capability in its registry and map; the spine's tools read the last one.
    Install writes its entries, re-checks with the spine's rules, and reports ok, never `error` after writing."""
    from tests.spine_checkout import build_spine_with_duplicates

    spine = build_spine_with_duplicates(tmp_path / "dup")
    code, envelope = install(cli, root, spine, "--execute", "--yes", *only(*SUBSET))
    assert code == 0 and envelope["status"] == "ok", envelope["checks"]
    assert set(envelope["data"]["written"]) >= set(FILES)
    assert {c["id"]: c["status"] for c in envelope["checks"]}["install.parity"] == "ok"
    assert "D67 PASS: capability map covers all 70 capabilities" in envelope["data"]["parity"]
    checked = verify(cli, root, spine)
    assert checked["status"] == "ok" and len(checked["data"]["warnings"]) == 2, checked["data"]["lines"]


def test_a_write_that_fails_part_way_is_partial_naming_what_was_written(cli, root, spine, monkeypatch):
    """The disk fills after the shims and the registry: the run says which files it wrote (partial, exit 1)."""
    import errno

    from spine_comms.core import yaml_roundtrip

    real = yaml_roundtrip.write_atomic

    def full_disk_at_the_manifest(path, data, mode=0o644, **kw):
        if Path(path).name == "MANIFEST.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, mode, **kw)

    monkeypatch.setattr(yaml_roundtrip, "write_atomic", full_disk_at_the_manifest)
    code, envelope = install(cli, root, spine, "--execute", "--yes", *only(*SUBSET))
    assert code == 1 and envelope["status"] == "partial", envelope["checks"]
    written = envelope["data"]["written"]
    assert "ops/capabilities.yaml" in written and "ops/bindings/capability_map.yaml" in written
    assert "ops/plugins/MANIFEST.yaml" not in written
    plan = {c["id"]: c for c in envelope["checks"]}["install.plan"]
    assert plan["status"] == "partial" and "No space left on device" in plan["detail"]
