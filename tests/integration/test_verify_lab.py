"""verify.pack.run against the lab: a clean baseline passes, and breaking one thing fails exactly its gate.

The root is a copy of the lab's bindings with things of its own, so the shared lab is left as found:
the inbox is polled without flagging (other tests read UNSEEN), the Sieve script is applied to
`alerts` with a rule only this module's token matches, and the calendar and address book are this
module's own, deleted at the end. DNS changes are undone by tests/dns_update.replaced.
"""

from __future__ import annotations

import json
import shutil
import uuid
from contextlib import suppress
from pathlib import Path

import pytest
import yaml

from lab.layout import DKIM_SELECTOR, DOMAIN, MAIL_HOST
from spine_comms.protocols.dav import DavClient, DavError, discover
from spine_comms.protocols.managesieve import connect
from tests.cli_process import run_capability
from tests.dns_update import replaced
from tests.receipt_audit import validate_receipt
from tests.silent_server import closed_port, silent_listener

pytestmark = pytest.mark.lab
SIEVE_USER = "alerts"
COMMUNICATIONS = ["D901", "D902", "D903", "D904", "D905", "D906", "D907", "D908", "D909"]


def run(root: Path, capability: str, *args: str, timeout: float = 120) -> tuple[int, dict]:
    done = run_capability(root, capability, *args, timeout=timeout)
    return done.code, done.envelope


def verify(root: Path, *args: str) -> tuple[int, dict]:
    code, envelope = run(root, "verify.pack.run", "communications", *args)
    validate_receipt(Path(envelope["receipt"]) / "receipt.json")
    return code, envelope


def shown(envelope: dict) -> str:
    return "\n".join(envelope["summary"])


def sieve_session(lab: dict):
    user = lab["users"][SIEVE_USER]
    return connect(lab["host"], lab["ports"]["sieve"], login=user["login"], password=user["password"],
                   server_name=MAIL_HOST, ca_file=lab["tls"]["ca_cert"], timeout=10)  # fmt: skip


def radicale(lab: dict) -> DavClient:
    ops = lab["users"]["ops"]
    return DavClient(lab["urls"]["radicale_tls"], username=ops["login"], password=ops["password"],
                     ca_file=lab["tls"]["ca_cert"], server_name=lab["tls"]["server_name"])  # fmt: skip


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def baseline(root: Path) -> None:
    """Run what the gates read, so that the communications pack has every reason to pass."""
    for capability, *args in (
        ("mail.auth.probe", "--execute"),
        ("sieve.apply", "--execute", "--yes"),
        ("calendar.caldav.ensure", "--execute"),
        ("contacts.carddav.ensure", "--execute"),
        ("calendar.sync.execute", "--execute", "--yes"),
        ("communications.inbox.poll", "--enqueue"),
    ):
        code, envelope = run(root, capability, *args)
        assert code == 0, f"{capability}: {json.dumps(envelope.get('checks'), indent=1)[:3000]}"


@pytest.fixture(scope="module")
def verify_root(lab, lab_root, tmp_path_factory):
    token = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp("verify") / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    bindings = root / "bindings"
    collection = f"verify-{token}"

    def inbox(contract):
        for box in contract["mailboxes"]:
            box["after_enqueue"] = {"action": "none"}

    def dav(contract):
        contract["calendars"] = [{"id": collection, "display_name": "Verify", "components": ["VEVENT"]}]
        contract["addressbooks"] = [{"id": f"{collection}-book", "display_name": "Verify"}]  # Radicale: one home
        contract["sync"]["target_calendar"] = collection

    def sieve(contract):
        contract["mailboxes"] = [{"id": SIEVE_USER, "script": f"verify-{token}", "rules": [{
            "name": "verify", "anyof": [{"header": "Subject", "contains": f"verify-{token}"}],
            "actions": [{"fileinto": f"Verify-{token}", "create": True}, {"stop": True}],
        }]}]  # fmt: skip

    edit_yaml(bindings / "communications.inbox.contract.yaml", inbox)
    edit_yaml(bindings / "communications.dav.contract.yaml", dav)
    edit_yaml(bindings / "communications.sieve.contract.yaml", sieve)
    try:
        baseline(root)
        yield {"root": root, "token": token, "collection": collection, "script": f"verify-{token}"}
    finally:
        with sieve_session(lab) as client:
            for name, active in client.listscripts():
                if name.startswith(f"verify-{token}"):
                    if active:
                        client.setactive("")
                    client.deletescript(name)
        with radicale(lab) as client:
            for kind, name in (("caldav", collection), ("carddav", f"{collection}-book")):
                with suppress(DavError):
                    client.request("DELETE", f"{discover(client, kind).home_set}{name}/")


