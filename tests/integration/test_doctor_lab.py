"""communications.doctor against the lab's real servers: a healthy root with its units installed and
fresh receipts is ok; a stopped endpoint is an error (exit 3), never ok; a secret that does not resolve,
an invalid contract, units installed for another root and stale receipts each show with their remedy."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_process import SPINE_COMMS, clean_env, run_capability

pytestmark = pytest.mark.lab
TIMED = ("verify.pack.run", "communications.outbox.flush", "calendar.sync.execute", "receipts.prune")
STACK = "communications.stack.contract.yaml"


def copy_root(lab_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    return root


def install_units(root: Path, units: Path, *, enable: bool = True) -> None:
    done = subprocess.run([SPINE_COMMS, "ops", "units", "--root", str(root), "--write", str(units)],
                          capture_output=True, text=True, env=clean_env(), timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    if enable:
        for wants, suffix in (("timers.target.wants", ".timer"), ("multi-user.target.wants", "inbox-watch.service")):
            (units / wants).mkdir(exist_ok=True)
            for unit in units.glob(f"*{suffix}"):
                (units / wants / unit.name).symlink_to(unit)


def receipt(root: Path, capability: str, age: timedelta, status: str = "done") -> Path:
    """A receipt directory as the spine's runner writes it (receipt.md rows), aged by its run key."""
    when = datetime.now().astimezone() - age
    path = root / "receipts" / "sessions" / f"RCAP-{when:%Y%m%d-%H%M%S}__{capability}__Rdoc{len(capability)}"
    path.mkdir(parents=True)
    (path / "receipt.md").write_text(
        f"| Run ID | `{path.name[1:]}` |\n| Capability | `{capability}` |\n"
        f"| Status | {status} |\n| Exit Code | {0 if status == 'done' else 1} |\n"
    )
    return path


def doctor(root: Path, units: Path) -> tuple[int, dict, dict[str, list[dict]]]:
    done = run_capability(root, "communications.doctor", "--unit-dir", str(units), timeout=180)
    by_id: dict[str, list[dict]] = {}
    for check in done.envelope["checks"]:
        by_id.setdefault(check["id"], []).append(check)
    return done.code, done.envelope, by_id


def statuses(checks: list[dict]) -> set[str]:
    return {c["status"] for c in checks}


def test_a_healthy_root_is_ok_and_every_part_was_looked_at(lab, lab_root, tmp_path):
    root = copy_root(lab_root, tmp_path)
    units = tmp_path / "units"
    install_units(root, units)
    for capability in TIMED:
        receipt(root, capability, timedelta(minutes=2))
    code, envelope, checks = doctor(root, units)
    assert code == 0, json.dumps([c for c in envelope["checks"] if c["status"] != "ok"], indent=1)
    assert envelope["status"] == "ok"
    assert statuses(checks["doctor.endpoint.answers"]) == {"ok"}
    assert len(checks["doctor.endpoint.answers"]) >= 7  # every port of the lab's stack contract
    assert statuses(checks["doctor.secret.resolves"]) == {"ok"} and len(checks["doctor.secret.resolves"]) >= 1
    assert statuses(checks["doctor.contracts.valid"]) == {"ok"}
    assert statuses(checks["doctor.unit.enabled"]) == {"ok"} and len(checks["doctor.unit.enabled"]) == 5
    assert statuses(checks["doctor.receipts.fresh"]) == {"ok"} and len(checks["doctor.receipts.fresh"]) == 4
    assert "doctor.receipts.latest_passed" not in checks
    # the secrets resolved, and not one reached the output or the receipt
    receipt_dir = Path(envelope["receipt"])
    text = json.dumps(envelope) + (receipt_dir / "output.txt").read_text() + (receipt_dir / "receipt.json").read_text()
    for entry in lab["users"].values():
        assert entry["password"] not in text


def test_an_endpoint_that_does_not_answer_is_an_error_never_ok(lab_root, tmp_path):
    root = copy_root(lab_root, tmp_path)
    units = tmp_path / "units"
    install_units(root, units)
    for capability in TIMED:
        receipt(root, capability, timedelta(minutes=2))
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        dead = free.getsockname()[1]
    contract = root / "bindings" / STACK
    text = contract.read_text()
    imaps = re.search(r"host: (\d+)\s*\n\s*protocol: IMAPS", text)
    assert imaps, "the lab's stack contract lists an IMAPS port"
    contract.write_text(text.replace(imaps.group(0), imaps.group(0).replace(imaps.group(1), str(dead))))
    code, envelope, checks = doctor(root, units)
    assert code == 3 and envelope["status"] == "error"
    dead_checks = [c for c in checks["doctor.endpoint.answers"] if f":{dead} " in c["subject"]]
    assert [c["status"] for c in dead_checks] == ["error"]
    assert "remedy:" in dead_checks[0]["detail"]
    others = [c for c in checks["doctor.endpoint.answers"] if c not in dead_checks]
    assert others and statuses(others) == {"ok"}


