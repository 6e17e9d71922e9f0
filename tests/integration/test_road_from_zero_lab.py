"""The road a new operator walks, from an empty directory to a green verify pack, against the lab.

`spine-comms init` writes the contracts for a server called mail.spine.test; the operator then fills
in what only they know (where the server listens, its CA, the DNS it publishes, a mailbox for Sieve
tests, the management API's address) exactly where the generated comments say, keeps the secrets as
the references init wrote (`env:STALWART_OPS_PASSWORD` ...), checks the contracts, runs the
capabilities that set the server up and leave evidence, and ends with `verify.pack.run
communications` green. The lab's Stalwart is the tests' fake of its management API (the one part no
registry here ships); everything else is a real server on 127.0.0.1.

The calendar, address book and Sieve script are this test's own (a token in their names) and are
removed at the end, so the shared lab is left as found; the inbox is polled without flagging.
"""

from __future__ import annotations

import subprocess
import uuid
from contextlib import suppress
from pathlib import Path

import pytest
import yaml

from lab.layout import DOMAIN, MAIL_HOST
from spine_comms.protocols.dav import DavClient, DavError, discover
from spine_comms.protocols.managesieve import connect
from tests.cli_process import SPINE_COMMS, clean_env, run_capability
from tests.receipt_audit import validate_receipt
from tests.stalwart_fake import FakeStalwart

pytestmark = pytest.mark.lab
COMMUNICATIONS_GATES = {"D901", "D902", "D903", "D904", "D905", "D906", "D907", "D908", "D909"}


