"""communications.stack.status against the lab's real servers (Postfix, Dovecot, Radicale)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_process import run_capability
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab


def run(root: Path, *args: str) -> tuple[int, dict]:
    done = run_capability(root, "communications.stack.status", *args)
    return done.code, done.envelope


def test_every_lab_endpoint_is_ok(lab_root):
    code, env = run(lab_root)
    assert code == 0, json.dumps(env["checks"], indent=1)
    assert env["status"] == "ok"
    rows = {row["protocol"]: row for row in env["data"]["endpoints"]}
    assert {"SMTP", "SMTPS", "STARTTLS", "IMAPS", "IMAP", "ManageSieve", "HTTPS"} <= set(rows)
    assert rows["SMTP"]["greeting"].startswith("220 ")
    assert rows["IMAPS"]["greeting"].startswith("* OK")
    assert "Pigeonhole" in rows["ManageSieve"]["greeting"]
    for protocol in ("SMTP", "SMTPS", "STARTTLS", "IMAPS", "IMAP", "ManageSieve", "HTTPS"):
        row = rows[protocol]
        assert row["verified"] is True and row["name_match"] is True, row
        assert row["tls_version"] == "TLSv1.3"
        assert "mail.spine.test" in row["san"]
    receipt = Path(env["receipt"])
    validate_receipt(receipt / "receipt.json")
    assert "| Status | done |" in (receipt / "receipt.md").read_text()
    ledger = (lab_root / "mailroom/state/ledger.csv").read_text()
    assert env["run_key"] in ledger


def test_a_wrong_server_name_fails_on_the_real_certificate(lab_root):
    code, env = run(lab_root, "--server-name", "mail.example.org", "--only", "IMAPS")
    assert code == 1 and env["status"] == "fail"
    checks = {c["id"]: c for c in env["checks"]}
    assert checks["stack.tls.name_match"]["status"] == "fail"
    assert "mail.example.org NOT in" in checks["stack.tls.name_match"]["detail"]


def test_without_the_lab_ca_the_chain_is_not_trusted(lab_root, tmp_path):
    # The system store does not know the lab's CA: trust must fail, the certificate still be reported.
    empty_ca = tmp_path / "other-ca.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(empty_ca))
    code, env = run(lab_root, "--ca-file", str(empty_ca), "--only", "SMTPS")
    assert code == 1
    row = env["data"]["endpoints"][0]
    assert row["verified"] is False and row["subject"] and row["days_until_expiry"] > 0
