"""sieve.status and sieve.apply against the lab's Dovecot Pigeonhole, proven by delivery.

Mail goes in through the lab's Postfix (submission, DKIM, DMARC, LMTP) and is filtered
at delivery by the script sieve.apply put there. The tests use the `noreply` user,
whose scripts no other test touches, and leave it with no script at all.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from lab.layout import MAIL_HOST
from spine_comms.protocols.managesieve import connect
from tests.cli_process import run_capability
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
USER = "noreply"


def run(root: Path, capability: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    done = run_capability(root, capability, *args, env=env)
    return done.code, done.envelope, done.stderr


def checks(envelope: dict) -> dict[str, dict]:
    return {c["id"]: c for c in envelope["checks"]}


def alert_rule(folder: str, token: str) -> dict:
    return {
        "name": "alerts",
        "anyof": [{"header": "Subject", "contains": f"[ALERT] {token}"}, {"address": "From", "is": "alerts@spine.test",
                                                                          "part": "all"}],
        "actions": [{"addflag": "\\Flagged"}, {"fileinto": folder, "create": True}, {"stop": True}],
    }  # fmt: skip


@pytest.fixture
def sieve_lab(lab, lab_root, tmp_path):
    """(root, write(rules, **mailbox keys), session()): a root of our own, noreply cleaned up afterwards."""
    root = tmp_path / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    contract = root / "bindings" / "communications.sieve.contract.yaml"

    def write(rules: list[dict], **extra) -> None:
        box = {"id": USER, "script": "spine-routing", "rules": rules, **extra}
        contract.write_text(yaml.safe_dump({"version": 1, "mailboxes": [box]}, sort_keys=False))

    def session():
        user = lab["users"][USER]
        return connect(lab["host"], lab["ports"]["sieve"], login=user["login"], password=user["password"],
                       server_name=MAIL_HOST, ca_file=lab["tls"]["ca_cert"], timeout=10)  # fmt: skip

    with session() as client:
        assert client.listscripts() == [], "noreply should start with no Sieve script"
    yield root, write, session
    with session() as client:
        client.setactive("")
        for name, _ in client.listscripts():
            client.deletescript(name)


def imap_messages(lab, folder: str) -> list[tuple[bytes, tuple]]:
    from imapclient import IMAPClient

    from tests.conftest import _AsMailHost

    tls = _AsMailHost(__import__("ssl").create_default_context(cafile=lab["tls"]["ca_cert"]))
    with IMAPClient(lab["host"], port=lab["ports"]["imaps"], ssl_context=tls, timeout=10) as imap:
        imap.login(lab["users"][USER]["login"], lab["users"][USER]["password"])
        if not imap.folder_exists(folder):
            return []
        imap.select_folder(folder, readonly=True)
        uids = imap.search()
        fetched = imap.fetch(uids, ["BODY.PEEK[HEADER]", "FLAGS"]) if uids else {}
        return [(data[b"BODY[HEADER]"], data[b"FLAGS"]) for data in fetched.values()]


def test_applied_rules_file_alert_mail_flagged_and_leave_the_rest_in_inbox(lab, sieve_lab, send_mail, read_mailbox):
    root, write, session = sieve_lab
    token = uuid.uuid4().hex[:10]
    folder = f"Alerts-{token}"
    write([alert_rule(folder, token)])

    code, dry, _ = run(root, "sieve.apply")
    assert code == 0 and dry["status"] == "warn"
    assert dry["data"]["mailboxes"][USER]["diff"].count("\n+") >= 8
    with session() as client:
        assert client.listscripts() == [], "a dry run changes nothing"

    code, env, stderr = run(root, "sieve.apply", "--execute", "--yes")
    assert code == 0, json.dumps(env["checks"], indent=1) + stderr
    assert checks(env)["sieve.apply.script"]["status"] == "ok"
    validate_receipt(Path(env["receipt"]) / "receipt.json")
    code, status, _ = run(root, "sieve.status")
    assert code == 0 and status["data"]["mailboxes"][USER]["rules_live"] == ["alerts"]

    send_mail("ops", USER, subject=f"[ALERT] {token} disk full")
    send_mail("ops", USER, subject=f"routine {token}")
    read_mailbox(USER, folder, wait_for=token)
    read_mailbox(USER, "INBOX", wait_for=f"routine {token}")
    filed = imap_messages(lab, folder)
    assert len(filed) == 1 and f"[ALERT] {token}".encode() in filed[0][0]
    assert b"\\Flagged" in filed[0][1]
    inbox = [headers for headers, _ in imap_messages(lab, "INBOX") if token.encode() in headers]
    assert len(inbox) == 1 and f"routine {token}".encode() in inbox[0]


def test_drift_is_reported_with_a_diff_cleared_by_apply_and_rollback_restores(sieve_lab):
    root, write, _ = sieve_lab
    first = [alert_rule("Alerts", "v1")]
    write(first)
    assert run(root, "sieve.apply", "--execute", "--yes")[0] == 0
    second = [*first, {"name": "digest", "allof": [{"header": "List-Id", "contains": "digest"}],
                       "actions": [{"fileinto": "Digests", "create": True}]}]  # fmt: skip
    write(second)

    code, env, _ = run(root, "sieve.status")
    assert code == 1 and env["status"] == "fail"
    found = checks(env)
    assert found["sieve.script.equal"]["status"] == "fail"
    assert "+# rule: digest" in found["sieve.script.equal"]["evidence"]["diff"]
    assert "digest" in found["sieve.script.rules"]["detail"]

    code, env, _ = run(root, "sieve.apply", "--execute", "--yes")
    assert code == 0, json.dumps(env["checks"], indent=1)
    assert run(root, "sieve.status")[0] == 0

    code, env, _ = run(root, "sieve.apply", "--rollback")
    assert code == 0 and "would restore spine-routing" in checks(env)["sieve.apply.rollback"]["detail"]
    code, env, _ = run(root, "sieve.apply", "--rollback", "--execute", "--yes")
    assert code == 0, json.dumps(env["checks"], indent=1)
    code, env, _ = run(root, "sieve.status")
    assert code == 1 and env["data"]["mailboxes"][USER]["rules_live"] == ["alerts"]
    write(first)
    assert run(root, "sieve.status")[0] == 0, "the rollback put the first script back, byte for byte"


def test_rollback_to_nothing_deactivates(sieve_lab):
    root, write, session = sieve_lab
    write([alert_rule("Alerts", "x")])
    assert run(root, "sieve.apply", "--execute", "--yes")[0] == 0
    code, env, _ = run(root, "sieve.apply", "--rollback", "--execute", "--yes")
    assert code == 0, json.dumps(env["checks"], indent=1)
    with session() as client:
        assert not any(active for _, active in client.listscripts())


def test_an_extension_the_server_lacks_is_refused_by_name(sieve_lab):
    root, write, session = sieve_lab
    write([{"name": "junk", "anyof": [{"header": "X-Spam", "is": "yes"}],
            "actions": [{"fileinto": "Junk", "specialuse": "\\Junk"}]}])  # fmt: skip
    code, env, _ = run(root, "sieve.apply", "--execute", "--yes")
    assert code == 1 and env["status"] == "fail"
    extensions = checks(env)["sieve.extensions"]
    assert extensions["status"] == "fail" and "special-use" in extensions["detail"]
    assert extensions["evidence"]["missing"] == ["special-use"]
    with session() as client:
        assert client.listscripts() == [], "nothing is uploaded when refused"

    code, env, _ = run(root, "sieve.status")
    assert code == 1 and checks(env)["sieve.extensions"]["status"] == "fail"


def test_a_server_side_syntax_error_comes_back_with_the_server_message_and_line(sieve_lab):
    root, write, session = sieve_lab
    write([{"name": "junk", "anyof": [{"header": "X-Spam", "is": "yes"}],
            "actions": [{"fileinto": "Junk", "specialuse": "\\Junk"}]}])  # fmt: skip
    # Told to trust that the server has special-use, sieve.apply meets Pigeonhole's CHECKSCRIPT verdict.
    code, env, _ = run(root, "sieve.apply", "--execute", "--yes", "--allow-extension", "special-use")
    assert code == 1
    verdict = checks(env)["sieve.apply.checkscript"]
    assert verdict["status"] == "fail"
    assert "unknown Sieve capability" in verdict["evidence"]["text"]
    assert verdict["evidence"]["line"] == 3  # the require line, after the two header comment lines
    with session() as client:
        assert client.listscripts() == []
        answer = client.checkscript('require "fileinto";\nfileinto :bogus "x";\n')
    assert answer.status == "NO" and "line 2" in answer.text


def test_a_wrong_password_is_exit_3_and_never_shown(sieve_lab):
    root, write, _ = sieve_lab
    write([alert_rule("Alerts", "x")])
    sentinel = "sentinel-" + uuid.uuid4().hex
    for capability, args in (("sieve.status", ()), ("sieve.apply", ("--execute", "--yes"))):
        code, env, stderr = run(root, capability, *args, env={"STALWART_NOREPLY_PASSWORD": sentinel})
        assert code == 3 and env["status"] == "error"
        receipt = "".join(p.read_text() for p in Path(env["receipt"]).iterdir())
        for text in (json.dumps(env), stderr, receipt):
            assert sentinel not in text
        assert "login refused" in stderr or "login refused" in json.dumps(env)


@pytest.mark.parametrize("name", ["vacation", "Vacation"])
def test_vacation_is_refused_as_a_script_name(sieve_lab, name):
    root, write, _ = sieve_lab
    write([alert_rule("Alerts", "x")], script=name)
    for capability in ("sieve.status", "sieve.apply"):
        code, env, stderr = run(root, capability)
        assert code == 2
        assert "reserved" in stderr + json.dumps(env)
        assert "Traceback" not in stderr


def test_the_script_size_limit_comes_from_the_contract_where_the_server_does_not_state_it(sieve_lab):
    root, write, _ = sieve_lab
    write([alert_rule("Alerts", "size")], managesieve={"max_script_bytes": 1024 * 1024})
    code, envelope, _ = run(root, "sieve.status")
    size = checks(envelope)["sieve.limits.size"]
    assert size["status"] == "ok" and size["evidence"]["limit"] == 1024 * 1024, size
    assert size["evidence"]["limit_from"] == "managesieve.max_script_bytes"
    # A limit below the rendered script: HAVESPACE (Dovecot's, which does check size) says yes, the limit no.
    write([alert_rule("Alerts", "size")], managesieve={"max_script_bytes": 64})
    code, envelope, _ = run(root, "sieve.status")
    size = checks(envelope)["sieve.limits.size"]
    assert code == 1 and size["status"] == "fail" and "over the 64-byte script limit" in size["detail"], size
    # Dovecot states nothing and its HAVESPACE checks the size: with no contract limit, HAVESPACE judges.
    write([alert_rule("Alerts", "size")])
    _, envelope, _ = run(root, "sieve.status")
    assert checks(envelope)["sieve.limits.size"]["evidence"]["limit_from"] == "HAVESPACE"