def test_a_clean_baseline_passes_every_gate_with_junit_and_prometheus_files(verify_root, tmp_path):
    import xmlschema
    from prometheus_client.parser import text_string_to_metric_families

    from tests.unit.test_verify_reports import JUNIT_XSD

    junit, prom = tmp_path / "verify.xml", tmp_path / "verify.prom"
    code, envelope = verify(verify_root["root"], "--junit", str(junit), "--prom", str(prom))
    data = envelope["data"]
    assert code == 0, shown(envelope)
    assert [g["id"] for g in data["gates"]] == COMMUNICATIONS
    assert {g["status"] for g in data["gates"]} == {"PASS"}, shown(envelope)
    keys = data["summary"]
    assert (keys["total"], keys["pass"], keys["fail"], keys["skipped"], keys["failing_ids"]) == (9, 9, 0, 0, [])
    assert data["elapsed_seconds"] <= data["budget_seconds"] == 60 and data["budget_exceeded"] is False
    assert data["max_in_flight"] > 1
    for gate in data["gates"]:
        assert gate["run_key"] and gate["capability"] and gate["age_seconds"] is not None, gate
        if gate["id"] != "D902":  # the live gates wrote a receipt of their own, valid like any other
            validate_receipt(Path(gate["receipt"]) / "receipt.json")
    assert all(line.split(":")[0].split()[1] == "PASS" for line in envelope["summary"][:9])

    xmlschema.XMLSchema(JUNIT_XSD).validate(str(junit))
    suite = xmlschema.XMLSchema(JUNIT_XSD).to_dict(str(junit))["testsuite"][0]
    assert suite["@name"] == "communications" and suite["@failures"] == 0
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    passing = [s for s in families["spine_comms_verify_gate_status"].samples if s.labels["status"] == "pass"]
    assert sorted(s.labels["gate"] for s in passing if s.value == 1) == COMMUNICATIONS
    last = {s.labels["capability"] for s in families["spine_comms_capability_last_success_timestamp_seconds"].samples}
    assert {"mail.auth.probe", "sieve.status", "calendar.sync.plan"} <= last


def break_dkim(lab, ctx):
    # A revoked key (empty p=) where the lab's key was: mail signed with it no longer verifies.
    return replaced(lab, f"{DKIM_SELECTOR}._domainkey.{DOMAIN}", "TXT", ["v=DKIM1; k=rsa; p="])


class _Undo:
    """A context manager around a break whose repair is a capability run (or a plain function)."""

    def __init__(self, do, undo):
        self.do, self.undo = do, undo

    def __enter__(self):
        self.do()

    def __exit__(self, *exc):
        self.undo()


def break_sieve(lab, ctx):
    def edit_by_hand():
        with sieve_session(lab) as client:
            client.putscript(ctx["script"], "# edited by hand\nkeep;\n")
            client.setactive(ctx["script"])

    return _Undo(edit_by_hand, lambda: run(ctx["root"], "sieve.apply", "--execute", "--yes"))


def break_inbox(lab, ctx):
    folders = list((ctx["root"] / "mailroom" / "state" / "communications" / "inbox").glob("*/folders/*.json"))
    assert folders, "the baseline poll wrote checkpoints"

    def stale():
        for path in folders:
            checkpoint = json.loads(path.read_text())
            checkpoint["last_poll_at"] = "2020-01-01T00:00:00Z"  # the cron stopped long ago
            path.write_text(json.dumps(checkpoint))

    return _Undo(stale, lambda: run(ctx["root"], "communications.inbox.poll", "--enqueue"))


def break_calendar(lab, ctx):
    def delete():
        with radicale(lab) as client:
            client.request("DELETE", f"{discover(client, 'caldav').home_set}{ctx['collection']}/")

    def restore():
        for capability, *args in (("calendar.caldav.ensure", "--execute"),
                                  ("calendar.sync.execute", "--execute", "--yes")):  # fmt: skip
            assert run(ctx["root"], capability, *args)[0] == 0, capability

    return _Undo(delete, restore)


@pytest.mark.parametrize(
    ("breakage", "gate", "skipped"),
    [
        (break_dkim, "D901", []),
        (break_sieve, "D908", []),
        (break_inbox, "D907", []),
        # The sync gate depends on the CalDAV gate: with the calendar gone it is SKIP, not a second FAIL.
        (break_calendar, "D904", ["D906"]),
    ],
    ids=["dkim-record", "sieve-edited-by-hand", "stale-inbox-checkpoint", "deleted-calendar"],
)
def test_breaking_one_thing_fails_exactly_its_gate(lab, verify_root, breakage, gate, skipped):
    root = verify_root["root"]
    run(root, "communications.inbox.poll", "--enqueue")  # the inbox gate wants a poll in the last 5 minutes
    with breakage(lab, verify_root):
        code, envelope = verify(root)
        data = envelope["data"]
        assert code == 1, shown(envelope)
        assert data["summary"]["failing_ids"] == [gate], shown(envelope)
        assert data["summary"]["skipped_ids"] == skipped, shown(envelope)
        assert f"{gate} FAIL: " in shown(envelope)
    code, envelope = verify(root, "--gate", gate, *[arg for s in skipped for arg in ("--gate", s)])
    assert code == 0 and envelope["data"]["summary"]["pass"] == 1 + len(skipped), shown(envelope)


