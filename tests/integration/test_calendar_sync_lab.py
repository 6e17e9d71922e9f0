"""calendar.sync.plan / calendar.sync.execute against the lab's Radicale (HTTPS, logins) and Xandikos.

Each test syncs into its own new calendar (uuid name) under a copy of the lab's root, so tests
never see each other's events. Another client's edits are made with the project's DAV client.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import uuid
from pathlib import Path

import icalendar
import pytest
import yaml

from spine_comms.protocols.dav import DavClient, child_href, discover
from tests.cli_process import run_capability
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
SERVERS = ["radicale", "xandikos"]
SPINE_EVENTS = {"infra-backup-window", "automation-daily-control", "spine-verification-window",
                "spine-weekly-hygiene-cadence"}  # fmt: skip


class Site:
    """A root whose DAV contract syncs into a fresh calendar on one server."""

    def __init__(self, tmp_path: Path, lab_root: Path, server: str, **sync):
        self.root = tmp_path / "root"
        shutil.copytree(lab_root / "bindings", self.root / "bindings")
        path = self.root / "bindings" / "communications.dav.contract.yaml"
        contract = yaml.safe_load(path.read_text())
        self.account = next(a for a in contract["accounts"] if a["id"] == server)
        self.name = f"sync-{uuid.uuid4().hex[:10]}"
        contract["calendars"] = [{"id": self.name, "account": server}]
        contract["sync"] = {"source": "calendar.global.yaml", "target_calendar": self.name, "account": server,
                            "retry": {"max_attempts": 2, "backoff_seconds": [0.05]}, **sync}  # fmt: skip
        path.write_text(yaml.safe_dump(contract, sort_keys=False))
        self.client = self._client()
        home = discover(self.client, "caldav").home_set
        self.collection = child_href(home, self.name) + "/"
        self.client.mkcalendar(self.collection, display_name=self.name, color=None, components=["VEVENT"])
        self.state = self.root / "mailroom" / "state" / "calendar-sync" / "caldav-state.json"
        self.lock = self.root / "mailroom" / "state" / "calendar-sync" / ".caldav.lock"

    def _client(self) -> DavClient:
        password = None
        if self.account.get("password_ref"):
            password = Path(self.account["password_ref"].removeprefix("file:")).read_text()
        return DavClient(self.account["base_url"], username=self.account.get("login"), password=password,
                         ca_file=self.account.get("ca_file"), server_name=self.account.get("server_name"))  # fmt: skip

    def run(self, capability: str, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
        done = run_capability(self.root, capability, *args, env=env)
        return done.code, done.envelope, done.stdout + done.stderr

    def execute(self, *args: str) -> tuple[int, dict]:
        code, envelope, _ = self.run("calendar.sync.execute", "--execute", "--yes", *args)
        return code, envelope

    def members(self) -> dict[str, str]:
        """href -> etag of every event in the calendar, as the server lists it."""
        return {r.href: r.etag for r in self.client.propfind(self.collection, ["{DAV:}getetag"], 1)
                if r.href.rstrip("/") != self.collection.rstrip("/")}  # fmt: skip

    def source_copy(self, old: str, new: str) -> Path:
        text = (self.root / "bindings" / "calendar.global.yaml").read_text()
        assert old in text
        path = self.root / "bindings" / "changed.yaml"
        path.write_text(text.replace(old, new, 1))
        return path

    def href_of(self, envelope: dict, event_id: str) -> str:
        return next(a["href"] for a in envelope["data"]["actions"] if a["event_id"] == event_id)


@pytest.fixture(params=SERVERS)
def site(request, tmp_path, lab_root):
    made = Site(tmp_path, lab_root, request.param)
    yield made
    made.client.close()


def kinds(envelope: dict) -> dict[str, str]:
    return {a["event_id"]: a["action"] for a in envelope["data"]["actions"]}


def test_first_execute_creates_the_spine_layers_and_the_second_is_all_noop_without_a_write(site):
    code, env = site.execute()
    assert code == 0 and env["status"] == "ok", json.dumps(env["data"]["errors"])
    data = env["data"]
    for key in ("run_id", "mode", "layers", "summary", "actions", "conflicts", "errors", "state_path", "requests"):
        assert key in data, key
    assert data["run_id"].startswith("CALSYNC-") and data["mode"] == "execute"
    assert data["layers"] == ["infrastructure", "automation", "spine"]
    assert data["summary"]["created"] == 4 and data["summary"]["skipped"] == 3
    assert {e for e, k in kinds(env).items() if k == "create"} == SPINE_EVENTS
    assert len(site.members()) == 4
    state = json.loads(site.state.read_text())
    assert len(state["events"]) == 4 and state["sync_token"]
    validate_receipt(Path(env["receipt"]) / "receipt.json")

    before = site.state.stat().st_mtime_ns
    code, again = site.execute()
    assert code == 0 and again["status"] == "ok"
    assert set(kinds(again).values()) == {"noop", "skip"}
    summary = again["data"]["summary"]
    assert summary["created"] == summary["updated"] == summary["deleted"] == summary["planned"] == 0
    # One REPORT (sync-collection since the stored token): no discovery, no PUT, no DELETE.
    assert again["data"]["requests"] == 1, again["data"]["listing"]
    assert site.state.stat().st_mtime_ns == before


def test_one_changed_event_in_the_source_is_exactly_one_update(site):
    site.execute()
    source = site.source_copy("duration_minutes: 120", "duration_minutes: 95")
    code, env = site.execute("--source", str(source))
    assert code == 0
    assert [e for e, k in kinds(env).items() if k == "update"] == ["infra-backup-window"]
    assert env["data"]["summary"]["updated"] == 1 and env["data"]["summary"]["noop"] == 3
    body, _ = site.client.get(site.href_of(env, "infra-backup-window"))
    (event,) = icalendar.Calendar.from_ical(body).walk("VEVENT")  # Radicale re-serializes: PT1H35M
    assert event.decoded("DURATION").total_seconds() == 95 * 60


@pytest.mark.parametrize("policy", ["spine_wins", "server_wins", "report"])
def test_an_event_edited_by_another_client_is_handled_per_policy(tmp_path, lab_root, policy):
    site = Site(tmp_path, lab_root, "radicale", conflict_policy=policy)
    _, first = site.execute()
    href = site.href_of(first, "automation-daily-control")
    body, etag = site.client.get(href)
    site.client.put(href, body.replace(b"SUMMARY:Automation control lane", b"SUMMARY:Moved by a human"),
                    "text/calendar", etag=etag)  # fmt: skip
    code, env = site.execute()
    (conflict,) = env["data"]["conflicts"]
    assert conflict["event_id"] == "automation-daily-control" and conflict["policy"] == policy
    now, _ = site.client.get(href)
    if policy == "spine_wins":
        assert code == 0 and kinds(env)["automation-daily-control"] == "update"
        assert b"Automation control lane" in now
    else:
        assert code == 0 and env["status"] == "warn" and kinds(env)["automation-daily-control"] == "conflict"
        assert b"Moved by a human" in now
    _, again = site.execute()
    expected = {"spine_wins": "noop", "server_wins": "skip", "report": "conflict"}[policy]
    assert kinds(again)["automation-daily-control"] == expected
    site.client.close()


def test_an_event_deleted_on_the_server_is_recreated(site):
    _, first = site.execute()
    href = site.href_of(first, "spine-verification-window")
    site.client.delete(href)
    code, env = site.execute()
    assert code == 0 and kinds(env)["spine-verification-window"] == "create"
    assert env["data"]["summary"]["created"] == 1
    assert site.client.get(href)[0].startswith(b"BEGIN:VCALENDAR")


def test_an_event_removed_from_the_source_is_deleted(site):
    site.execute()
    text = (site.root / "bindings" / "calendar.global.yaml").read_text()
    start, end = text.index('        - id: "spine-weekly-hygiene-cadence"'), text.index("    life:")
    source = site.root / "bindings" / "fewer.yaml"
    source.write_text(text[:start] + "\n" + text[end:])
    code, env = site.execute("--source", str(source))
    assert code == 0 and kinds(env)["spine-weekly-hygiene-cadence"] == "delete"
    assert env["data"]["summary"]["deleted"] == 1 and len(site.members()) == 3
    state = json.loads(site.state.read_text())
    assert sum(1 for e in state["events"].values() if e["tombstone"]) == 1


def test_a_held_lock_is_sync_lock_held_with_exit_1_and_nothing_done(site):
    site.lock.parent.mkdir(parents=True, exist_ok=True)
    with open(site.lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, env = site.execute()
    assert code == 1 and env["status"] == "fail"
    assert env["data"]["errors"][0]["code"] == "sync_lock_held"
    assert site.members() == {} and not site.state.exists()


def test_limits_defer_the_excess_and_the_next_run_finishes(site):
    code, env = site.execute("--max-create", "1")
    assert code == 0 and env["status"] == "warn"
    assert env["data"]["summary"]["created"] == 1 and env["data"]["summary"]["deferred"] == 3
    assert len(site.members()) == 1
    _, rest = site.execute()
    assert rest["data"]["summary"]["created"] == 3 and len(site.members()) == 4


def test_dry_runs_write_nothing_not_even_the_state(site):
    code, env, _ = site.run("calendar.sync.execute")
    assert code == 0 and env["data"]["mode"] == "dry-run" and env["data"]["summary"]["planned"] == 4
    code, plan, _ = site.run("calendar.sync.plan")
    assert code == 0 and set(kinds(plan).values()) == {"create", "skip"}
    assert site.members() == {} and not site.state.exists() and not site.lock.exists()


def test_a_refused_token_falls_back_to_a_full_listing(site):
    site.execute()
    state = json.loads(site.state.read_text())
    state["sync_token"] = state["sync_token"][:-6] + "000000"
    site.state.write_text(json.dumps(state))
    code, env = site.execute()
    assert code == 0 and set(kinds(env).values()) == {"noop", "skip"}
    assert env["data"]["listing"].startswith("full listing")


def test_execute_needs_approval_and_a_missing_calendar_points_at_ensure(tmp_path, lab_root):
    site = Site(tmp_path, lab_root, "radicale")
    code, _, text = site.run("calendar.sync.execute", "--execute", env={"SPINE_CAP_AUTO_APPROVE": ""})
    assert code == 2 and "approval" in text
    site.client.delete(site.collection)
    code, _, text = site.run("calendar.sync.plan")
    assert code == 2 and "calendar.caldav.ensure" in text
    site.client.close()


def test_a_refused_password_is_exit_3_naming_the_account_never_the_password(tmp_path, lab_root):
    site = Site(tmp_path, lab_root, "radicale")
    sentinel = "S3ntinel-" + uuid.uuid4().hex
    code, env, text = site.run("calendar.sync.plan", env={"CALENDAR_HOME_PASSWORD": sentinel})
    assert code == 3 and env["status"] == "error" and "radicale" in text
    assert sentinel not in text
    receipt = Path(env["receipt"])
    assert all(sentinel not in p.read_text() for p in receipt.iterdir() if p.is_file())
    site.client.close()
