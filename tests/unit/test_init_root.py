"""`spine-comms init` and `contracts.check`: from an empty directory to a root whose contracts validate."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.stalwart_fake import FakeStalwart

CHECKOUT = Path(__file__).resolve().parents[2]


def test_init_writes_a_root_whose_contracts_validate(cli, tmp_path):
    root = tmp_path / "root"
    result = cli("init", str(root), "--domain", "Example.org.", "--mail-host", "mx.example.org", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["capability"] == "init" and envelope["status"] == "ok" and envelope["run_key"] is None
    data = envelope["data"]
    assert data["domain"] == "example.org" and data["mailboxes"] == ["ops", "alerts", "noreply"]
    assert len(data["next"]) == 3 and all(str(root.resolve()) in c for c in data["next"])
    stack = yaml.safe_load((root / "bindings/communications.stack.contract.yaml").read_text())
    assert stack["endpoints"]["host"] == "mx.example.org"
    assert [m["address"] for m in stack["pilot"]["mailboxes"]] == [f"{m}@example.org" for m in data["mailboxes"]]
    assert all(m["password_ref"].startswith("env:") for m in stack["pilot"]["mailboxes"])  # references only
    text = "".join(p.read_text() for p in (root / "bindings").iterdir())
    assert "mintprints" not in text and "192.168.1.26" not in text
    assert "/receipts/" in (root / ".gitignore").read_text() and "/secrets/" in (root / ".gitignore").read_text()
    checked = cli("contracts.check", "--root", str(root), "--json")
    assert checked.exit_code == 0, checked.stdout
    contracts = json.loads(checked.stdout)["data"]["contracts"]
    assert contracts["communications.inbox.contract.yaml"]["valid"] is True
    assert "communications.inbox.poll" in contracts["communications.inbox.contract.yaml"]["feeds"]


def test_init_with_other_mailboxes_keeps_every_reference_consistent(cli, tmp_path):
    root = tmp_path / "root"
    result = cli("init", str(root), "--domain", "example.org", "--mail-host", "mail.example.org",
                 "--mailbox", "agent", "--mailbox", "bot")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    inbox = yaml.safe_load((root / "bindings/communications.inbox.contract.yaml").read_text())
    assert [m["id"] for m in inbox["mailboxes"]] == ["agent"]  # no alerts@ to poll
    mailauth = yaml.safe_load((root / "bindings/communications.mailauth.contract.yaml").read_text())
    assert mailauth["probe"]["sender"] == "agent" and mailauth["probe"]["target"] == {"mailbox": "agent"}
    sieve = (root / "bindings/communications.sieve.contract.yaml").read_text()
    assert "alerts@" not in sieve and "id: agent" in sieve
    assert cli("contracts.check", "--root", str(root)).exit_code == 0


def test_init_never_writes_over_anything_and_says_why(cli, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    result = cli("init", str(root), "--domain", "example.org", "--mail-host", "mail.example.org")
    assert result.exit_code == 2 and "not an empty directory" in result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]
    bad = cli("init", str(tmp_path / "new"), "--domain", "nodots", "--mail-host", "a b", "--mailbox", "Ops!")
    assert bad.exit_code == 2 and len([line for line in bad.stderr.splitlines() if line.startswith("--")]) == 3
    assert not (tmp_path / "new").exists()


def test_init_asks_stalwart_for_the_domains_dkim_selectors(cli, tmp_path):
    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        fake.add_dkim("example.test", "rsa", selector="v1-rsa-20260101")
        root = tmp_path / "root"
        result = cli("init", str(root), "--domain", "example.test", "--mail-host", "mail.example.test",
                     "--from-stalwart", fake.url, "--username", fake.admin_login, "--json",
                     env={"STALWART_ADMIN_SECRET": fake.admin_password})  # fmt: skip
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["data"]["dkim_selectors"] == ["v1-rsa-20260101"]
    mailauth = yaml.safe_load((root / "bindings/communications.mailauth.contract.yaml").read_text())
    assert mailauth["domains"][0]["dkim_selectors"] == ["v1-rsa-20260101"]
    assert fake.admin_password not in result.stdout


def test_the_checkouts_bindings_are_the_loops_own_deployment_and_validate(cli, tmp_path):
    stack = yaml.safe_load((CHECKOUT / "bindings/communications.stack.contract.yaml").read_text())
    assert stack["endpoints"]["host"] == "mail.spine.mintprints.co"
    ports = {p["host"]: p["protocol"] for p in stack["pilot"]["ports"]}
    assert ports == {25: "SMTP", 465: "SMTPS", 587: "STARTTLS", 993: "IMAPS", 4190: "ManageSieve",
                     8443: "HTTPS", 8080: "HTTP"}  # fmt: skip
    root = tmp_path / "copy"
    root.mkdir()
    (root / "bindings").symlink_to(CHECKOUT / "bindings")
    result = cli("contracts.check", "--root", str(root), "--json")
    assert result.exit_code == 0, result.stdout


def test_contracts_check_names_each_problem_and_what_it_stops(cli, tmp_path):
    root = tmp_path / "root"
    assert cli("init", str(root), "--domain", "example.org", "--mail-host", "mail.example.org").exit_code == 0
    sieve = root / "bindings/communications.sieve.contract.yaml"
    sieve.write_text(sieve.read_text().replace("script: spine-routing", "script: vacation"))
    (root / "bindings/communications.stack.contract.yaml").unlink()
    result = cli("contracts.check", "--root", str(root), "--json")
    envelope = json.loads(result.stdout)
    assert result.exit_code == 1 and envelope["status"] == "fail"
    bad = envelope["data"]["contracts"]["communications.sieve.contract.yaml"]
    assert bad["valid"] is False and any(":" in p and "sieve.contract.yaml:" in p for p in bad["problems"])
    assert bad["feeds"] == ["sieve.status", "sieve.apply"]
    missing = [c for c in envelope["checks"] if c["subject"] == "communications.stack.contract.yaml"]
    assert missing[0]["status"] == "fail" and "communications.stack.status" in missing[0]["detail"]


def test_cap_show_lists_the_contracts_a_capability_reads(cli):
    import json as _json

    shown = _json.loads(cli("cap", "show", "sieve.status", "--json").stdout)
    assert shown["data"]["contracts"] == ["communications.stack.contract.yaml", "communications.sieve.contract.yaml"]
    assert "contracts: communications.stack.contract.yaml" in cli("cap", "show", "sieve.status").stdout


def test_every_capability_named_as_a_reader_is_registered():
    from spine_comms.contracts.catalog import READERS, contract_models
    from spine_comms.core.registry import load_registry

    registered = set(load_registry().capabilities)
    assert set(READERS) <= set(contract_models()) | {"mailroom.runtime.contract.yaml"}
    assert {cap for readers in READERS.values() for cap in readers} <= registered
