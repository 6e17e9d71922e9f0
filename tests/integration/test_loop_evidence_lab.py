"""loop.evidence against the lab: real runs' receipts prove the loop's Definitions of Done one by one.

The root is a fresh copy of the lab root's contracts (its own receipts, its own mailroom) whose inbox
polls a fresh folder of sink@, so nothing here changes what other tests see.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.cli_process import SPINE_COMMS, clean_env
from tests.integration.inbox_lab import capability, make_root
from tests.mailbox_fill import fill_imap
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab

LOOP = "LOOP-COMMS-AGENTIC-LAYER-20260223"


@pytest.fixture
def loop_root(lab, lab_root, tmp_path) -> Path:
    folder = f"L{uuid.uuid4().hex[:10]}"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "friend@example.org", "sink@spine.test", "loop evidence"
    message["Message-ID"] = f"<{folder}@example.org>"
    message.set_content("a message to enqueue\n")
    fill_imap(lab, "sink", folder, [bytes(message)], connections=1)
    root = make_root(tmp_path, lab, lab_root, folders=[folder])
    for name in ("communications.mailauth.contract.yaml", "loop.evidence.contract.yaml"):
        shutil.copyfile(lab_root / "bindings" / name, root / "bindings" / name)
    scopes = Path("mailroom/state/loop-scopes")
    shutil.copytree(lab_root / scopes, root / scopes)
    return root


def evidence(root: Path) -> tuple[int, dict]:
    code, envelope, _ = capability(root, "loop.evidence", LOOP)
    validate_receipt(Path(envelope["receipt"]) / "receipt.json")
    return code, envelope


def test_the_lab_root_carries_the_loop_and_receipts_prove_it_dod_by_dod(loop_root):
    code, envelope = evidence(loop_root)
    assert code == 1 and envelope["data"]["dod_unproven"] == ["1", "2", "3", "4"]
    assert envelope["data"]["scope"] == str(loop_root / f"mailroom/state/loop-scopes/{LOOP}.scope.md")
    assert envelope["data"]["contract"] == str(loop_root / "bindings/loop.evidence.contract.yaml")

    probe_code, probe, _ = capability(loop_root, "mail.auth.probe", "--execute", timeout=120)
    assert probe_code == 0, probe["summary"]
    code, envelope = evidence(loop_root)
    assert envelope["data"]["dod_unproven"] == ["2", "3", "4"]
    dod1 = envelope["data"]["phases"][0]["dod"]
    assert dod1["verdict"] == "proven" and dod1["proofs"][0]["run_key"] == probe["run_key"]
    assert dod1["proofs"][0]["age_seconds"] < 600

    assert capability(loop_root, "communications.inbox.poll", "--enqueue")[0] == 0
    assert capability(loop_root, "communications.inbox.health")[0] == 0
    code, envelope = evidence(loop_root)
    assert code == 1 and envelope["data"]["dod_unproven"] == ["2", "4"]
    steps = {s["id"]: s["verdict"] for p in envelope["data"]["phases"] for s in p["steps"]}
    assert steps["1.4"] == steps["3.2"] == steps["3.3"] == "proven"
    assert steps["3.1"] == "unproven"  # it names a plain poll: the --enqueue run is another run
    assert steps["2.1"] == "unproven"


def dod4_pack_proof(root: Path) -> dict:
    code, envelope = evidence(root)
    assert code == 1
    (proof,) = [p for p in envelope["data"]["phases"][3]["dod"]["proofs"] if p["capability"] == "verify.pack.run"]
    return proof


def test_a_one_gate_run_never_proves_the_full_pack_after_it_failed(loop_root):
    """The issue's case: a failing full pack, then one gate alone passing, must leave DoD 4 failing."""
    assert capability(loop_root, "mail.auth.probe", timeout=120)[0] == 0  # so that D902 passes
    full_code, full, _ = capability(loop_root, "verify.pack.run", "communications", timeout=180)
    assert full_code == 1 and full["status"] == "fail", full["summary"]  # this root has no calendar
    one_code, one, _ = capability(loop_root, "verify.pack.run", "communications", "--gate", "D902", timeout=180)
    assert one_code == 0 and one["status"] == "ok", one["summary"]
    proof = dod4_pack_proof(loop_root)
    assert proof["verdict"] == "failing" and proof["run_key"] == full["run_key"], proof


def test_an_edited_real_receipt_is_refused_and_named(loop_root):
    probe_code, probe, _ = capability(loop_root, "mail.auth.probe", timeout=120)
    assert probe_code == 0, probe["summary"]
    directory = Path(probe["receipt"])
    doc = json.loads((directory / "receipt.json").read_text())
    doc["summary"].append("dkim=pass")  # any change at all
    (directory / "receipt.json").write_text(json.dumps(doc, indent=2))
    code, envelope = evidence(loop_root)
    dod1 = envelope["data"]["phases"][0]["dod"]
    assert code == 1 and dod1["verdict"] == "refused" and str(directory) in dod1["detail"]
    refused = next(c for c in envelope["checks"] if c["id"] == "loop.evidence.receipts")
    assert refused["status"] == "fail" and refused["actual"] == [str(directory)]
    verify_code, verify, _ = capability(loop_root, "verify.core.run")
    d912 = next(g for g in verify["data"]["gates"] if g["id"] == "D912")
    assert verify_code == 1 and d912["status"] == "FAIL" and directory.name in d912["detail"], d912


def test_text_mode_lists_every_part_and_ends_with_the_status(loop_root):
    done = subprocess.run([SPINE_COMMS, "loop.evidence", "--root", str(loop_root), LOOP], capture_output=True,
                          text=True, timeout=60, env=clean_env(), check=False)  # fmt: skip
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "loop.evidence" and lines[-1] == "status: fail"
    assert "Definitions of Done: 0 of 4 proven by a passing, fresh receipt" in lines
    for key in ("1.1", "2.5", "3.4", "4.6"):
        assert any(line.startswith(f"  {key} ") and "unproven" in line for line in lines), key
    assert not any(set(line.strip()) <= {"-", "─"} and len(line.strip()) >= 8 for line in lines)
