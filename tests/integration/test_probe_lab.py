"""mail.auth.probe against the lab: Postfix submission signed by OpenDKIM, the inbound hop where
OpenDKIM verifies and OpenDMARC writes Authentication-Results (mail.spine.test), Dovecot IMAP."""

from __future__ import annotations

import base64
import json
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.cli_process import run_capability
from tests.dns_update import current, set_records
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
KEY_NAME = "lab._domainkey.spine.test"


def probe(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    done = run_capability(root, "mail.auth.probe", "--execute", *args, env=env, timeout=90)
    return done.code, done.envelope, done.stderr


def checks_by_id(envelope: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for check in envelope["checks"]:
        out.setdefault(check["id"], []).append(check)
    return out


def receipt_text(envelope: dict) -> str:
    directory = Path(envelope["receipt"])
    return "\n".join(p.read_text() for p in sorted(directory.iterdir()))


@contextmanager
def dkim_key_replaced(lab: dict, record: str):
    """Serve another key at lab._domainkey with a 1 s TTL, then put the real one back.

    tests/dns_update.replaced would publish it with TTL 60, and OpenDKIM's resolver
    (libunbound) caches what it fetched: a later test would see the receiver say
    dkim=fail for a minute. With TTL 1 the wrong key leaves its cache at once."""
    before = current(lab, KEY_NAME, "TXT")
    set_records(lab, KEY_NAME, "TXT", [record], ttl=1)
    try:
        yield
    finally:
        set_records(lab, KEY_NAME, "TXT", before)
        time.sleep(1.1)  # any copy of the wrong key cached by the receiver has expired
    assert current(lab, KEY_NAME, "TXT") == before


def other_key_record() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def test_the_probe_proves_dkim_and_dmarc_pass(lab, lab_root, lab_credentials):
    code, env, stderr = probe(lab_root)
    assert code == 0, json.dumps(env["checks"], indent=1)
    assert env["status"] == "ok"
    checks = checks_by_id(env)
    assert {c["status"] for group in checks.values() for c in group} == {"ok"}
    (signature,) = checks["probe.dkim.signature"]
    assert signature["subject"] == "d=spine.test s=lab" and signature["actual"] == "pass"
    assert checks["probe.dmarc"][0]["actual"] == "pass"
    assert "mail.spine.test says dkim=pass" in checks["probe.authresults.trusted"][0]["detail"]

    data = env["data"]
    (sig,) = data["evaluation"]["signatures"]
    assert (sig["d"], sig["s"], sig["a"], sig["result"]) == ("spine.test", "lab", "rsa-sha256", "pass")
    assert data["evaluation"]["dmarc"]["result"] == "pass" and data["evaluation"]["dmarc"]["policy"] == "reject"
    trusted = data["evaluation"]["authentication_results"]["trusted"]
    assert {ar["authserv_id"] for ar in trusted} == {lab["authserv_id"]}
    assert {(r["method"], r["result"]) for ar in trusted for r in ar["results"]} >= {
        ("dkim", "pass"),
        ("dmarc", "pass"),
    }
    assert data["evaluation"]["authentication_results"]["untrusted"] == []

    # The raw received message is in the receipt, token, signature and receiver's headers included.
    receipt = Path(env["receipt"]) / "receipt.json"
    validate_receipt(receipt)
    raw = json.loads(receipt.read_text())["envelope"]["data"]["received"]["raw"]
    assert f"X-Spine-Probe: {data['token']}" in raw and "DKIM-Signature:" in raw
    assert f"Message-ID: {data['message_id']}" in raw and data["message_id"].endswith("@spine.test>")
    assert "Authentication-Results: mail.spine.test" in raw
    # The password (read from the contract's file: reference) appears nowhere.
    password = lab_credentials["ops"]
    assert password not in json.dumps(env) + stderr + receipt_text(env)


def test_a_tampered_dkim_key_fails_naming_the_signature_and_why(lab, lab_root):
    with dkim_key_replaced(lab, other_key_record()):
        code, env, _ = probe(lab_root)
    assert code == 1 and env["status"] == "fail", json.dumps(env["checks"], indent=1)
    checks = checks_by_id(env)
    (signature,) = checks["probe.dkim.signature"]
    assert signature["status"] == "fail" and signature["subject"] == "d=spine.test s=lab"
    assert "did not verify with the key published at lab._domainkey.spine.test" in signature["detail"]
    assert signature["evidence"]["key_record"] != current(lab, KEY_NAME, "TXT")[0]  # judged on the tampered key
    assert checks["probe.dkim"][0]["status"] == "fail"
    # DMARC may still pass on the receiver's aligned SPF result; DKIM alone makes the probe fail.
    assert env["data"]["evaluation"]["dmarc"]["dkim_aligned"] == []


def test_a_forged_authentication_results_is_reported_untrusted_and_ignored(lab_root):
    forged = "Authentication-Results: evil.example; dkim=pass header.d=evil.example; dmarc=pass"
    code, env, _ = probe(lab_root, "--header", forged)
    assert code == 0 and env["status"] == "warn", json.dumps(env["checks"], indent=1)
    checks = checks_by_id(env)
    (untrusted,) = checks["probe.authresults.untrusted"]
    assert untrusted["status"] == "warn" and "evil.example" in untrusted["detail"]
    assert untrusted["actual"] == ["evil.example"]
    results = env["data"]["evaluation"]["authentication_results"]
    assert [ar["authserv_id"] for ar in results["untrusted"]] == ["evil.example"]
    assert "evil.example" not in json.dumps(results["trusted"])
    assert {c["status"] for c in checks["probe.dkim"] + checks["probe.dmarc"]} == {"ok"}


def test_a_wrong_password_is_could_not_evaluate_and_never_shown(lab_root):
    sentinel = "Sentinel-Wrong-Pa55word-7f3a"
    code, env, stderr = probe(lab_root, env={"STALWART_OPS_PASSWORD": sentinel})
    assert code == 3 and env["status"] == "error"
    assert env["error"]["reference"] == "could-not-evaluate"
    assert "auth: login refused for ops@spine.test" in env["error"]["message"]
    assert "STALWART_OPS_PASSWORD" in env["error"]["hint"]
    shown = json.dumps(env) + stderr + receipt_text(env) + (lab_root / "mailroom/state/ledger.csv").read_text()
    assert sentinel not in shown
    assert base64.b64encode(sentinel.encode()).decode() not in shown


def test_the_spine_password_variable_is_used_and_redacted(lab_root, lab_credentials):
    password = lab_credentials["ops"]
    code, env, stderr = probe(lab_root, "--to", "ops@spine.test", env={"STALWART_OPS_PASSWORD": password})
    assert code == 0, json.dumps(env, indent=1)
    assert password not in json.dumps(env) + stderr + receipt_text(env)


def test_an_address_outside_the_stack_without_imap_access_is_a_usage_error(lab_root):
    code, env, _ = probe(lab_root, "--to", "someone@example.net")
    assert code == 2 and "outside the stack" in env["error"]["message"]


def test_an_external_target_is_read_with_the_contracts_imap_access(lab, lab_root, tmp_path):
    """The probe target outside the stack (the lab's `sink`, not a stack mailbox), over IMAP STARTTLS."""
    sink = lab["users"]["sink"]
    secret = tmp_path / "sink.password"
    secret.write_text(sink["password"])
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    for path in (lab_root / "bindings").iterdir():
        (root / "bindings" / path.name).write_text(path.read_text())
    contract = root / "bindings" / "communications.mailauth.contract.yaml"
    external = (
        f"  target: {{address: {sink['address']}, imap_host: 127.0.0.1, imap_port: {lab['ports']['imap']},"
        f" imap_security: starttls, server_name: {lab['server_name']}, ca_file: '{lab['tls']['ca_cert']}',"
        f" login: {sink['login']},"
        f" password_ref: 'file:{secret}'}}"
    )
    contract.write_text(contract.read_text().replace("  target: {mailbox: ops}", external))
    code, env, stderr = probe(root)
    assert code == 0, json.dumps(env, indent=1)
    assert checks_by_id(env)["probe.delivered"][0]["status"] == "ok"
    assert sink["address"] in json.dumps(env["data"])
    assert sink["password"] not in json.dumps(env) + stderr + receipt_text(env)


# The protocol clients underneath, on the other transport (STARTTLS) and on their failure paths.


def test_starttls_submission_and_imap_and_a_deadline_that_passes(lab, lab_credentials):
    from spine_comms.protocols.imap import ImapError, ImapTarget, wait_for_header
    from spine_comms.protocols.smtp import SmtpError, submit

    ca, ports, password = lab["tls"]["ca_cert"], lab["ports"], lab_credentials["alerts"]
    token = f"starttls-{time.time_ns()}"
    message = (
        f"From: alerts@spine.test\nTo: alerts@spine.test\nSubject: {token}\nX-Spine-Probe: {token}\n"
        f"Message-ID: <{token}@spine.test>\nDate: Sat, 21 Nov 2026 10:00:00 +0000\n\nbody\n"
    ).encode()
    reply = submit(
        "127.0.0.1", ports["submission"], security="starttls", server_name="mail.spine.test", ca_file=ca,
        login="alerts@spine.test", password=password, sender="alerts@spine.test",
        recipients=["alerts@spine.test"], message=message, timeout=10,
    )  # fmt: skip
    assert reply.code == 250 and reply.enhanced == "2.0.0"
    target = ImapTarget("127.0.0.1", ports["imap"], "starttls", "mail.spine.test", ca, "alerts@spine.test", password)
    found = wait_for_header(target, folder="INBOX", header="X-Spine-Probe", value=token, deadline=time.monotonic() + 15)
    assert found is not None and f"Subject: {token}".encode() in found.raw
    started = time.monotonic()
    missing = wait_for_header(
        target, folder="INBOX", header="X-Spine-Probe", value="never-sent", deadline=started + 0.6, poll_interval=0.2
    )
    assert missing is None and 0.5 < time.monotonic() - started < 5

    with pytest.raises(SmtpError) as refused:  # submission will not relay for a sender the login does not own
        submit(
            "127.0.0.1", ports["submissions"], security="tls", server_name="mail.spine.test", ca_file=ca,
            login="alerts@spine.test", password=password, sender="ops@spine.test",
            recipients=["alerts@spine.test"], message=message,
        )  # fmt: skip
    assert refused.value.refused_message and refused.value.reply.code == 553
    with pytest.raises(SmtpError) as wrong_name:  # the certificate is checked against server_name
        submit(
            "127.0.0.1", ports["submissions"], security="tls", server_name="mail.example.org", ca_file=ca,
            login=None, password=None, sender="alerts@spine.test", recipients=["x@spine.test"], message=message,
        )  # fmt: skip
    assert wrong_name.value.stage == "tls"
    with pytest.raises(ImapError) as bad_login:
        wait_for_header(
            ImapTarget("127.0.0.1", ports["imaps"], "tls", "mail.spine.test", ca, "alerts@spine.test", "wrong!"),
            folder="INBOX", header="X-Spine-Probe", value=token, deadline=time.monotonic() + 1,
        )  # fmt: skip
    assert bad_login.value.stage == "auth" and "wrong!" not in str(bad_login.value)
