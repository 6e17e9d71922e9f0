"""The four stalwart.* capabilities through the CLI, against the fake in both API forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from spine_comms.core.result import Check, Status
from tests.stalwart_fake import FakeStalwart, generate_private_pem

SENTINEL = "Zq9-sentinel-Horse-Battery-7731"


def make_root(tmp_path: Path, fake: FakeStalwart, *, secret: str | None = None, stalwart: dict | None = None,
              domains: list[dict] | None = None, **extra) -> Path:  # fmt: skip
    """A root whose mail-auth contract points at the fake, with the secret in a file."""
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True, exist_ok=True)
    secret_file = tmp_path / "stalwart.secret"
    secret_file.write_text((secret or fake.admin_password) + "\n")
    section = {"url": fake.url, "username": fake.admin_login, "secret_ref": f"file:{secret_file}",
               "timeout_seconds": 5}  # fmt: skip
    if fake.tls:
        section.update(ca_file=fake.ca_file, server_name=fake.hostname)
    contract = {"version": 1, "domains": domains or [{"domain": "example.test"}], **extra}
    if stalwart is not None or "stalwart" not in extra:
        contract["stalwart"] = {**section, **(stalwart or {})}
    (root / "bindings/communications.mailauth.contract.yaml").write_text(yaml.safe_dump(contract))
    return root


def run(cli, root: Path, capability: str, *args: str, env: dict | None = None):
    result = cli(capability, "--root", str(root), "--json", *args, env=env)
    assert result.stdout.lstrip().startswith("{"), result.stdout + result.stderr
    return result, result.json()


def checks(envelope: dict) -> dict[tuple[str, str], dict]:
    return {(c["id"], c["subject"]): c for c in envelope["checks"]}


def receipt_text(envelope: dict) -> str:
    directory = Path(envelope["receipt"])
    return "".join(p.read_text() for p in directory.iterdir() if p.is_file())


# ---- stalwart.status


def test_status_ok_in_both_forms(cli, tmp_path, fake):
    result, env = run(cli, make_root(tmp_path, fake), "stalwart.status")
    assert result.exit_code == 0, result.stdout
    assert env["status"] == "ok"
    assert env["data"]["form"] == {"0.16": "jmap", "0.15": "rest"}[fake.mode]
    assert env["data"]["live"] is True and env["data"]["ready"] is True
    assert env["data"]["domains"] == ["example.test"]
    found = checks(env)
    assert found[("stalwart.domain.present", "example.test")]["status"] == "ok"
    assert {"stalwart.health.live", "stalwart.health.ready", "stalwart.api.auth", "stalwart.api.form"} <= {
        c["id"] for c in env["checks"]
    }


def test_status_fails_when_not_ready_or_a_domain_is_missing(cli, tmp_path, fake):
    fake.ready = False
    root = make_root(tmp_path, fake, domains=[{"domain": "example.test"}, {"domain": "missing.test"}])
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 1 and env["status"] == "fail"
    found = checks(env)
    assert found[("stalwart.health.ready", fake.url)]["status"] == "fail"
    assert found[("stalwart.domain.present", "missing.test")]["status"] == "fail"


def test_status_with_refused_credentials_is_error_3_after_health_and_hides_the_secret(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, secret=SENTINEL)
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 3 and env["status"] == "error"
    found = {c["id"]: c for c in env["checks"]}
    assert found["stalwart.health.live"]["status"] == "ok"
    assert found["stalwart.api.auth"]["status"] == "error"
    assert fake.admin_login in found["stalwart.api.auth"]["detail"]
    for text in (result.stdout, result.stderr, receipt_text(env)):
        assert SENTINEL not in text


@pytest.mark.parametrize("capability", ["stalwart.dkim.status", "stalwart.dns.expected", "stalwart.dkim.ensure"])
def test_refused_credentials_exit_3_naming_the_account_never_the_secret(cli, tmp_path, capability):
    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        result, env = run(cli, make_root(tmp_path, fake, secret=SENTINEL), capability)
    assert result.exit_code == 3 and env["status"] == "error"
    assert fake.admin_login in env["error"]["message"] and "401" in env["error"]["message"]
    for text in (result.stdout, result.stderr, receipt_text(env)):
        assert SENTINEL not in text


def test_unreachable_is_exit_3(cli, tmp_path):
    with FakeStalwart("0.16") as fake:
        root = make_root(tmp_path, fake)  # the fake stops: nothing listens on its port any more
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 3 and env["error"]["reference"] == "could-not-evaluate"
    assert "stalwart.url" in (env["error"]["hint"] or "")


def test_tls_with_server_name_and_ca_from_the_contract(cli, tmp_path, fake_tls):
    result, env = run(cli, make_root(tmp_path, fake_tls), "stalwart.status")
    assert result.exit_code == 0, result.stdout
    # Without server_name the certificate (mail.example.test) does not match 127.0.0.1.
    root = make_root(tmp_path, fake_tls, stalwart={"server_name": None})
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 3 and "TLS" in env["error"]["message"]


def test_no_stalwart_section_is_a_usage_error_naming_the_key(cli, tmp_path):
    with FakeStalwart("0.16") as fake:
        root = make_root(tmp_path, fake, stalwart=None)
        contract = root / "bindings/communications.mailauth.contract.yaml"
        data = yaml.safe_load(contract.read_text())
        del data["stalwart"]
        contract.write_text(yaml.safe_dump(data))
        result, env = run(cli, root, "stalwart.dkim.status")
    assert result.exit_code == 2
    assert "stalwart" in env["error"]["message"] and "mailauth" in env["error"]["message"]


def test_url_username_and_secret_overrides(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, stalwart={"url": "http://127.0.0.1:9", "username": "nobody"})
    args = ["--url", fake.url, "--username", fake.admin_login]
    result, env = run(cli, root, "stalwart.status", *args, env={"STALWART_ADMIN_SECRET": fake.admin_password})
    assert result.exit_code == 0, result.stdout
    assert env["data"]["url"] == fake.url


def test_api_key_alone_is_sent_as_bearer(cli, tmp_path):
    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        token = fake.add_api_key()
        root = make_root(tmp_path, fake, stalwart={"username": None})
        result, env = run(cli, root, "stalwart.status", env={"STALWART_ADMIN_SECRET": token})
    assert result.exit_code == 0, result.stdout
    assert token not in result.stdout + receipt_text(env)


def test_a_missing_secret_is_exit_2(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, stalwart={"secret_ref": "env:NOT_SET_ANYWHERE"})
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 2 and "NOT_SET_ANYWHERE" in env["error"]["message"]


# ---- stalwart.dkim.status


def test_dkim_status_ok_with_rsa_and_lists_the_keys(cli, tmp_path, fake):
    fake.add_dkim("example.test", "rsa")
    result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.status")
    assert result.exit_code == 0, result.stdout
    (key,) = env["data"]["domains"]["example.test"]["keys"]
    assert key["algorithm"] == "rsa-sha256" and key["stage"] == "active"
    assert key["public_key"] == fake.dkim_public_keys("example.test")[key["selector"]]
    found = checks(env)
    assert found[("stalwart.dkim.present.rsa-sha256", "example.test")]["status"] == "ok"
    assert found[("stalwart.dkim.present.ed25519-sha256", "example.test")]["status"] == "ok"  # optional
    assert "PRIVATE KEY" not in result.stdout + receipt_text(env)


def test_dkim_status_fails_without_an_active_rsa_key(cli, tmp_path, fake):
    fake.add_dkim("example.test", "ed25519")
    result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.status")
    assert result.exit_code == 1 and env["status"] == "fail"
    check = checks(env)[("stalwart.dkim.present.rsa-sha256", "example.test")]
    assert check["status"] == "fail" and "unsigned" in check["detail"]


def test_dkim_status_pending_rsa_is_not_signing_yet(cli, tmp_path):
    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        fake.add_dkim("example.test", "rsa", selector="next", stage="pending")
        result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.status")
    check = checks(env)[("stalwart.dkim.present.rsa-sha256", "example.test")]
    assert result.exit_code == 1 and check["status"] == "fail" and "next (pending)" in check["detail"]


def test_dkim_status_warns_when_the_contract_does_not_list_the_active_selector(cli, tmp_path, fake):
    fake.add_dkim("example.test", "rsa", selector="s-live" if fake.mode == "0.16" else None)
    root = make_root(tmp_path, fake, domains=[{"domain": "example.test", "dkim_selectors": ["other"]}])
    result, env = run(cli, root, "stalwart.dkim.status")
    assert result.exit_code == 0 and env["status"] == "warn"
    assert checks(env)[("stalwart.dkim.selectors_in_contract", "example.test")]["status"] == "warn"
    assert cli("stalwart.dkim.status", "--root", str(root), "--json", "--strict").exit_code == 1


def test_domain_option_must_name_a_contract_domain(cli, tmp_path, fake):
    result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.status", "--domain", "other.test")
    assert result.exit_code == 2 and "other.test" in env["error"]["message"]


# ---- stalwart.dkim.ensure


def test_ensure_is_a_dry_run_by_default(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, dkim_keys={"rsa_selector": "{yyyymm}r", "ed25519_selector": "{yyyymm}e"})
    result, env = run(cli, root, "stalwart.dkim.ensure")
    assert result.exit_code == 0 and env["status"] == "warn"
    assert env["data"]["mode"] == "dry-run"
    planned = {(a["algorithm"], a["action"]) for a in env["data"]["actions"]}
    assert planned == {("rsa-sha256", "create"), ("ed25519-sha256", "create")}
    assert all(a["selector"] and not a["done"] for a in env["data"]["actions"])
    assert fake.dkim_public_keys("example.test") == {}  # nothing created
    assert not any(r["method"] == "POST" and r["path"] == "/api/dkim" for r in fake.requests)


def test_ensure_execute_needs_approval(cli, tmp_path, fake):
    result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.ensure", "--execute")
    assert result.exit_code == 2 and "approval" in env["error"]["message"]
    assert "--yes" in env["error"]["hint"]
    assert fake.dkim_public_keys("example.test") == {}


def test_ensure_execute_creates_the_missing_keys(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, dkim_keys={"rsa_selector": "t{yyyymm}r", "ed25519_selector": "t{yyyymm}e"})
    result, env = run(cli, root, "stalwart.dkim.ensure", "--execute", "--yes")
    assert result.exit_code == 0, result.stdout
    assert env["status"] == "ok" and env["data"]["mode"] == "execute"
    assert all(a["done"] for a in env["data"]["actions"])
    held = fake.dkim_public_keys("example.test")
    assert len(held) == 2 and all(s.startswith("t") for s in held)
    # Again: nothing left to do.
    result, env = run(cli, root, "stalwart.dkim.ensure", "--execute", "--yes")
    assert result.exit_code == 0 and {a["action"] for a in env["data"]["actions"]} == {"none"}


def test_ensure_approved_by_the_spines_variable_and_only_rsa(cli, tmp_path, fake):
    root = make_root(tmp_path, fake)
    result, env = run(cli, root, "stalwart.dkim.ensure", "--execute", "--algorithm", "rsa",
                      env={"SPINE_CAP_AUTO_APPROVE": "yes"})  # fmt: skip
    assert result.exit_code == 0, result.stdout
    assert [a["algorithm"] for a in env["data"]["actions"]] == ["rsa-sha256"]
    assert len(fake.dkim_public_keys("example.test")) == 1


def test_ensure_partial_when_one_creation_is_refused(cli, tmp_path):
    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        fake.add_domain("other.test")
        # 0.15 holds one key per algorithm under rsa-<domain>: an ed25519 signature id already taken by a
        # key of another domain makes the server refuse (fieldAlreadyExists) while the rest succeeds.
        pem = generate_private_pem("ed25519")
        fake._rest_add_signature("x.test", "ed25519", "s", pem, sig_id="ed25519-other.test")
        domains = [{"domain": "example.test"}, {"domain": "other.test"}]
        result, env = run(cli, make_root(tmp_path, fake, domains=domains), "stalwart.dkim.ensure", "--execute",
                          "--yes")  # fmt: skip
    assert result.exit_code == 1 and env["status"] == "partial"
    refused = checks(env)[("stalwart.dkim.ensure.ed25519-sha256", "other.test")]
    assert refused["status"] == "fail" and "fieldAlreadyExists" in refused["detail"]
    assert checks(env)[("stalwart.dkim.ensure.rsa-sha256", "other.test")]["status"] == "ok"


def test_ensure_blocks_a_domain_the_server_lacks(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, domains=[{"domain": "example.test"}, {"domain": "absent.test"}])
    result, env = run(cli, root, "stalwart.dkim.ensure")
    assert result.exit_code == 1
    blocked = [a for a in env["data"]["actions"] if a["domain"] == "absent.test"]
    assert blocked and all(a["action"] == "blocked" for a in blocked)


def test_ensure_waits_for_asynchronously_generated_keys(cli, tmp_path, monkeypatch):
    """A key that shows up only a moment after it was created (as with a 0.16 Task) is waited for."""
    from spine_comms.protocols.stalwart.jmap import JmapAdmin

    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        original = JmapAdmin.create_dkim
        held_back: list = []

        def create_later(self, domain, algorithm, selector=None):
            original(self, domain, algorithm, selector)
            sig = next(s for s in fake.signatures.values() if s["selector"] == selector)
            held_back.append(fake.signatures.pop(sig["id"]))  # hide it, put it back 0.4 s later
            import threading

            threading.Timer(0.4, lambda: fake.signatures.update({sig["id"]: sig})).start()

        monkeypatch.setattr(JmapAdmin, "create_dkim", create_later)
        result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.ensure", "--execute", "--yes",
                          "--algorithm", "rsa")  # fmt: skip
    assert held_back and result.exit_code == 0, result.stdout
    assert checks(env)[("stalwart.dkim.ensure.rsa-sha256", "example.test")]["status"] == "ok"


def test_ensure_reports_keys_that_never_show_up(cli, tmp_path, monkeypatch):
    from spine_comms.protocols.stalwart.jmap import JmapAdmin

    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        monkeypatch.setattr(JmapAdmin, "create_dkim", lambda self, *a, **k: None)
        result, env = run(cli, make_root(tmp_path, fake), "stalwart.dkim.ensure", "--execute", "--yes",
                          "--algorithm", "rsa", "--wait", "0.3")  # fmt: skip
    assert result.exit_code == 1
    assert "not listed" in checks(env)[("stalwart.dkim.ensure.rsa-sha256", "example.test")]["detail"]


# ---- stalwart.dns.expected


def test_dns_expected_normalized_in_both_forms(cli, tmp_path, fake):
    fake.add_dkim("example.test", "rsa")
    result, env = run(cli, make_root(tmp_path, fake), "stalwart.dns.expected")
    assert result.exit_code == 0, result.stdout
    records = env["data"]["domains"]["example.test"]
    assert {"type": "MX", "name": "example.test", "value": "10 mail.example.test"} in records
    ((selector, public),) = fake.dkim_public_keys("example.test").items()
    dkim = {
        "type": "TXT",
        "name": f"{selector}._domainkey.example.test",
        "value": f"v=DKIM1; k=rsa; h=sha256; p={public}",
    }
    assert dkim in records
    assert checks(env)[("stalwart.dns.expected", "example.test")]["status"] == "ok"


def test_dns_expected_for_a_domain_the_server_lacks_fails(cli, tmp_path, fake):
    root = make_root(tmp_path, fake, domains=[{"domain": "absent.test"}])
    result, env = run(cli, root, "stalwart.dns.expected")
    assert result.exit_code == 1
    assert checks(env)[("stalwart.domain.present", "absent.test")]["status"] == "fail"


def test_text_output_ends_with_the_status_line(cli, tmp_path, fake):
    result = cli("stalwart.dns.expected", "--root", str(make_root(tmp_path, fake)))
    assert result.exit_code == 0
    assert result.stdout.rstrip().splitlines()[-1] == "status: ok"
    assert "MX" in result.stdout


# ---- server_view, for dns.mail.status


def test_server_view_gives_keys_and_expected_records(tmp_path, fake):
    from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, MailAuthContract
    from spine_comms.core.context import RunContext
    from spine_comms.core.options import GlobalOptions
    from spine_comms.core.root import find_root
    from spine_comms.email_auth.stalwart_admin import server_view

    fake.add_dkim("example.test", "rsa")
    root = make_root(tmp_path, fake, domains=[{"domain": "example.test"}, {"domain": "absent.test"}])
    ctx = RunContext(capability="dns.mail.status", root=find_root(str(root), {}), options=GlobalOptions(), env={})
    view = server_view(ctx, ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract))
    assert view.form in ("jmap", "rest")
    assert [k.algorithm for k in view.dkim_keys] == ["rsa-sha256"]
    assert any(r.type == "MX" for r in view.expected)
    assert {r.name.split(".", 1)[-1] for r in view.expected if "_domainkey" in r.name} == {"_domainkey.example.test"}
    assert fake.admin_password in ctx.redactor._values  # registered for redaction


def test_server_view_unreachable_is_could_not_evaluate(tmp_path):
    from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, MailAuthContract
    from spine_comms.core.context import RunContext
    from spine_comms.core.errors import CouldNotEvaluate
    from spine_comms.core.options import GlobalOptions
    from spine_comms.core.root import find_root
    from spine_comms.email_auth.stalwart_admin import server_view

    with FakeStalwart("0.16") as fake:
        root = make_root(tmp_path, fake)
    ctx = RunContext(capability="dns.mail.status", root=find_root(str(root), {}), options=GlobalOptions(), env={})
    with pytest.raises(CouldNotEvaluate):
        server_view(ctx, ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract))


def test_check_helpers_are_json_friendly():
    # Every check's expected/actual/evidence must survive json.dumps (the receipt is JSON).
    from spine_comms.email_auth.stalwart_admin import _key_check
    from spine_comms.protocols.stalwart import DkimKey

    check: Check = _key_check(
        "example.test", "rsa-sha256", [DkimKey("example.test", "s", "rsa-sha256", "AA", "retired")]
    )
    assert check.status is Status.FAIL
    json.dumps(check.to_dict())


def test_the_stack_contracts_ca_file_is_used_when_the_section_names_none(cli, tmp_path, fake_tls):
    root = make_root(tmp_path, fake_tls, stalwart={"ca_file": None})
    stack = {
        "version": 1,
        "pilot": {"stage": "test", "ports": [], "mailboxes": [{"id": "ops", "address": "ops@example.test"}]},
        "endpoints": {"host": "127.0.0.1", "server_name": fake_tls.hostname, "ca_file": fake_tls.ca_file},
    }
    (root / "bindings/communications.stack.contract.yaml").write_text(yaml.safe_dump(stack))
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 0, result.stdout
    (root / "bindings/communications.stack.contract.yaml").unlink()
    result, env = run(cli, root, "stalwart.status")
    assert result.exit_code == 3 and "certificate verify failed" in env["error"]["message"]


# ---- 0.15: what really signs, keys never echoed, API keys in the forms 0.15 takes


def test_015_a_key_under_a_hand_made_id_never_signs_and_fails(cli, tmp_path):
    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        fake.add_dkim("example.test", "rsa", selector="legacy", signature_id="example-rsa")
        root = make_root(tmp_path, fake)
        result, env = run(cli, root, "stalwart.dkim.status")
        (key,) = env["data"]["domains"]["example.test"]["keys"]
        assert key["stage"] == "unused" and key["signature_id"] == "example-rsa"
        assert "never example-rsa" in key["note"]
        assert result.exit_code == 1 and env["status"] == "fail"
        rsa = checks(env)[("stalwart.dkim.present.rsa-sha256", "example.test")]
        assert rsa["status"] == "fail" and "unsigned" in rsa["detail"]
        # ensure does not call it present: it plans the key under the id that signs.
        result, env = run(cli, root, "stalwart.dkim.ensure", "--algorithm", "rsa")
        assert checks(env)[("stalwart.dkim.ensure.rsa-sha256", "example.test")]["status"] == "warn"
        result, env = run(cli, root, "stalwart.dkim.ensure", "--algorithm", "rsa", "--execute", "--yes")
        assert result.exit_code == 0, result.stdout
        assert "rsa-example.test" in fake.signatures


def test_015_a_changed_signing_rule_decides_which_key_signs(cli, tmp_path):
    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        fake.add_dkim("example.test", "rsa", selector="202601r")  # rsa-example.test
        fake.add_dkim("example.test", "rsa", selector="mine", signature_id="mykey")
        fake.dkim_sign = {"auth.dkim.sign.0000.if": "is_local_domain('*', sender_domain)",
                          "auth.dkim.sign.0000.then": "['mykey']", "auth.dkim.sign.0001.else": "false"}  # fmt: skip
        root = make_root(tmp_path, fake)
        _, env = run(cli, root, "stalwart.dkim.status")
        stages = {k["signature_id"]: k["stage"] for k in env["data"]["domains"]["example.test"]["keys"]}
        assert stages == {"mykey": "active", "rsa-example.test": "unused"}
        # A rule the client cannot evaluate is undetermined, never active.
        fake.dkim_sign = {"auth.dkim.sign": "key_get('dkim', sender_domain)"}
        result, env = run(cli, root, "stalwart.dkim.status")
        stages = {k["signature_id"]: k["stage"] for k in env["data"]["domains"]["example.test"]["keys"]}
        assert set(stages.values()) == {"undetermined"} and result.exit_code == 1
        # A rule that never names rsa-<domain>: a new key there would not sign either, so ensure says so.
        fake.dkim_sign = {"auth.dkim.sign": "'mykey'"}
        del fake.signatures["mykey"]
        posts_before = sum(1 for r in fake.requests if r["method"] == "POST")
        result, env = run(cli, root, "stalwart.dkim.ensure", "--algorithm", "rsa", "--execute", "--yes")
        ensured = checks(env)[("stalwart.dkim.ensure.rsa-sha256", "example.test")]
        assert result.exit_code == 1 and ensured["status"] == "fail" and "would not sign" in ensured["detail"]
        assert sum(1 for r in fake.requests if r["method"] == "POST") == posts_before  # nothing created


def test_015_an_existing_private_key_echoed_by_the_server_never_reaches_output(cli, tmp_path):
    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        fake.add_dkim("example.test", "rsa", selector="old")
        # A 0.9-era rsa-sha1 signature under the default id: not listed as a key, so ensure creates one,
        # and 0.15 answers fieldAlreadyExists with the existing private key as `value`.
        fake.signatures["rsa-example.test"]["algorithm"] = "rsa-sha1"
        pem = fake.signatures["rsa-example.test"]["private-key"]
        root = make_root(tmp_path, fake)
        result, env = run(cli, root, "stalwart.dkim.ensure", "--algorithm", "rsa", "--execute", "--yes")
        assert checks(env)[("stalwart.dkim.ensure.rsa-sha256", "example.test")]["status"] == "fail"
        body = pem.splitlines()[2]
        everything = result.stdout + result.stderr + receipt_text(env)
        assert "fieldAlreadyExists" in everything
        assert body not in everything and "PRIVATE KEY-----" not in everything


def test_015_api_key_by_name_and_as_an_api_token_and_a_hint_for_a_bare_secret(cli, tmp_path):
    import base64

    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        secret = fake.add_api_key(name="spine-ops")
        root = make_root(tmp_path, fake, stalwart={"username": "spine-ops"}, secret=secret)
        result, _ = run(cli, root, "stalwart.status")
        assert result.exit_code == 0, result.stdout  # Basic keyname:secret
        token = "api_" + base64.b64encode(f"spine-ops:{secret}".encode()).decode()
        root = make_root(tmp_path, fake, stalwart={"username": None}, secret=token)
        result, _ = run(cli, root, "stalwart.status")
        assert result.exit_code == 0, result.stdout  # Bearer api_<base64(name:secret)>
        root = make_root(tmp_path, fake, stalwart={"username": None}, secret=secret)
        result, env = run(cli, root, "stalwart.status")
        assert result.exit_code == 3 and "stalwart.username to the key's name" in result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr + receipt_text(env)
