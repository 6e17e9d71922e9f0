"""dkim.keygen through the CLI: files and modes, refusal without --force, the record printed, no private key leaked."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
import yaml

from spine_comms.mail.dkim_record import (
    key_fingerprint,
    key_strength,
    parse_dkim_record,
    private_key_matches,
)

CONTRACT = "communications.mailauth.contract.yaml"


def write_contract(root: Path, domains=("example.com",), **dkim_keys) -> None:
    contract = {
        "version": 1,
        "domains": [{"domain": d} for d in domains],
        "dkim_keys": {"directory": "keys/dkim", **dkim_keys},
    }
    (root / "bindings" / CONTRACT).write_text(yaml.safe_dump(contract))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def keygen(cli, root: Path, *args: str):
    result = cli("dkim.keygen", "--root", str(root), "--json", "--execute", *args)
    assert result.stdout.startswith("{"), result.stderr
    return result, result.json()


def pem_body(path: Path) -> str:
    """The base64 body of a PEM, on one line and line by line: neither may appear anywhere."""
    return "".join(path.read_text().splitlines()[1:-1])


def private_lines(path: Path) -> list[str]:
    """The PEM lines that hold only secret numbers. An RSA PKCS#1 key starts with its modulus, which is
    public and printed in p=, so its first six 64-character lines (48 bytes each, past the ~270 bytes of
    version, modulus and exponent) are skipped; an Ed25519 PKCS#8 key is a fixed prefix and the seed."""
    lines = path.read_text().splitlines()[1:-1]
    secret = lines[6:] if "RSA PRIVATE KEY" in path.read_text() else lines
    assert secret and all(len(line) >= 40 for line in secret[:-1])
    return secret


def everything_written(root: Path, *outputs: str) -> str:
    files = [p for p in (root / "receipts").rglob("*") if p.is_file()]
    files += [p for p in (root / "mailroom").rglob("*") if p.is_file()]
    assert files, "no receipt was written"
    return "\n".join([*outputs, *(p.read_text() for p in files)])


def test_default_run_writes_an_rsa_key_0600_and_prints_the_record(cli, root):
    write_contract(root)
    result, env = keygen(cli, root, "--date", "2026-11-03")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert set(env) >= {"capability", "schema_version", "status", "generated_at", "data", "run_key", "receipt"}
    assert env["capability"] == "dkim.keygen" and env["status"] == "ok" and env["schema_version"] == "1.0"
    data = env["data"]
    assert data["domain"] == "example.com" and data["date"] == "2026-11-03"
    [key] = data["keys"]
    path = root / "keys/dkim/example.com/202611r.private"
    assert key["private_key_file"] == str(path) and key["replaced"] is False
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(root / "keys/dkim") == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")

    assert key["selector"] == "202611r" and key["algorithm"] == "rsa"
    assert key["record_name"] == "202611r._domainkey.example.com."
    value = key["txt_value"]
    assert value.startswith("v=DKIM1; k=rsa; p=")
    assert "".join(key["txt_strings"]) == value and len(key["txt_strings"]) == 2
    assert all(len(s.encode()) <= 255 for s in key["txt_strings"])
    assert key["zone_line"] == (
        f'202611r._domainkey.example.com. 3600 IN TXT ( "{key["txt_strings"][0]}" "{key["txt_strings"][1]}" )'
    )
    record = parse_dkim_record(value)
    assert key_strength(record) == ("ok", "RSA 2048 bits") and key["bits"] == 2048
    assert key["fingerprint"] == key_fingerprint("rsa", record.tags["p"])
    assert private_key_matches(path.read_bytes(), record)[0]
    assert key["zone_line"] in env["summary"] and f"fingerprint {key['fingerprint']}" in env["summary"]
    checks = {c["id"]: c["status"] for c in env["checks"]}
    assert checks == {"dkim.keygen.key_written": "ok", "dkim.keygen.record_valid": "ok",
                      "dkim.keygen.key_matches_record": "ok"}  # fmt: skip


def test_ed25519_too_and_the_private_keys_appear_in_no_output_or_receipt(cli, root):
    write_contract(root)
    result, env = keygen(cli, root, "--ed25519", "--date", "2026-01-31")
    assert result.exit_code == 0, result.stdout + result.stderr
    names = {k["algorithm"]: k for k in env["data"]["keys"]}
    assert names["rsa"]["selector"] == "202601r" and names["ed25519"]["selector"] == "202601e"
    ed_file = root / "keys/dkim/example.com/202601e.private"
    assert mode(ed_file) == 0o600 and ed_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    ed = names["ed25519"]
    assert ed["txt_strings"] == [ed["txt_value"]] and ed["bits"] == 256
    assert ed["zone_line"] == f'202601e._domainkey.example.com. 3600 IN TXT "{ed["txt_value"]}"'
    assert private_key_matches(ed_file.read_bytes(), parse_dkim_record(ed["txt_value"]))[0]

    text = cli("dkim.keygen", "--root", str(root), "--execute", "--ed25519", "--date", "2026-02-01")
    assert text.exit_code == 0 and "status: ok" in text.stdout and "IN TXT" in text.stdout
    keys = sorted((root / "keys/dkim/example.com").glob("*.private"))
    assert len(keys) == 4
    haystack = everything_written(root, result.stdout, result.stderr, text.stdout, text.stderr)
    assert "PRIVATE KEY" not in haystack
    for key in keys:
        assert pem_body(key) not in haystack
        for line in private_lines(key):
            assert line not in haystack


