"""calendar.caldav.* and contacts.carddav.* against the lab's Radicale (HTTPS, logins) and Xandikos.

Collections are named with a uuid and deleted afterwards: one lab serves a whole test worker.
Hostile servers (a redirect or a principal on another host, huge bodies) are tiny local HTTP
servers on 127.0.0.1 and 127.0.0.2, both loopback.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import yaml

from spine_comms.protocols.dav import DavClient, DavError, discover
from tests.cli_process import run_capability
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
CONTRACT = "communications.dav.contract.yaml"
KINDS = {"caldav": ("calendar.caldav.status", "calendar.caldav.ensure"),
         "carddav": ("contacts.carddav.status", "contacts.carddav.ensure")}  # fmt: skip


def run(root: Path, capability: str, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    done = run_capability(root, capability, *args, env=env)
    return done.code, done.envelope, done.stdout + done.stderr


def checks(envelope: dict, check_id: str, subject: str | None = None) -> list[dict]:
    return [c for c in envelope["checks"] if c["id"] == check_id and (subject is None or c["subject"] == subject)]


def root_with(lab_root: Path, tmp_path: Path, edit) -> Path:
    """A copy of the lab's bindings whose DAV contract `edit(dict)` changed."""
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True, exist_ok=True)
    for path in (lab_root / "bindings").iterdir():
        (root / "bindings" / path.name).write_text(path.read_text())
    contract = yaml.safe_load((lab_root / "bindings" / CONTRACT).read_text())
    edit(contract)
    (root / "bindings" / CONTRACT).write_text(yaml.safe_dump(contract, sort_keys=False))
    return root


def lab_client(lab: dict, account: str) -> DavClient:
    if account == "xandikos":
        return DavClient(lab["urls"]["xandikos"], username=None, password=None)
    ops = lab["users"]["ops"]
    return DavClient(lab["urls"]["radicale_tls"], username=ops["login"], password=ops["password"],
                     ca_file=lab["tls"]["ca_cert"], server_name=lab["tls"]["server_name"])  # fmt: skip


# ---- status -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["caldav", "carddav"])
def test_status_walks_discovery_on_both_servers_with_srv_from_the_lab_knot(lab, lab_root, kind):
    code, env, _ = run(lab_root, KINDS[kind][0])
    assert code in (0, 1), env  # 1 when the contract's collections do not exist yet: not this test's subject
    for account, redirect in (("radicale", 301), ("xandikos", 302)):
        for check_id in ("discovery.well_known", "discovery.principal", "discovery.home_set", "options.dav_classes"):
            (check,) = checks(env, f"{kind}.{check_id}", account)
            assert check["status"] == "ok", check
        (well_known,) = checks(env, f"{kind}.discovery.well_known", account)
        assert well_known["actual"] == [redirect] and f"/.well-known/{kind}" in well_known["detail"]
        data = env["data"]["accounts"][account]
        steps = data["discovery"]["steps"]
        assert {s["name"] for s in steps} >= {"well-known", "principal", "home-set"}
        assert all(isinstance(s["elapsed_ms"], int) for s in steps)
    assert env["data"]["accounts"]["radicale"]["discovery"]["principal"] == "/ops%40spine.test/"
    assert env["data"]["accounts"]["xandikos"]["discovery"]["home_set"] == (
        "/ops/calendars/" if kind == "caldav" else "/ops/contacts/"
    )
    # Radicale's account names domain spine.test: SRV/TXT are asked of the lab's Knot and lead back to it.
    (srv,) = checks(env, f"{kind}.discovery.srv", "radicale")
    assert srv["status"] == "ok", srv
    assert f"dav.spine.test:{lab['ports']['radicale_tls']} /" in srv["actual"]
    assert f"dav.spine.test:{lab['ports']['radicale']} /" in srv["actual"]  # the plain _caldav record, listed second
    assert not checks(env, f"{kind}.discovery.srv", "xandikos")  # no domain: no DNS asked
    # Xandikos has default collections, and status lists them with their sync support.
    (default,) = env["data"]["accounts"]["xandikos"]["collections"][:1]
    assert default["supports_sync"] and default["sync_token"]
    validate_receipt(Path(env["receipt"]) / "receipt.json")


