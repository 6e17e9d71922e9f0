"""contacts.card.* through the CLI against the lab's Radicale (HTTPS, logins) and Xandikos (no auth).

Each test makes its own cards (uuid names) and deletes them. Cards "written by another client"
are PUT raw with the protocol client, as iOS (3.0) and a 4.0 client store them.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from spine_comms.protocols.dav import DavClient, DavError
from tests.cli_process import run_capability
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
SERVERS = ["radicale", "xandikos"]
# Xandikos has no address book in the contract: its default collection, named by segment.
BOOK_ARGS = {"radicale": [], "xandikos": ["--account", "xandikos", "--addressbook", "addressbook"]}
BOOK_PATH = {"radicale": "/ops%40spine.test/spine-contacts/", "xandikos": "/ops/contacts/addressbook/"}


# The writes are dry runs unless told to act (the runner's rule): these tests act unless they say --dry-run.
WRITES = ("contacts.card.create", "contacts.card.update", "contacts.card.delete")


def run(root: Path, capability: str, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    acting = ("--execute",) if capability in WRITES and "--dry-run" not in args else ()
    done = run_capability(root, capability, *acting, *args, env=env)
    return done.code, done.envelope, done.stdout + done.stderr


def dav(lab: dict, server: str) -> DavClient:
    if server == "xandikos":
        return DavClient(lab["urls"]["xandikos"], username=None, password=None)
    ops = lab["users"]["ops"]
    return DavClient(lab["urls"]["radicale_tls"], username=ops["login"], password=ops["password"],
                     ca_file=lab["tls"]["ca_cert"], server_name=lab["server_name"])  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def radicale_book(lab):
    """The contract's spine-contacts on Radicale (Radicale creates no collection by itself)."""
    with dav(lab, "radicale") as client:
        try:
            client.mkcol_addressbook(BOOK_PATH["radicale"], display_name="Spine Contacts")
        except DavError as exc:
            assert exc.status == 405, exc.message  # already there


@pytest.fixture(params=SERVERS)
def server(request, lab_root):
    """The server name; cards whose UID starts with this test's token are deleted afterwards."""
    token = uuid.uuid4().hex[:10]
    request.node.token = token
    yield request.param
    _, env, _ = run(lab_root, "contacts.card.list", *BOOK_ARGS[request.param])
    for card in env["data"].get("cards", []):
        if token in (card["uid"] or "") or token in card["full_name"]:
            run(lab_root, "contacts.card.delete", *BOOK_ARGS[request.param], "--uid", card["uid"])


def card(root: Path, server: str, capability: str, *args: str) -> tuple[int, dict]:
    code, env, _ = run(root, capability, *BOOK_ARGS[server], *args)
    return code, env