def test_an_existing_key_is_never_overwritten_without_force(cli, root):
    write_contract(root)
    first, _ = keygen(cli, root, "--date", "2026-11-03")
    assert first.exit_code == 0
    path = root / "keys/dkim/example.com/202611r.private"
    before = path.read_bytes()

    refused, env = keygen(cli, root, "--date", "2026-11-03", "--ed25519")
    assert refused.exit_code == 2
    assert env["status"] == "error" and str(path) in env["error"]["message"]
    assert "--force" in env["error"]["hint"]
    assert path.read_bytes() == before and mode(path) == 0o600
    # refused before writing anything: the Ed25519 half of the rotation was not left behind
    assert not (root / "keys/dkim/example.com/202611e.private").exists()

    replaced, env = keygen(cli, root, "--date", "2026-11-03", "--force")
    assert replaced.exit_code == 0, replaced.stdout
    [key] = env["data"]["keys"]
    assert key["replaced"] is True and path.read_bytes() != before and mode(path) == 0o600
    assert private_key_matches(path.read_bytes(), parse_dkim_record(key["txt_value"]))[0]
    assert not private_key_matches(before, parse_dkim_record(key["txt_value"]))[0]
    assert [p.name for p in path.parent.iterdir()] == ["202611r.private"]  # no temporary file left


def test_the_default_date_is_today(cli, root):
    write_contract(root)
    before = dt.datetime.now(dt.UTC).strftime("%Y%m")
    result, env = keygen(cli, root)
    after = dt.datetime.now(dt.UTC).strftime("%Y%m")
    assert result.exit_code == 0
    assert env["data"]["keys"][0]["selector"] in {before + "r", after + "r"}


def test_the_contracts_templates_and_a_selector_override(cli, root):
    write_contract(root, rsa_selector="mail{yyyy}{mm}{dd}", ed25519_selector="ed-{yyyymm}")
    _, env = keygen(cli, root, "--date", "2026-03-09", "--ed25519")
    assert [k["selector"] for k in env["data"]["keys"]] == ["mail20260309", "ed-202603"]
    _, env = keygen(cli, root, "--date", "2026-03-09", "--selector", "rot-{algorithm}", "--ed25519")
    assert [k["selector"] for k in env["data"]["keys"]] == ["rot-rsa", "rot-ed25519"]
    result, env = keygen(cli, root, "--selector", "manual1")
    assert result.exit_code == 0 and env["data"]["keys"][0]["record_name"] == "manual1._domainkey.example.com."


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--selector", "same", "--ed25519"], "would name both keys alike"),
        (["--selector", "bad selector"], "--selector: selector 'bad selector'"),
        (["--selector", "{yyyymm}{hash}"], "unknown placeholder {hash}"),
        (["--date", "2026-13-01"], "--date '2026-13-01' is not a date"),
        (["--domain", "not a domain"], "is not a domain name"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(cli, root, args, fragment):
    write_contract(root)
    result, env = keygen(cli, root, *args)
    assert result.exit_code == 2
    assert fragment in env["error"]["message"] + (env["error"]["hint"] or "")
    assert "Traceback" not in result.stdout + result.stderr
    assert not (root / "keys").exists()


def test_a_bad_template_in_the_contract_names_the_contract_key(cli, root):
    write_contract(root, rsa_selector="{yyyymm}/r")
    result, env = keygen(cli, root)
    assert result.exit_code == 2
    assert env["error"]["message"].startswith(f"dkim_keys.rsa_selector in {CONTRACT}: selector ")


def test_several_domains_need_domain(cli, root):
    write_contract(root, domains=("example.com", "example.org"))
    result, env = keygen(cli, root)
    assert result.exit_code == 2 and "pass --domain" in env["error"]["message"]
    assert "example.com, example.org" in env["error"]["message"]
    result, env = keygen(cli, root, "--domain", "Example.ORG.", "--date", "2026-11-03")
    assert result.exit_code == 0 and env["data"]["domain"] == "example.org"
    assert (root / "keys/dkim/example.org/202611r.private").is_file()


def test_a_domain_outside_the_contract_warns(cli, root):
    write_contract(root)
    result, env = keygen(cli, root, "--domain", "other.example", "--date", "2026-11-03")
    assert result.exit_code == 0 and env["status"] == "warn"
    check = next(c for c in env["checks"] if c["id"] == "dkim.keygen.domain_in_contract")
    assert check["status"] == "warn" and "other.example is not in the contract" in check["detail"]


def test_without_a_contract_domain_is_required_and_out_is_relative_to_the_cwd(cli, root, tmp_path, monkeypatch):
    result, env = keygen(cli, root)
    assert result.exit_code == 2 and "pass --domain" in (env["error"]["hint"] or "")
    monkeypatch.chdir(tmp_path)
    result, env = keygen(cli, root, "--domain", "example.net", "--out", "elsewhere", "--date", "2026-11-03")
    assert result.exit_code == 0, result.stdout
    path = tmp_path / "elsewhere/example.net/202611r.private"
    assert env["data"]["keys"][0]["private_key_file"] == str(path) and mode(path) == 0o600
    assert env["data"]["contract"] is None


def test_a_directory_others_can_read_is_reported_not_changed(cli, root, tmp_path):
    write_contract(root)
    shared = tmp_path / "shared-keys"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    result, env = keygen(cli, root, "--out", str(shared), "--date", "2026-11-03")
    assert result.exit_code == 0 and env["status"] == "warn"
    check = next(c for c in env["checks"] if c["id"] == "dkim.keygen.directory_private")
    assert check["actual"] == "0755" and check["subject"] == str(shared)
    assert mode(shared) == 0o755 and mode(shared / "example.com") == 0o700