def test_an_unknown_account_is_a_usage_error(lab_root):
    code, env, _ = run(lab_root, "calendar.caldav.status", "--account", "nope")
    assert code == 2 and "not in communications.dav.contract.yaml" in env["error"]["message"]


# ---- ensure ---------------------------------------------------------------------------------------------


@pytest.fixture
def unique_collections(lab, lab_root, tmp_path):
    """A root whose contract wants a fresh calendar and address book on both accounts; deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"

    def edit(contract):
        contract["calendars"] = [
            {"id": name, "display_name": "Test Ops", "color": "#1F6FEB", "components": ["VEVENT", "VTODO"],
             "description": "made by the lab tests"},
            {"id": name, "account": "xandikos", "display_name": "Test Ops X"},
        ]  # fmt: skip
        contract["addressbooks"] = [{"id": name, "display_name": "Test Contacts"},
                                    {"id": name, "account": "xandikos", "display_name": "Test Contacts X"}]  # fmt: skip
        contract.pop("sync", None)

    root = root_with(lab_root, tmp_path, edit)
    yield root, name
    for account in ("radicale", "xandikos"):
        with lab_client(lab, account) as client:
            for kind in ("caldav", "carddav"):
                home = discover(client, kind).home_set
                with suppress(DavError):
                    client.request("DELETE", f"{home}{name}/")


@pytest.mark.parametrize("kind", ["caldav", "carddav"])
def test_ensure_dry_run_then_execute_then_nothing_to_do(lab, unique_collections, kind):
    root, name = unique_collections
    status_cap, ensure_cap = KINDS[kind]

    code, env, _ = run(root, status_cap)
    assert code == 1 and env["status"] == "fail"
    for account in ("radicale", "xandikos"):
        (missing,) = checks(env, f"{kind}.collection.exists", f"{account}/{name}")
        assert missing["status"] == "fail" and f"{ensure_cap} --execute" in missing["detail"]

    code, env, _ = run(root, ensure_cap)
    assert code == 0 and env["status"] == "warn" and env["data"]["mode"] == "dry-run"
    assert [(a["account"], a["action"], a["done"]) for a in env["data"]["actions"]] == [
        ("radicale", "create", False), ("xandikos", "create", False)]  # fmt: skip
    assert any("would create 2" in line for line in env["summary"])
    code, env, _ = run(root, status_cap)
    assert code == 1, "a dry run must not create anything"

    code, env, _ = run(root, ensure_cap, "--execute")
    assert code == 0 and env["status"] == "ok", [c for c in env["checks"] if c["status"] != "ok"]
    assert [(a["action"], a["done"]) for a in env["data"]["actions"]] == [("create", True), ("create", True)]
    for account in ("radicale", "xandikos"):
        (exists,) = checks(env, f"{kind}.collection.exists", f"{account}/{name}")
        assert exists["status"] == "ok" and exists["actual"].rstrip("/").endswith(name)
    validate_receipt(Path(env["receipt"]) / "receipt.json")

    code, env, _ = run(root, ensure_cap, "--execute")
    assert code == 0 and env["status"] == "ok"
    assert [a["action"] for a in env["data"]["actions"]] == ["none", "none"]
    assert any(line.startswith("nothing to do") for line in env["summary"])

    code, env, _ = run(root, status_cap)
    assert code == 0 and env["status"] == "ok", [c for c in env["checks"] if c["status"] != "ok"]
    created = [c for c in env["data"]["accounts"]["radicale"]["collections"] if c["href"].rstrip("/").endswith(name)]
    assert created[0]["display_name"] == "Test Ops" if kind == "caldav" else "Test Contacts"
    if kind == "caldav":
        assert created[0]["color"].lower().startswith("#1f6feb")
        assert set(created[0]["components"]) >= {"VEVENT", "VTODO"}


def test_a_display_name_that_differs_on_an_existing_calendar_is_a_warning(lab, unique_collections, tmp_path):
    root, name = unique_collections
    code, _, _ = run(root, "calendar.caldav.ensure", "--execute", "--account", "radicale")
    assert code == 0
    contract_path = root / "bindings" / CONTRACT
    contract = yaml.safe_load(contract_path.read_text())
    contract["calendars"][0]["display_name"] = "Renamed"
    contract_path.write_text(yaml.safe_dump(contract, sort_keys=False))
    code, env, _ = run(root, "calendar.caldav.ensure", "--account", "radicale")
    assert code == 0 and env["status"] == "warn"
    (props,) = checks(env, "caldav.collection.properties", f"radicale/{name}")
    assert props["status"] == "warn" and "'Test Ops'" in props["detail"] and "'Renamed'" in props["detail"]
    assert env["data"]["actions"][0]["action"] == "none"


# ---- refusals ---------------------------------------------------------------------------------------------

SENTINEL = "Sentinel-DAV-pw-7f3a9c"


@pytest.mark.parametrize("capability", ["calendar.caldav.status", "calendar.caldav.ensure", "contacts.carddav.status",
                                        "contacts.carddav.ensure"])  # fmt: skip
def test_a_wrong_password_is_exit_3_naming_the_account_and_never_the_password(lab_root, tmp_path, capability):
    def edit(contract):
        contract["accounts"][0]["password_ref"] = "env:DAV_TEST_PASSWORD"

    root = root_with(lab_root, tmp_path, edit)
    code, env, printed = run(root, capability, "--account", "radicale", env={"DAV_TEST_PASSWORD": SENTINEL})
    assert code == 3 and env["status"] == "error"
    protocol = capability.split(".")[1]
    (refused,) = checks(env, f"{protocol}.account.reachable", "radicale")
    assert refused["status"] == "error" and refused["actual"] == "auth"
    assert "account radicale" in refused["detail"] and "ops@spine.test" in refused["detail"]
    assert "401" in refused["detail"]
    assert SENTINEL not in printed
    receipt = Path(env["receipt"])
    for path in receipt.rglob("*"):
        if path.is_file():
            assert SENTINEL not in path.read_text(errors="replace"), path
    validate_receipt(receipt / "receipt.json")


def test_calendar_home_password_overrides_the_first_accounts_password_ref(lab, lab_root, tmp_path):
    def edit(contract):
        contract["accounts"][0]["password_ref"] = "env:DAV_TEST_PASSWORD"

    root = root_with(lab_root, tmp_path, edit)
    env = {"DAV_TEST_PASSWORD": SENTINEL, "CALENDAR_HOME_PASSWORD": lab["users"]["ops"]["password"]}
    code, envelope, printed = run(root, "contacts.carddav.status", "--account", "radicale", env=env)
    assert code in (0, 1) and not checks(envelope, "carddav.account.reachable")
    (principal,) = checks(envelope, "carddav.discovery.principal", "radicale")
    assert principal["status"] == "ok"
    assert lab["users"]["ops"]["password"] not in printed


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers like a hostile DAV server; every request is recorded on the server object."""

    def log_message(self, *_args):
        pass

    def _answer(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, headers, body = self.server.answer(self.command, self.path)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PROPFIND = do_OPTIONS = do_REPORT = do_PUT = _answer


@contextmanager
def hostile_server(address: str, answer):
    server = http.server.ThreadingHTTPServer((address, 0), _Recorder)
    server.seen, server.answer = [], answer
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_or_a_principal_on_another_host_is_reported_and_not_followed(lab_root, tmp_path):
    with hostile_server("127.0.0.2", lambda *_: (200, {}, b"")) as elsewhere:
        other = f"http://127.0.0.2:{elsewhere.server_port}"
        principal = (f'<multistatus xmlns="DAV:"><response><href>/</href><propstat><prop><current-user-principal>'
                     f"<href>{other}/evil/</href></current-user-principal></prop><status>HTTP/1.1 200 OK</status>"
                     "</propstat></response></multistatus>").encode()  # fmt: skip

        def answer(method, path):
            if path.startswith("/.well-known/"):
                return 301, {"Location": f"{other}/"}, b""
            return 207, {"Content-Type": "application/xml"}, principal

        with hostile_server("127.0.0.1", answer) as here:

            def edit(contract):
                account = {"id": "hostile", "base_url": f"http://127.0.0.1:{here.server_port}/",
                           "login": "ops@spine.test", "password_ref": "env:DAV_TEST_PASSWORD"}  # fmt: skip
                contract["accounts"] = [account]
                contract["calendars"], contract["addressbooks"] = [{"id": "spine-ops"}], []
                contract.pop("sync", None)

            root = root_with(lab_root, tmp_path, edit)
            code, env, printed = run(root, "calendar.caldav.status", env={"DAV_TEST_PASSWORD": SENTINEL})
    assert elsewhere.seen == [], "nothing may reach the other host"
    assert here.seen and all(auth for _, _, auth in here.seen)  # the login went to the account's own origin only
    (well_known,) = checks(env, "caldav.discovery.well_known")
    assert well_known["status"] == "warn" and "127.0.0.2" in well_known["detail"]
    assert "not followed" in well_known["detail"]
    (principal_check,) = checks(env, "caldav.discovery.principal")
    assert principal_check["actual"] == f"{other}/evil/"
    (home,) = checks(env, "caldav.discovery.home_set")
    assert home["status"] == "fail" and "refusing" in home["detail"]
    (skipped,) = checks(env, "caldav.collection.exists")
    assert skipped["status"] == "skip"  # depends on the home set: not judged, not passed
    assert code == 1 and SENTINEL not in printed


def test_bodies_over_the_cap_are_refused_declared_or_streamed():
    big = b"<multistatus xmlns='DAV:'>" + b" " * 5000 + b"</multistatus>"

    def answer(method, path):
        if path == "/declared/":
            return 207, {"Content-Type": "application/xml"}, big
        return 207, {"Content-Type": "application/xml", "Transfer-Encoding": "chunked"}, _chunked(big)

    with hostile_server("127.0.0.1", answer) as server:
        client = DavClient(f"http://127.0.0.1:{server.server_port}/", username=None, password=None, max_body=1000)
        for path in ("/declared/", "/streamed/"):
            with pytest.raises(DavError) as caught:
                client.propfind(path, ["{DAV:}displayname"])
            assert caught.value.kind == "too_large", path
        with pytest.raises(DavError) as caught:
            client.put("/x.ics", b"x" * 2000, "text/calendar")
        assert caught.value.kind == "too_large"
    assert [m for m, _, _ in server.seen] == ["PROPFIND", "PROPFIND"]  # the oversized PUT never left


def _chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 512]), body[i : i + 512]) for i in range(0, len(body), 512)) + (
        b"0\r\n\r\n"
    )