def test_an_unreachable_server_fails_its_gate_and_a_refused_password_fails_it_too(lab, verify_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(verify_root["root"] / "bindings", root / "bindings")
    contract = root / "bindings" / "communications.sieve.contract.yaml"
    original = contract.read_text()

    edit_yaml(contract, lambda c: c["mailboxes"][0].update(managesieve={"port": closed_port()}))
    code, envelope = run(root, "verify.pack.run", "communications", "--gate", "D908")
    gate = envelope["data"]["gates"][0]
    assert code == 1 and gate["status"] == "FAIL" and gate["could_not_evaluate"] == "unreachable", gate
    assert "sieve.status could not evaluate (unreachable, exit 3)" in gate["detail"]

    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password")
    contract.write_text(original)
    edit_yaml(contract, lambda c: c["mailboxes"][0].update(password_ref=f"file:{wrong}"))
    code, envelope = run(root, "verify.pack.run", "communications", "--gate", "D908")
    gate = envelope["data"]["gates"][0]
    assert code == 1 and gate["status"] == "FAIL" and gate["could_not_evaluate"] == "credentials_refused", gate
    assert "not-the-password" not in json.dumps(envelope)
    # The password is the sentinel: neither verify's receipt nor the gate's own run may hold it.
    leaked = [p for p in (root / "receipts").rglob("*") if p.is_file() and b"not-the-password" in p.read_bytes()]
    assert leaked == [] and (root / "receipts").is_dir()


def _imap_elsewhere(verify_root, tmp_path: Path, port: int) -> Path:
    """A copy of the verify root whose IMAP (IMAPS and IMAP ports of the stack contract) is `port`: the
    client's view of an IMAP server that is stopped (a closed port) or hung (a silent listener)."""
    root = tmp_path / "root"
    shutil.copytree(verify_root["root"], root)  # its checkpoints and its fresh probe receipt too

    def move(contract):
        for entry in contract["pilot"]["ports"]:
            if entry["protocol"] in ("IMAPS", "IMAP"):
                entry["host"] = entry["container"] = port

    edit_yaml(root / "bindings" / "communications.stack.contract.yaml", move)
    return root


def test_with_imap_stopped_the_pack_fails_naming_the_gates_it_could_not_evaluate(lab, verify_root, tmp_path):
    junit = tmp_path / "verify.xml"
    root = _imap_elsewhere(verify_root, tmp_path, closed_port())
    code, envelope = verify(root, "--junit", str(junit))
    data = envelope["data"]
    assert code == 1 and envelope["status"] == "fail", shown(envelope)
    # The inbox gate and the TLS gate (stack.status cannot reach IMAP) FAIL; nothing turns into a SKIP.
    assert data["summary"]["failing_ids"] == ["D903", "D907"] == data["summary"]["not_evaluated_ids"], shown(envelope)
    assert data["summary"]["skipped"] == 0
    assert {g["id"]: g["could_not_evaluate"] for g in data["gates"] if g["status"] == "FAIL"} == {
        "D903": "unreachable", "D907": "unreachable"}  # fmt: skip
    assert "not evaluated: D903 (unreachable), D907 (unreachable)" in envelope["summary"]
    import xmlschema

    from tests.unit.test_verify_reports import JUNIT_XSD

    suite = xmlschema.XMLSchema(JUNIT_XSD).to_dict(str(junit))["testsuite"][0]
    assert (suite["@errors"], suite["@failures"]) == (2, 0)


def test_a_hung_imap_server_fails_within_the_ring_budget(lab, verify_root, tmp_path):
    with silent_listener() as hung:
        root = _imap_elsewhere(verify_root, tmp_path, hung)
        code, envelope = verify(root, "--gate", "D903", "--gate", "D907")
    data = envelope["data"]
    assert code == 1 and [g["could_not_evaluate"] for g in data["gates"]] == ["timeout", "timeout"], shown(envelope)
    # Each connection waits the stack contract's 5 s, not IMAP's old 30 s: well inside the 60 s ring.
    assert data["budget_exceeded"] is False and data["elapsed_seconds"] < 30, data["elapsed_seconds"]
