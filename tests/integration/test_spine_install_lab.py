"""spine.install for real: install into a synthetic spine checkout, then run installed shims against the lab
the way the spine's runner does (from $SPINE_CODE, arguments forwarded verbatim, SPINE_ROOT in the environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli_process import SPINE_COMMS
from tests.receipt_audit import validate_receipt
from tests.spine_checkout import build_spine_checkout

pytestmark = pytest.mark.lab

BIN = "ops/plugins/communications/bin"


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SPINE_", "STALWART_"))}
    return {**clean, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    spine = build_spine_checkout(tmp_path_factory.mktemp("spine") / "spine")
    scratch = tmp_path_factory.mktemp("scratch")
    done = subprocess.run(
        [SPINE_COMMS, "spine.install", "--root", str(scratch), "--json", "--spine-root", str(spine), "--execute",
         "--only", "dns.mail.status", "--only", "dkim.check", "--only", "communications.inbox.health"],
        capture_output=True, text=True, timeout=120, env=env(SPINE_CAP_AUTO_APPROVE="yes"), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["data"]["counts"]["add"] == 3
    return spine


@pytest.mark.parametrize("cap", ["dns.mail.status", "dkim.check"])
def test_an_installed_shim_runs_a_read_only_capability_against_the_lab(installed, lab_root, cap):
    shim = f"./{BIN}/spine-comms-{cap.replace('.', '-')}"
    # As cap.sh runs it: cwd $SPINE_CODE, `$cmd "${args[@]}"`; the root named by SPINE_ROOT.
    done = subprocess.run([shim, "--json"], cwd=installed, capture_output=True, text=True, timeout=120,
                          env=env(SPINE_ROOT=str(lab_root)), check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    envelope = json.loads(done.stdout)
    assert envelope["capability"] == cap and envelope["status"] == "ok"
    assert envelope["receipt"].startswith(str(lab_root / "receipts" / "sessions"))
    validate_receipt(Path(envelope["receipt"]) / "receipt.json")


def test_the_installed_checkout_passes_the_spines_registry_gates(installed, tmp_path):
    argv = [SPINE_COMMS, "capabilities.verify", "--root", str(tmp_path), "--spine-root", str(installed)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env(), check=False)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert "D67 PASS: capability map covers all 65 capabilities" in lines
    assert any(line.startswith("D63 PASS:") for line in lines) and any(line.startswith("D279 PASS:") for line in lines)
    assert "CLI PASS: every command runs a spine-comms capability (3 checked)" in lines
