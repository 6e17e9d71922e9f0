"""contract.endpoints.sync against the lab: the status capabilities run for real (Radicale,
Xandikos, Dovecot ManageSieve and IMAP; the Stalwart management API is the fake), then the
sync writes what their receipts prove into a copy of the lab's stack contract and of the
spine's own sample stack contract, round-trip.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml

from spine_comms.contracts.stack import StackContract
from tests.cli_process import run_capability
from tests.stalwart_fake import FakeStalwart

pytestmark = pytest.mark.lab

SAMPLE = Path("/work/shared/reference/spine-samples/communications.stack.contract.yaml")
STACK = "bindings/communications.stack.contract.yaml"
STATUS_CAPS = ["calendar.caldav.status", "contacts.carddav.status", "sieve.status", "communications.inbox.health",
               "stalwart.status"]  # fmt: skip


def run(root: Path, capability: str, *args: str, env: dict | None = None) -> tuple[int, dict]:
    done = run_capability(root, capability, *args, env=env, timeout=180)
    return done.code, done.envelope


@pytest.fixture(scope="module")
def fake():
    with FakeStalwart("0.16") as server:
        server.add_domain("spine.test")
        yield server


@pytest.fixture(scope="module")
def evidence(lab_root: Path, fake: FakeStalwart, tmp_path_factory) -> Path:
    """A copy of the lab root (the shared one stays untouched) whose status receipts are fresh."""
    root = tmp_path_factory.mktemp("sync") / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    mailauth = root / "bindings/communications.mailauth.contract.yaml"
    contract = yaml.safe_load(mailauth.read_text())
    secret = root.parent / "stalwart.secret"
    secret.write_text(fake.admin_password + "\n")
    contract["stalwart"] = {"url": fake.url, "username": fake.admin_login, "secret_ref": f"file:{secret}"}
    mailauth.write_text(yaml.safe_dump(contract, sort_keys=False))
    for capability in STATUS_CAPS:
        _, envelope = run(root, capability)
        assert envelope["status"] != "error", (capability, envelope.get("error"))  # reached, whatever it found
    return root


def sync_root(evidence: Path, tmp_path: Path, stack_text: str) -> Path:
    root = tmp_path / "root"
    shutil.copytree(evidence / "bindings", root / "bindings")
    shutil.copytree(evidence / "receipts", root / "receipts")
    (root / STACK).write_text(stack_text)
    return root


def blocks(old: str, new: str):
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [(tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def test_dry_run_shows_the_diff_execute_writes_and_a_second_run_changes_nothing(evidence, tmp_path, lab):
    before = (evidence / STACK).read_text()
    root = sync_root(evidence, tmp_path, before)
    code, dry = run(root, "contract.endpoints.sync")
    assert code == 0 and dry["status"] == "warn" and dry["data"]["mode"] == "dry-run"
    assert "+service_endpoints:" in dry["data"]["diff"] and (root / STACK).read_text() == before

    code, refused = run(root, "contract.endpoints.sync", "--execute")
    assert code == 2 and "needs approval" in refused["error"]["message"] and (root / STACK).read_text() == before

    code, done = run(root, "contract.endpoints.sync", "--execute", "--yes")
    assert code == 0 and done["status"] == "ok" and done["data"]["written"] is True, done
    after = (root / STACK).read_text()
    assert after.startswith(before) or [t for t, _, _ in blocks(before, after)] in (["insert"], ["replace", "insert"])
    found = yaml.safe_load(after)["service_endpoints"]
    ports = lab["ports"]
    assert found["caldav"]["radicale"] == {
        "url": f"https://127.0.0.1:{ports['radicale_tls']}/", "principal": "/ops%40spine.test/",
        "home_set": "/ops%40spine.test/", "verified_by": "calendar.caldav.status",
    }  # fmt: skip
    assert found["caldav"]["xandikos"]["home_set"] == "/ops/calendars/"
    assert found["carddav"]["xandikos"]["home_set"] == "/ops/contacts/"
    assert found["managesieve"]["ops"]["port"] == ports["sieve"] and found["managesieve"]["ops"]["host"] == "127.0.0.1"
    assert found["imap_poll"]["ops"]["address"] == "ops@spine.test" and "INBOX" in found["imap_poll"]["ops"]["folders"]
    assert {k: found["imap_poll"]["ops"][k] for k in ("host", "port", "security")} == {
        "host": "127.0.0.1", "port": ports["imaps"], "security": "tls"}  # fmt: skip
    assert found["admin_api"] == {"url": fake_url(evidence), "api": "jmap", "version": found["admin_api"]["version"],
                                  "jmap_session": fake_url(evidence).rstrip("/") + "/.well-known/jmap",
                                  "verified_by": "stalwart.status"}  # fmt: skip
    StackContract.model_validate(yaml.safe_load(after))  # still the stack contract
    assert {p: e for p, e in done["data"]["proofs"].items()}.keys() == found.keys()

    code, again = run(root, "contract.endpoints.sync", "--execute", "--yes")
    assert code == 0 and again["data"]["diff"] == [] and again["data"]["written"] is False
    assert (root / STACK).read_text() == after
    written = after + "".join(p.read_text() for p in Path(done["receipt"]).iterdir())
    assert FakeStalwart().admin_password not in written  # the API's secret is never what the sync copies


def fake_url(evidence: Path) -> str:
    return yaml.safe_load((evidence / "bindings/communications.mailauth.contract.yaml").read_text())["stalwart"]["url"]


def test_the_spine_sample_keeps_every_comment_and_untouched_line(evidence, tmp_path):
    sample = SAMPLE.read_text()
    root = sync_root(evidence, tmp_path, sample)
    code, done = run(root, "contract.endpoints.sync", "--execute", "--yes")
    assert code == 0 and done["data"]["written"], done
    after = (root / STACK).read_text()
    changes = blocks(sample, after)
    assert [tag for tag, _, _ in changes] == ["replace", "insert"]
    assert changes[0][1] == ['updated_at: "2026-02-26"\n'] and changes[0][2][0].startswith('updated_at: "20')
    assert after.endswith("".join(changes[1][2])) and changes[1][2][0] == "service_endpoints:\n"
    assert after.startswith("# Status: authoritative\n# Last verified: 2026-02-26\n")
    original, edited = yaml.safe_load(sample), yaml.safe_load(after)
    assert {k: v for k, v in edited.items() if k not in ("service_endpoints", "updated_at")} == {
        k: v for k, v in original.items() if k != "updated_at"
    }
    code, again = run(root, "contract.endpoints.sync", "--execute", "--yes")
    assert code == 0 and again["data"]["diff"] == [] and (root / STACK).read_text() == after


def test_a_changed_endpoint_is_updated_in_place_and_a_stale_one_kept_and_reported(evidence, tmp_path):
    root = sync_root(evidence, tmp_path, SAMPLE.read_text())
    run(root, "contract.endpoints.sync", "--execute", "--yes")
    text = (root / STACK).read_text()
    sieve_port = yaml.safe_load(text)["service_endpoints"]["managesieve"]["ops"]["port"]
    edited = text.replace(f"      port: {sieve_port}\n", "      port: 4190  # hand-edited\n").replace(
        "  managesieve:\n", "  managesieve:\n    retired:\n      host: old.example\n      port: 4190\n"
    )
    (root / STACK).write_text(edited)
    code, done = run(root, "contract.endpoints.sync", "--execute", "--yes")
    assert code == 0 and done["status"] == "warn"
    assert [c["subject"] for c in done["checks"] if c["id"] == "endpoints.sync.not_seen"] == ["managesieve.retired"]
    assert [tag for tag, _, _ in blocks(edited, (root / STACK).read_text())] == ["replace"]
    assert f"      port: {sieve_port}  # hand-edited\n" in (root / STACK).read_text()  # the comment stays
    assert yaml.safe_load((root / STACK).read_text())["service_endpoints"]["managesieve"]["retired"]["port"] == 4190


def test_without_receipts_nothing_is_found_and_nothing_changes(lab_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    before = (root / STACK).read_text()
    code, done = run(root, "contract.endpoints.sync", "--execute", "--yes")
    assert code == 0 and done["status"] == "warn" and done["data"]["found"] == {}
    assert {c["id"] for c in done["checks"] if c["status"] == "warn"} == {
        f"endpoints.sync.{s}" for s in ("caldav", "carddav", "managesieve", "imap_poll", "admin_api")
    }
    assert (root / STACK).read_text() == before


def test_a_forged_status_receipt_is_never_written_into_the_contract(evidence, tmp_path):
    root = sync_root(evidence, tmp_path, (evidence / STACK).read_text())
    _, planned = run(root, "contract.endpoints.sync")
    port = planned["data"]["found"]["managesieve"]["ops"]["port"]
    (receipt,) = root.glob("receipts/sessions/R*__sieve.status__*/receipt.json")
    forged = receipt.read_text().replace(f':{port}"', ':6666"')  # the endpoint the receipt says it reached
    assert forged != receipt.read_text()
    receipt.write_text(forged)
    done = run_capability(root, "contract.endpoints.sync", "--execute", "--yes", timeout=180)
    assert "managesieve" not in done.envelope["data"]["found"]
    assert "6666" not in (root / STACK).read_text()
    assert f"{receipt.parent.name} refused as evidence: receipt.json was changed" in done.stderr