def test_create_get_search_update_delete(lab_root, server, request):
    token = request.node.token
    uid = f"t-{token}"
    code, env = card(lab_root, server, "contacts.card.create", "--name", f"Ada Lovelace{token}", "--uid", uid,
                     "--email", f"work:ada.{token}@engine.example", "--phone", "cell:+44 20 7946 0000",
                     "--org", "Analytical Engines", "--note", "first programmer")  # fmt: skip
    assert code == 0 and env["status"] == "ok", env
    assert env["data"]["uid"] == uid and env["data"]["href"] == BOOK_PATH[server] + f"{uid}.vcf"
    created_etag = env["data"]["etag"]
    assert created_etag
    validate_receipt(Path(env["receipt"]) / "receipt.json")

    code, env = card(lab_root, server, "contacts.card.create", "--name", "Someone Else", "--uid", uid)
    assert code == 1 and "already exists" in env["checks"][-1]["detail"]  # If-None-Match: * held

    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid, "--raw")
    got = env["data"]["card"]
    assert code == 0 and env["data"]["etag"] == created_etag
    assert (got["full_name"], got["given"], got["family"]) == (f"Ada Lovelace{token}", "Ada", f"Lovelace{token}")
    assert got["emails"] == [{"address": f"ada.{token}@engine.example", "types": ["work"], "preferred": False}]
    assert got["phones"][0]["number"] == "+44 20 7946 0000" and got["org"] == "Analytical Engines"
    assert got["version"] == "4.0" and "BEGIN:VCARD" in got["vcard"]

    for text in (f"lovelace{token.upper()}", f"ADA.{token}@ENGINE"):  # by name, by email, any case
        code, env = card(lab_root, server, "contacts.card.list", "--search", text)
        assert code == 0 and [c["uid"] for c in env["data"]["cards"]] == [uid], (text, env["data"])
        assert env["data"]["search"]["server_side"] is (server == "radicale"), env["data"]["search"]
    code, env = card(lab_root, server, "contacts.card.list", "--search", f"nobody-{token}")
    assert code == 0 and env["data"]["cards"] == []

    code, env = card(lab_root, server, "contacts.card.get", "--email", f"ADA.{token}@engine.example")
    assert code == 0 and env["data"]["uid"] == uid

    code, env = card(lab_root, server, "contacts.card.update", "--uid", uid, "--add-email", f"home:a.{token}@h.example",
                     "--remove-email", f"ada.{token}@engine.example", "--name", f"Augusta Ada King{token}",
                     "--org", "")  # fmt: skip
    assert code == 0 and env["data"]["changed"] is True and env["data"]["etag"] != created_etag, env
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    got = env["data"]["card"]
    assert [e["address"] for e in got["emails"]] == [f"a.{token}@h.example"]
    assert (got["given"], got["family"], got["org"]) == ("Augusta Ada", f"King{token}", None)
    assert got["phones"] and got["note"] == "first programmer"  # untouched fields stay

    code, env = card(lab_root, server, "contacts.card.delete", "--uid", uid)
    assert code == 0 and env["data"]["deleted"] is True
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    assert code == 1 and env["status"] == "fail" and "no card" in env["checks"][-1]["detail"]


IOS_3_0 = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:-//Apple Inc.//iPhone OS 17.2//EN\r\nN:Appleseed{t};Johnny;;;\r\n"
    "FN:Johnny Appleseed{t}\r\nORG:Apple Inc.;\r\n"
    "item1.EMAIL;type=INTERNET;type=HOME;type=pref:johnny{t}@example.com\r\n"
    "item1.X-ABLabel:_$!<Other>!$_\r\nTEL;type=CELL;type=VOICE;type=pref:+1 (555) 010-0199\r\n"
    "NOTE:Met at WWDC\\nlikes apples\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD\r\n"
    " /2wBDAAgGBgcGBQgHBwcJ\r\nUID:IOS-{t}\r\nEND:VCARD\r\n"
)
V4 = (
    "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:{t}-4\r\nFN:Grace Hopper{t}\r\nN:Hopper{t};Grace;;;\r\n"
    "EMAIL;TYPE=work;PREF=1:grace{t}@navy.example\r\nTEL;VALUE=uri;TYPE=cell:tel:+1-555-0100\r\n"
    "ADR;TYPE=work:;;1 Navy Way;Arlington;VA;22201;USA\r\nEND:VCARD\r\n"
)


def test_cards_other_clients_wrote_are_read_and_updated_without_loss(lab, lab_root, server, request):
    token = request.node.token
    with dav(lab, server) as client:  # file names unlike the UIDs, as other clients choose them
        client.put(BOOK_PATH[server] + f"ios-{token}.vcf", IOS_3_0.format(t=token).encode(), "text/vcard",
                   create_only=True)  # fmt: skip
        client.put(BOOK_PATH[server] + f"v4-{token}.vcf", V4.format(t=token).encode(), "text/vcard", create_only=True)
    code, env = card(lab_root, server, "contacts.card.list", "--search", token)
    by_uid = {c["uid"]: c for c in env["data"]["cards"]}
    assert code == 0 and set(by_uid) == {f"IOS-{token}", f"urn:uuid:{token}-4"}, env["data"]
    ios, v4 = by_uid[f"IOS-{token}"], by_uid[f"urn:uuid:{token}-4"]
    assert ios["version"] == "3.0" and ios["emails"] == [
        {"address": f"johnny{token}@example.com", "types": ["home"], "preferred": True}
    ]
    assert ios["phones"][0]["types"] == ["cell"] and ios["note"] == "Met at WWDC\nlikes apples"
    assert v4["version"] == "4.0" and v4["phones"][0]["number"] == "+1-555-0100" and v4["emails"][0]["preferred"]

    code, env = card(lab_root, server, "contacts.card.update", "--uid", f"IOS-{token}", "--add-phone", "work:+1 555 7")
    assert code == 0, env
    code, env = card(lab_root, server, "contacts.card.get", "--uid", f"IOS-{token}", "--raw")
    raw = env["data"]["card"]["vcard"].replace("\r\n", "\n").replace("\n ", "")
    assert "VERSION:3.0" in raw and "PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJ" in raw
    assert re.search(r"(?im)^item1\.X-ABLabel:", raw) and len(env["data"]["card"]["phones"]) == 2
    assert env["data"]["href"] == BOOK_PATH[server] + f"ios-{token}.vcf"  # updated in place, not copied
    code, env = card(lab_root, server, "contacts.card.delete", "--uid", f"urn:uuid:{token}-4")
    assert code == 0, env