def edit(path: Path, change) -> None:
    """The operator's edit of one contract (here through YAML; by hand it keeps the comments)."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def lab_contract(lab_root: Path, name: str) -> dict:
    return yaml.safe_load((lab_root / "bindings" / name).read_text())


@pytest.fixture
def stalwart(lab):
    """The operator's Stalwart management API: the fake, signing with the lab's real DKIM key."""
    with FakeStalwart("0.16", hostname=f"mx.{DOMAIN}", default_domain=DOMAIN) as fake:
        fake.add_domain(DOMAIN)
        fake.add_dkim(DOMAIN, "rsa", selector="lab", pem=(Path(lab["lab_dir"]) / "dkim" / "lab.private").read_text())
        yield fake


def test_from_an_empty_directory_to_a_green_verify_pack(lab, lab_root, stalwart, tmp_path):
    token = uuid.uuid4().hex[:10]
    root = tmp_path / "my-server"
    users = lab["users"]
    env = {
        "STALWART_OPS_PASSWORD": users["ops"]["password"],
        "STALWART_ALERTS_PASSWORD": users["alerts"]["password"],
        "STALWART_ADMIN_SECRET": stalwart.admin_password,
    }

    def step(capability: str, *args: str) -> dict:
        done = run_capability(root, capability, *args, env=env, timeout=180)
        assert done.code == 0, f"{capability}: {done.stdout[-3000:]}"
        validate_receipt(Path(done.envelope["receipt"]) / "receipt.json")
        return done.envelope

    # 1. init: a ready root, nothing outside it.
    done = subprocess.run(
        [SPINE_COMMS, "init", str(root), "--domain", DOMAIN, "--mail-host", MAIL_HOST, "--mailbox", "ops",
         "--mailbox", "alerts"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "contracts.check" in done.stdout and (root / ".gitignore").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-server"]  # init littered nothing beside it

    # 2. The contracts as init wrote them validate before anything is filled in.
    checked = step("contracts.check")
    assert checked["status"] == "ok", checked["summary"]

    # 3. What only the operator knows, where the comments say.
    bindings = root / "bindings"
    lab_stack = lab_contract(lab_root, "communications.stack.contract.yaml")
    lab_auth = lab_contract(lab_root, "communications.mailauth.contract.yaml")
    lab_dav = lab_contract(lab_root, "communications.dav.contract.yaml")
    lab_inbox = lab_contract(lab_root, "communications.inbox.contract.yaml")

    def stack(contract):
        contract["pilot"]["ports"] = lab_stack["pilot"]["ports"]  # where this server listens
        contract["endpoints"] = lab_stack["endpoints"]  # 127.0.0.1, its CA, its DNS server
        assert [m["password_ref"] for m in contract["pilot"]["mailboxes"]] == [
            "env:STALWART_OPS_PASSWORD", "env:STALWART_ALERTS_PASSWORD"]  # fmt: skip

    def mailauth(contract):
        ours, theirs = contract["domains"][0], lab_auth["domains"][0]
        for key in ("mail_host", "mail_host_addresses", "dkim_selectors", "dmarc", "mta_sts", "tls_rpt"):
            ours[key] = theirs[key]
        contract["mta_sts_fetch"] = lab_auth["mta_sts_fetch"]
        contract["stalwart"].update(url=stalwart.url, username=stalwart.admin_login)
        contract["probe"].update(trusted_authserv_id=lab_auth["probe"]["trusted_authserv_id"], timeout_seconds=30)

    def dav(contract):
        contract["accounts"] = lab_dav["accounts"][:1]  # the calendar server (Radicale here)
        contract["calendars"] = [{"id": f"road-{token}", "display_name": "Road", "components": ["VEVENT"]}]
        contract["addressbooks"] = [{"id": f"road-{token}-book", "display_name": "Road"}]
        contract["sync"]["target_calendar"] = f"road-{token}"

    def inbox(contract):
        contract["policy"]["trusted_authserv_id"] = lab_inbox["policy"]["trusted_authserv_id"]
        for box in contract["mailboxes"]:
            box["after_enqueue"] = {"action": "none"}  # other tests read the lab's UNSEEN

    def sieve(contract):
        box = contract["mailboxes"][0]
        box.update(id="alerts", script=f"road-{token}")
        box["rules"] = [{"name": "road", "anyof": [{"header": "Subject", "contains": f"road-{token}"}],
                         "actions": [{"fileinto": f"Road-{token}", "create": True}, {"stop": True}]}]  # fmt: skip

    edit(bindings / "communications.stack.contract.yaml", stack)
    edit(bindings / "communications.mailauth.contract.yaml", mailauth)
    edit(bindings / "communications.dav.contract.yaml", dav)
    edit(bindings / "communications.inbox.contract.yaml", inbox)
    edit(bindings / "communications.sieve.contract.yaml", sieve)
    try:
        # 4. Checked again, now filled in: valid, and each contract names what it feeds.
        checked = step("contracts.check")
        assert checked["status"] == "ok", checked["summary"]
        assert "verify.pack.run" in str(checked["data"])

        # 5. The server as it should be, and the evidence the gates read.
        assert step("communications.stack.status")["status"] in ("ok", "warn")
        assert step("dns.mail.status")["status"] in ("ok", "warn")
        assert step("stalwart.status")["status"] == "ok"
        step("mail.auth.probe", "--execute")
        step("sieve.apply", "--execute", "--yes")
        step("calendar.caldav.ensure", "--execute")
        step("contacts.carddav.ensure", "--execute")
        step("calendar.sync.execute", "--execute", "--yes")
        step("communications.inbox.poll", "--enqueue")

        # 6. The verdict: every gate of the communications pack passed, none skipped.
        verdict = step("verify.pack.run", "communications")
        assert verdict["status"] == "ok", "\n".join(verdict["summary"])
        gates = {g["id"]: g["status"] for g in verdict["data"]["gates"]}
        assert set(gates) == COMMUNICATIONS_GATES and set(gates.values()) == {"PASS"}, gates
    finally:
        _remove_what_the_road_made(lab, token)


def _remove_what_the_road_made(lab: dict, token: str) -> None:
    alerts, ops = lab["users"]["alerts"], lab["users"]["ops"]
    with connect(lab["host"], lab["ports"]["sieve"], login=alerts["login"], password=alerts["password"],
                 server_name=MAIL_HOST, ca_file=lab["tls"]["ca_cert"], timeout=10) as client:  # fmt: skip
        for name, active in client.listscripts():
            if name.startswith(f"road-{token}"):
                if active:
                    client.setactive("")
                client.deletescript(name)
    with DavClient(lab["urls"]["radicale_tls"], username=ops["login"], password=ops["password"],
                   ca_file=lab["tls"]["ca_cert"], server_name=lab["tls"]["server_name"]) as client:  # fmt: skip
        for kind, name in (("caldav", f"road-{token}"), ("carddav", f"road-{token}-book")):
            with suppress(DavError):
                client.request("DELETE", f"{discover(client, kind).home_set}{name}/")
