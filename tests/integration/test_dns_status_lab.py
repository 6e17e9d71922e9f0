"""dns.mail.status, dkim.check and dmarc.check against the lab's Knot, good and broken by dynamic update."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.cli_process import run_capability
from tests.dns_update import replaced
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab

# Eleven DNS-querying terms, each naming a host that exists: only the count is wrong.
SPF_11_LOOKUPS = (
    "v=spf1 a mx a:mx.spine.test a:imap.spine.test a:smtp.spine.test a:dav.spine.test a:ns.spine.test"
    " a:mail.spine.test mx:spine.test a:spine.test exists:spine.test -all"
)


def run(root: Path, capability: str, *args: str) -> tuple[int, dict]:
    done = run_capability(root, capability, *args)
    assert_one_verdict_per_subject(done.envelope)
    return done.code, done.envelope


def assert_one_verdict_per_subject(envelope: dict) -> None:
    """Every run of every test here: no check id reports twice on one subject (say, both ok and fail)."""
    seen: dict[tuple[str, str], str] = {}
    for check in envelope.get("checks", []):
        key = (check["id"], check["subject"])
        assert key not in seen, f"{key} has two verdicts: {seen[key]} and {check['status']}: {check['detail']}"
        seen[key] = check["status"]


def by_id(envelope: dict, check_id: str) -> list[dict]:
    return [c for c in envelope["checks"] if c["id"] == check_id]


def test_the_lab_zone_is_ok_with_expected_actual_and_raw_records(lab_root):
    code, env = run(lab_root, "dns.mail.status")
    assert code == 0, json.dumps([c for c in env["checks"] if c["status"] != "ok"], indent=1)
    assert env["status"] == "ok"
    ids = {c["id"] for c in env["checks"]}
    for wanted in (
        "dns.mx.present", "dns.mx.target_resolves", "dns.mx.mail_host", "dns.host.address", "dns.host.ptr",
        "dns.host.fcrdns", "dns.spf.record", "dns.spf.syntax", "dns.spf.lookups", "dns.spf.void_lookups",
        "dns.spf.all", "dns.dkim.selector_present", "dns.dkim.key", "dns.dmarc.record", "dns.dmarc.policy",
        "dns.dmarc.rua", "dns.mta_sts.record", "dns.mta_sts.policy", "dns.mta_sts.mx", "dns.tls_rpt.record",
    ):  # fmt: skip
        assert wanted in ids, wanted
    (mx,) = by_id(env, "dns.mx.mail_host")
    assert mx["expected"] == "mx.spine.test" and mx["actual"] == ["mx.spine.test"]
    (key,) = by_id(env, "dns.dkim.key")
    assert key["actual"]["bits"] == 2048 and key["evidence"].startswith("v=DKIM1")
    (policy,) = by_id(env, "dns.mta_sts.policy")
    assert policy["subject"].startswith("https://mta-sts.spine.test:") and policy["actual"]["mode"] == "enforce"
    assert policy["evidence"]["http_status"] == 200 and "version: STSv1" in policy["evidence"]["body"]
    (sts_mx,) = by_id(env, "dns.mta_sts.mx")
    assert sts_mx["actual"]["mx_hosts"] == ["mx.spine.test"] and not sts_mx["actual"]["unmatched_hosts"]
    (spf,) = by_id(env, "dns.spf.lookups")
    assert spf["actual"] == 1  # the mx mechanism (its targets' addresses are not counted: RFC 7208 4.6.4)
    receipt = Path(env["receipt"])
    validate_receipt(receipt / "receipt.json")
    assert json.loads((receipt / "receipt.json").read_text())["checks"]


@pytest.mark.parametrize(
    ("name", "rdtype", "values", "capability", "check_id", "status", "code"),
    [
        ("spine.test", "TXT", [SPF_11_LOOKUPS], "dns.mail.status", "dns.spf.lookups", "fail", 1),
        ("spine.test", "TXT", ["v=spf1 mx -all", "v=spf1 a -all"], "dns.mail.status", "dns.spf.record", "fail", 1),
        ("spine.test", "TXT", ["v=spf1 mx ~all"], "dns.mail.status", "dns.spf.all", "fail", 1),
        ("_dmarc.spine.test", "TXT", [], "dmarc.check", "dns.dmarc.record", "fail", 1),
        ("_dmarc.spine.test", "TXT", ["v=DMARC1; p=none; rua=mailto:dmarc@spine.test"], "dmarc.check",
         "dns.dmarc.policy", "warn", 0),
        ("_dmarc.spine.test", "TXT", ["v=DMARC1; p=reject; rua=mailto:dmarc@example.net"], "dmarc.check",
         "dns.dmarc.rua_authorized", "error", 3),  # Knot refuses example.net: could not evaluate, not a pass
        ("lab._domainkey.spine.test", "TXT", ["v=DKIM1; k=rsa; p="], "dkim.check", "dns.dkim.key", "fail", 1),
        ("_mta-sts.spine.test", "TXT", [], "dns.mail.status", "dns.mta_sts.record", "fail", 1),
        ("mx.spine.test", "A", [], "dns.mail.status", "dns.mx.target_resolves", "fail", 1),
    ],
    ids=["spf-11-lookups", "spf-two-records", "spf-softfail", "dmarc-missing", "dmarc-p-none",
         "dmarc-rua-unanswerable", "dkim-revoked", "mta-sts-missing", "mx-target-gone"],
)  # fmt: skip
def test_broken_dns_is_reported_with_the_right_check(lab, lab_root, name, rdtype, values, capability, check_id,
                                                     status, code):  # fmt: skip
    with replaced(lab, name, rdtype, values):
        got_code, env = run(lab_root, capability)
    checks = by_id(env, check_id)
    assert checks, [c["id"] for c in env["checks"]]
    assert status in [c["status"] for c in checks], checks
    assert got_code == code, env["status"]


def test_p_none_fails_strict_runs(lab, lab_root):
    with replaced(lab, "_dmarc.spine.test", "TXT", ["v=DMARC1; p=none; rua=mailto:dmarc@spine.test"]):
        code, env = run(lab_root, "dmarc.check", "--strict")
    assert env["status"] == "warn" and code == 1


def test_a_wrong_dkim_key_in_dns_fails_the_private_key_proof(lab, lab_root, tmp_path):
    private = Path(lab["lab_dir"]) / "dkim" / f"{lab['dkim']['selector']}.private"
    code, env = run(lab_root, "dkim.check", "--key", str(private))
    assert code == 0, by_id(env, "dns.dkim.private_key")
    (proof,) = by_id(env, "dns.dkim.private_key")
    assert proof["status"] == "ok"

    from spine_comms.mail.dkim_record import generate_key

    _, other_record = generate_key("rsa")
    with replaced(lab, "lab._domainkey.spine.test", "TXT", [other_record]):
        code, env = run(lab_root, "dkim.check", "--key", str(private))
    (proof,) = by_id(env, "dns.dkim.private_key")
    assert proof["status"] == "fail" and code == 1
    pem = private.read_text()
    body = "".join(pem.strip().splitlines()[1:-1])
    receipt = Path(env["receipt"])
    for text in (json.dumps(env), *(p.read_text() for p in receipt.iterdir())):
        assert body[:40] not in text


def test_a_silent_dns_server_is_an_error_not_a_pass(lab_root):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never answers
        port = silent.getsockname()[1]
        code, env = run(lab_root, "dns.mail.status", "--dns-server", f"127.0.0.1:{port}", "--timeout", "0.3")
    assert code == 3 and env["status"] == "error"
    assert all(c["status"] == "error" for c in env["checks"]), [c for c in env["checks"] if c["status"] != "error"]
    assert "timeout" in env["checks"][0]["detail"]


def test_a_domain_outside_the_zone_is_refused_and_reported_as_error(lab_root, tmp_path):
    contract = lab_root / "bindings" / "communications.mailauth.contract.yaml"
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    for path in (lab_root / "bindings").iterdir():
        (root / "bindings" / path.name).write_text(path.read_text())
    (root / "bindings" / contract.name).write_text("version: 1\ndomains:\n  - domain: example.org\n")
    code, env = run(root, "dmarc.check")
    assert code == 3 and env["status"] == "error"
    assert "REFUSED" in env["checks"][0]["detail"]


def test_an_unknown_domain_option_is_a_usage_error(lab_root):
    code, env = run(lab_root, "dns.mail.status", "--domain", "nope.example")
    assert code == 2
    assert "not in the mail-auth contract" in env["error"]["message"]


@pytest.fixture(params=["0.16", "0.15"])
def root_with_stalwart(request, lab, lab_root, tmp_path):
    """The lab's root plus a `stalwart:` section pointing at the fake, which signs with the lab's real key."""
    from tests.stalwart_fake import FakeStalwart

    with FakeStalwart(request.param) as fake:
        root = tmp_path / "root"
        (root / "bindings").mkdir(parents=True)
        for path in (lab_root / "bindings").iterdir():
            (root / "bindings" / path.name).write_text(path.read_text())
        secret = tmp_path / "stalwart.secret"
        secret.write_text(fake.admin_password)
        contract = root / "bindings" / "communications.mailauth.contract.yaml"
        contract.write_text(
            contract.read_text()
            + f"stalwart:\n  url: {fake.url}\n  username: {fake.admin_login}\n  secret_ref: file:{secret}\n"
        )
        fake.add_domain("spine.test")
        yield root, fake


def test_dns_agrees_with_the_key_stalwart_signs_with(lab, root_with_stalwart):
    root, fake = root_with_stalwart
    lab_key = (Path(lab["lab_dir"]) / "dkim" / "lab.private").read_text()
    fake.add_dkim("spine.test", "rsa", selector="lab", pem=lab_key)
    code, env = run(root, "dns.mail.status")
    (match,) = by_id(env, "dns.dkim.server_match")
    assert match["status"] == "ok", match
    assert code == 0 and env["data"]["stalwart"]["dkim_keys"][0]["selector"] == "lab"
    assert fake.admin_password not in json.dumps(env)


def test_a_dns_key_that_is_not_the_servers_is_the_classic_outage(lab, root_with_stalwart):
    root, fake = root_with_stalwart
    fake.add_dkim("spine.test", "rsa", selector="lab")  # a new key: DNS still has the old one
    code, env = run(root, "dkim.check")
    (match,) = by_id(env, "dns.dkim.server_match")
    assert match["status"] == "fail" and "not the key Stalwart signs with" in match["detail"]
    assert code == 1