def test_two_updates_from_one_etag_the_second_is_a_conflict(lab_root, server, request):
    uid = f"c-{request.node.token}"
    code, env = card(lab_root, server, "contacts.card.create", "--name", "Conflict Test", "--uid", uid)
    start = env["data"]["etag"]
    code, env = card(lab_root, server, "contacts.card.update", "--uid", uid, "--etag", start, "--note", "writer A")
    assert code == 0 and env["status"] == "ok", env
    code, env = card(lab_root, server, "contacts.card.update", "--uid", uid, "--etag", start, "--note", "writer B")
    assert code == 1 and env["status"] == "fail", env
    conflict = env["data"]["conflict"]
    assert conflict["expected_etag"] == start and conflict["current_etag"] not in (None, start)
    assert "note writer B" in conflict["yours"] and "note writer A" in conflict["theirs"]
    assert [c["id"] for c in env["checks"] if c["status"] == "fail"] == ["contacts.card.conflict"]
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    assert env["data"]["card"]["note"] == "writer A"  # B did not overwrite


def test_a_delete_with_a_stale_etag_is_refused(lab_root, server, request):
    uid = f"d-{request.node.token}"
    code, env = card(lab_root, server, "contacts.card.create", "--name", "Delete Test", "--uid", uid)
    stale = env["data"]["etag"].strip('"')  # typed by hand, without quotes
    code, env = card(lab_root, server, "contacts.card.update", "--uid", uid, "--phone", "+1 555 0101")
    assert code == 0
    code, env = card(lab_root, server, "contacts.card.delete", "--uid", uid, "--etag", stale)
    assert code == 1 and env["data"]["conflict"]["expected_etag"] == f'"{stale}"', env
    assert "tel +1 555 0101" in env["data"]["conflict"]["theirs"]
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    assert code == 0  # still there
    code, env = card(lab_root, server, "contacts.card.delete", "--uid", uid, "--etag", env["data"]["etag"])
    assert code == 0 and env["data"]["deleted"]


def test_hostile_values_do_not_add_properties(lab, lab_root, server, request):
    uid = f"h-{request.node.token}"
    note = "hi\nEMAIL:evil@x\r\nTEL:666\rUID:other\u2028EMAIL:evil2@x\x85END:VCARD"
    code, env = card(lab_root, server, "contacts.card.create", "--name", "Eve\u2028EMAIL:evil3@x", "--uid", uid,
                     "--email", "eve@ok.example", "--note", note, "--org", "Org\nTEL:999")  # fmt: skip
    assert code == 0, env
    with dav(lab, server) as client:
        stored, _ = client.get(BOOK_PATH[server] + f"{uid}.vcf")
    text = stored.decode()
    logical = re.split(r"\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]", text.replace("\r\n ", ""))
    assert [line for line in logical if line.upper().startswith("EMAIL")] == ["EMAIL:eve@ok.example"]
    assert not [line for line in logical if line.upper().startswith(("TEL", "END:VCARD\\"))]
    assert [line for line in logical if line.startswith("UID")] == [f"UID:{uid}"]
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    got = env["data"]["card"]
    assert [e["address"] for e in got["emails"]] == ["eve@ok.example"] and got["phones"] == []
    assert "EMAIL:evil@x" in got["note"]


def test_a_missing_address_book_is_a_usage_error_with_a_hint(lab_root):
    code, env, _ = run(lab_root, "contacts.card.list", "--addressbook", "no-such-book")
    assert code == 2 and env["status"] == "error"
    assert "no-such-book" in env["error"]["message"] and "contacts.carddav.ensure" in env["error"]["hint"]