def test_the_client_round_trip_with_etags_412_and_sync_on_both_servers(lab):
    """The protocol pieces the event and sync capabilities build on, against the real servers."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//spine-comms//test//EN",
        "BEGIN:VEVENT",
        "UID:u1",
        "DTSTAMP:20250101T000000Z",
        "DTSTART:20250101T100000Z",
        "SUMMARY:one",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    event = ("\r\n".join(lines) + "\r\n").encode()
    for account in ("radicale", "xandikos"):
        with lab_client(lab, account) as client:
            home = discover(client, "caldav").home_set
            collection = f"{home}t-{uuid.uuid4().hex[:10]}/"
            client.mkcalendar(collection, display_name="rt", color=None, components=["VEVENT"])
            try:
                _, _, token = client.sync_collection(collection, None)
                etag = client.put(f"{collection}u1.ics", event, "text/calendar", create_only=True)
                assert etag
                with pytest.raises(DavError) as caught:
                    client.put(f"{collection}u1.ics", event, "text/calendar", create_only=True)
                assert caught.value.kind == "precondition" and caught.value.current_etag == etag
                assert b"UID:u1" in caught.value.current
                with pytest.raises(DavError) as caught:
                    client.put(f"{collection}u1.ics", event, "text/calendar", etag='"stale"')
                assert caught.value.kind == "precondition"
                changed, deleted, token2 = client.sync_collection(collection, token)
                assert [r.href for r in changed] == [f"{collection}u1.ics"] and deleted == []
                client.delete(f"{collection}u1.ics", etag=etag)
                changed, deleted, _ = client.sync_collection(collection, token2)
                assert changed == [] and deleted == [f"{collection}u1.ics"]
                with pytest.raises(DavError) as caught:
                    client.sync_collection(collection, "http://example.invalid/not-a-token")
                assert caught.value.kind == "precondition", account
                with pytest.raises(DavError) as caught:
                    client.get(f"{collection}u1.ics")
                assert caught.value.kind == "not_found"
            finally:
                client.request("DELETE", collection)
