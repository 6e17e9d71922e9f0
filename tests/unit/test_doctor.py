"""communications.doctor without servers: what it says of a root that cannot work yet (the lab test
covers endpoints, secrets, units and receipts against real servers)."""

from __future__ import annotations

from pathlib import Path


def checks_by_id(envelope: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for check in envelope["checks"]:
        out.setdefault(check["id"], []).append(check)
    return out


def test_a_root_without_contracts_fails_with_the_init_remedy(cli, tmp_path: Path):
    root = tmp_path / "bare"
    root.mkdir()
    done = cli("communications.doctor", "--root", str(root), "--unit-dir", str(tmp_path), "--json")
    assert done.exit_code == 1
    checks = checks_by_id(done.json())
    assert [c["status"] for c in checks["doctor.root.bindings"]] == ["fail"]
    assert "remedy: `spine-comms init" in checks["doctor.root.bindings"][0]["detail"]
    assert list(checks) == ["doctor.root.bindings"]  # nothing else can be judged


def test_without_a_stack_contract_endpoints_are_skipped_not_green(cli, tmp_path: Path):
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    (root / "bindings" / "communications.outbox.contract.yaml").write_text("version: 1\nretry:\n  max_attempts: x\n")
    done = cli("communications.doctor", "--root", str(root), "--unit-dir", str(tmp_path), "--json")
    assert done.exit_code == 1 and done.json()["status"] == "fail"
    checks = checks_by_id(done.json())
    assert [c["status"] for c in checks["doctor.endpoint.answers"]] == ["skip"]
    missing = [c for c in checks["doctor.contracts.present"] if c["status"] == "fail"]
    assert [c["subject"] for c in missing] == ["communications.stack.contract.yaml"]
    invalid = [c for c in checks["doctor.contracts.valid"] if c["status"] == "fail"]
    assert [c["subject"] for c in invalid] == ["communications.outbox.contract.yaml"]
    assert [c["status"] for c in checks["doctor.unit.installed"]] == ["warn"]  # none of them, one finding
    assert {c["status"] for c in checks["doctor.receipts.fresh"]} == {"warn"}