def test_findings_each_carry_their_remedy(lab_root, tmp_path):
    root = copy_root(lab_root, tmp_path)
    units = tmp_path / "units"
    other = tmp_path / "other-root"
    (other / "bindings").mkdir(parents=True)
    install_units(other, units, enable=False)  # installed, but for another root, and not enabled
    receipt(root, "verify.pack.run", timedelta(hours=5))  # three missed 15-minute runs and more
    receipt(root, "receipts.prune", timedelta(hours=1), status="failed")
    dav = root / "bindings" / "communications.dav.contract.yaml"
    assert "password_ref" in dav.read_text()
    dav.write_text(re.sub(r"password_ref: .*", "password_ref: env:SPINE_DOCTOR_TEST_UNSET", dav.read_text(), count=1))
    (root / "bindings" / "communications.outbox.contract.yaml").write_text("version: 1\nretry:\n  max_attempts: many\n")
    code, envelope, checks = doctor(root, units)
    assert code == 1 and envelope["status"] == "fail"
    invalid = [c for c in checks["doctor.contracts.valid"] if c["status"] == "fail"]
    assert [c["subject"] for c in invalid] == ["communications.outbox.contract.yaml"]
    assert "remedy: fix each file:line" in invalid[0]["detail"]
    assert any(
        "communications.outbox.contract.yaml:3: retry.max_attempts" in p for p in invalid[0]["evidence"]["problems"]
    )
    units_found = checks["doctor.unit.installed"]
    assert statuses(units_found) == {"warn"} and all(str(other.resolve()) in c["detail"] for c in units_found)
    assert all("--force" in c["detail"] for c in units_found)
    fresh = {c["subject"]: c for c in checks["doctor.receipts.fresh"]}
    assert fresh["verify.pack.run"]["status"] == "warn" and "journalctl -u spine-comms-verify" in fresh[
        "verify.pack.run"]["detail"]  # fmt: skip
    assert fresh["receipts.prune"]["status"] == "ok"
    failed = checks["doctor.receipts.latest_passed"]
    assert [c["subject"] for c in failed] == ["receipts.prune"] and "ended failed (exit 1)" in failed[0]["detail"]
    assert fresh["communications.outbox.flush"]["status"] == "warn" and "never run" in fresh[
        "communications.outbox.flush"]["detail"]  # fmt: skip
    bad = [c for c in checks["doctor.secret.resolves"] if c["status"] == "fail"]
    assert [c["subject"].split(":")[0] for c in bad] == ["communications.dav.contract.yaml"]
    assert "SPINE_DOCTOR_TEST_UNSET" in bad[0]["detail"] and "remedy: export" in bad[0]["detail"]
    # a contract that does not validate is not mined for secrets: its checks would be guesses
    assert not any(c["subject"].startswith("communications.outbox") for c in checks["doctor.secret.resolves"])


def test_no_units_anywhere_is_one_warning_with_the_install_command(lab_root, tmp_path):
    root = copy_root(lab_root, tmp_path)
    empty = tmp_path / "no-units"
    empty.mkdir()
    _, _, checks = doctor(root, empty)
    assert [c["status"] for c in checks["doctor.unit.installed"]] == ["warn"]
    assert "ops units --root" in checks["doctor.unit.installed"][0]["detail"]
    assert os.path.isdir(root / "receipts" / "sessions")


def test_a_unit_that_would_run_a_dry_run_is_a_failure(lab_root, tmp_path):
    # Rendered by a version whose calendar sync acted without flags, or edited by hand: it would
    # report green every hour and write nothing.
    root = copy_root(lab_root, tmp_path)
    units = tmp_path / "units"
    install_units(root, units)
    service = units / "spine-comms-calendar-sync.service"
    service.write_text(service.read_text().replace(" --execute --yes", ""))
    code, _, checks = doctor(root, units)
    assert code == 1
    current = checks["doctor.unit.current"]
    assert [c["subject"] for c in current] == ["spine-comms-calendar-sync.service"]
    assert "runs without --execute --yes" in current[0]["detail"] and "--force" in current[0]["detail"]