def test_bad_values_are_usage_errors(lab_root):
    code, env, out = run(lab_root, "contacts.card.create", "--name", "X", "--email", "not-an-address")
    assert code == 2 and "not an address" in env["error"]["message"] and "Traceback" not in out
    code, env, _ = run(lab_root, "contacts.card.create", "--name", "X", "--uid", "../escape")
    assert code == 2


def test_a_refused_password_is_an_error_naming_the_account_never_the_password(lab_root, tmp_path):
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    for path in (lab_root / "bindings").iterdir():
        (root / "bindings" / path.name).write_text(path.read_text())
    contract = root / "bindings" / "communications.dav.contract.yaml"
    text = contract.read_text()
    contract.write_text(re.sub(r"password_ref: .*", "password_ref: env:CARDS_TEST_PASSWORD", text, count=1))
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    code, env, out = run(root, "contacts.card.list", env={"CARDS_TEST_PASSWORD": sentinel})
    assert code == 3 and env["status"] == "error", env
    assert "radicale" in env["error"]["message"] and "ops@spine.test" in env["error"]["message"]
    assert "401" in env["error"]["message"]
    receipt = Path(env["receipt"])
    assert sentinel not in out
    for path in receipt.iterdir():
        assert sentinel not in path.read_text(), path


# ---- --dry-run: what would be written, and where; nothing changes ------------------------------------------


def assert_preview(env: dict, method: str, href: str, condition: str | None) -> dict:
    data = env["data"]
    assert env["status"] == "ok" and data["dry_run"] is True, env
    would = data["would"]
    assert (would["method"], would["href"], would["condition"]) == (method, href, condition), would
    assert env["summary"][-1].startswith(f"dry run: would {method} {href}")
    validate_receipt(Path(env["receipt"]) / "receipt.json")
    return would


def test_create_dry_run_shows_the_card_and_where_and_writes_nothing(lab, lab_root, server, request):
    uid = f"dry-{request.node.token}"
    code, env = card(lab_root, server, "contacts.card.create", "--name", "Dry Run", "--uid", uid,
                     "--email", "dry@example.org", "--dry-run")  # fmt: skip
    assert code == 0
    would = assert_preview(env, "PUT", BOOK_PATH[server] + f"{uid}.vcf", "If-None-Match: *")
    assert f"UID:{uid}" in would["body"] and "EMAIL" in would["body"] and env["data"]["etag"] is None
    with dav(lab, server) as client, pytest.raises(DavError) as gone:
        client.get(BOOK_PATH[server] + f"{uid}.vcf")
    assert gone.value.kind == "not_found"


def test_update_dry_run_shows_the_new_card_under_if_match_and_changes_nothing(lab, lab_root, server, request):
    uid = f"dry-{request.node.token}"
    code, env = card(lab_root, server, "contacts.card.create", "--name", "Before Name", "--uid", uid)
    assert code == 0, env
    etag, href = env["data"]["etag"], env["data"]["href"]
    code, env = card(lab_root, server, "contacts.card.update", "--uid", uid, "--name", "After Name", "--dry-run")
    assert code == 0
    would = assert_preview(env, "PUT", href, f"If-Match: {etag}")
    assert "FN:After Name" in would["body"] and env["data"]["card"]["full_name"] == "After Name"
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    assert env["data"]["card"]["full_name"] == "Before Name" and env["data"]["etag"] == etag


def test_delete_dry_run_names_the_card_and_keeps_it(lab_root, server, request):
    uid = f"dry-{request.node.token}"
    code, env = card(lab_root, server, "contacts.card.create", "--name", "Keep Me", "--uid", uid)
    assert code == 0, env
    etag, href = env["data"]["etag"], env["data"]["href"]
    code, env = card(lab_root, server, "contacts.card.delete", "--uid", uid, "--dry-run")
    assert code == 0
    would = assert_preview(env, "DELETE", href, f"If-Match: {etag}")
    assert would["body"] is None and env["data"]["card"]["full_name"] == "Keep Me"
    code, env = card(lab_root, server, "contacts.card.get", "--uid", uid)
    assert code == 0 and env["data"]["etag"] == etag
