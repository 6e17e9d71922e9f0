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


# ---- ETags the state must not keep, 412s resolved in the run (RFC 7232 3.1, 4.2) -------------------------


def mapping_of(site: Site, event_id: str) -> dict:
    state = json.loads(site.state.read_text())
    return next(m for m in state["events"].values() if m["event_id"] == event_id)


def edit_on_server(site: Site, href: str, old: bytes, new: bytes) -> bytes:
    body, etag = site.client.get(href)
    assert old in body
    site.client.put(href, body.replace(old, new), "text/calendar", etag=etag)
    return body


def hide_changes_from_the_delta(site: Site) -> None:
    """Move the stored sync token past the server's latest changes, so the next run's delta does not
    mention them and only the write's precondition (412) can tell."""
    state = json.loads(site.state.read_text())
    _, _, newest = site.client.sync_collection(site.collection, state["sync_token"])
    state["sync_token"] = newest
    site.state.write_text(json.dumps(state))


def test_an_original_put_back_after_a_conflict_never_leaves_a_stale_etag(site):
    """The issue's sequence: sync, edit on the server (conflict), put the original back, sync twice,
    change the source: one update, exit 0, and the state holds the server's ETag."""
    _, first = site.execute()
    href = site.href_of(first, "automation-daily-control")
    original = edit_on_server(site, href, b"SUMMARY:Automation control lane", b"SUMMARY:Moved by a human")
    code, env = site.execute()
    assert code == 0 and kinds(env)["automation-daily-control"] == "conflict"
    _, edited = site.client.get(href)
    site.client.put(href, original, "text/calendar", etag=edited)
    for _ in range(2):
        code, env = site.execute()
        assert code == 0 and kinds(env)["automation-daily-control"] == "noop", env["data"]["errors"]
    assert mapping_of(site, "automation-daily-control")["seen_etag"] is None
    source = site.source_copy("duration_minutes: 30", "duration_minutes: 40")
    code, env = site.execute("--source", str(source))
    assert code == 0 and env["status"] == "ok", env["data"]["errors"]
    assert kinds(env)["automation-daily-control"] == "update" and env["data"]["summary"]["updated"] == 1
    assert mapping_of(site, "automation-daily-control")["remote_etag"] == site.members()[href]
    code, env = site.execute("--source", str(source))
    assert code == 0 and set(kinds(env).values()) == {"noop", "skip"}


def test_a_stale_etag_in_the_state_is_resolved_in_the_same_run(site):
    """The state holds an ETag the server never had: the update's 412 re-reads the event, finds our
    last synced content and writes under the server's ETag, in the run that met the 412."""
    _, first = site.execute()
    href = site.href_of(first, "automation-daily-control")
    state = json.loads(site.state.read_text())
    key = next(k for k, m in state["events"].items() if m["event_id"] == "automation-daily-control")
    state["events"][key]["remote_etag"] = '"never-on-the-server"'
    site.state.write_text(json.dumps(state))
    source = site.source_copy("duration_minutes: 30", "duration_minutes: 40")
    code, env = site.execute("--source", str(source))
    assert code == 0 and env["status"] == "ok", env["data"]["errors"]
    (update,) = [a for a in env["data"]["actions"] if a["action"] == "update"]
    assert update["done"] and "stale" in update["reason"]
    assert b"PT40M" in site.client.get(href)[0]
    assert mapping_of(site, "automation-daily-control")["remote_etag"] == site.members()[href]


@pytest.mark.parametrize("policy", ["report", "spine_wins", "server_wins"])
def test_a_412_on_update_from_another_clients_edit_is_planned_again_under_the_policy(tmp_path, lab_root, policy):
    site = Site(tmp_path, lab_root, "xandikos", conflict_policy=policy)
    _, first = site.execute()
    href = site.href_of(first, "automation-daily-control")
    edit_on_server(site, href, b"SUMMARY:Automation control lane", b"SUMMARY:Moved by a human")
    hide_changes_from_the_delta(site)
    source = site.source_copy("duration_minutes: 30", "duration_minutes: 40")
    code, env = site.execute("--source", str(source))
    assert code == 0 and not env["data"]["errors"], env["data"]["errors"]
    (conflict,) = env["data"]["conflicts"]
    assert conflict["found"] == "when writing (HTTP 412)" and conflict["policy"] == policy
    now, _ = site.client.get(href)
    if policy == "spine_wins":
        assert kinds(env)["automation-daily-control"] == "update" and env["data"]["summary"]["updated"] == 1
        assert b"Automation control lane" in now and b"PT40M" in now
        assert mapping_of(site, "automation-daily-control")["remote_etag"] == site.members()[href]
    else:
        assert kinds(env)["automation-daily-control"] == "conflict" and env["status"] == "warn"
        assert env["data"]["summary"]["updated"] == 0 and b"Moved by a human" in now
    _, again = site.execute("--source", str(source))
    expected = {"spine_wins": "noop", "server_wins": "skip", "report": "conflict"}[policy]
    assert kinds(again)["automation-daily-control"] == expected and not again["data"]["errors"]
    site.client.close()


def test_a_412_on_delete_keeps_another_clients_edit_and_a_stale_etag_still_deletes(site):
    _, first = site.execute()
    edited = site.href_of(first, "spine-weekly-hygiene-cadence")
    stale = site.href_of(first, "spine-verification-window")
    edit_on_server(site, edited, b"SUMMARY:", b"SUMMARY:Kept by a human ")
    hide_changes_from_the_delta(site)
    state = json.loads(site.state.read_text())
    key = next(k for k, m in state["events"].items() if m["event_id"] == "spine-verification-window")
    state["events"][key]["remote_etag"] = '"never-on-the-server"'
    site.state.write_text(json.dumps(state))
    data = yaml.safe_load((site.root / "bindings" / "calendar.global.yaml").read_text())
    data["layers"]["definitions"]["spine"]["events"] = []  # both events leave the source
    source = site.root / "bindings" / "fewer.yaml"
    source.write_text(yaml.safe_dump(data, sort_keys=False))
    code, env = site.execute("--source", str(source))
    assert code == 0 and not env["data"]["errors"], env["data"]["errors"]
    actions = {a["event_id"]: a for a in env["data"]["actions"]}
    assert actions["spine-verification-window"]["action"] == "delete" and actions["spine-verification-window"]["done"]
    assert actions["spine-weekly-hygiene-cadence"]["action"] == "conflict"
    assert stale not in site.members() and edited in site.members()
    assert env["data"]["summary"]["deleted"] == 1 and env["status"] == "warn"


def test_create_over_an_unrecorded_copy_of_our_event_is_not_counted_as_created(site):
    """If-None-Match: * meets our own event (a run that stopped before recording it): a noop with the
    server's ETag recorded, never `created`."""
    site.execute()
    site.state.unlink()
    code, env = site.execute()
    assert code == 0 and env["status"] == "ok", env["data"]["errors"]
    summary = env["data"]["summary"]
    assert summary["created"] == 0 and summary["noop"] == 4
    assert all("earlier write" in a["reason"] for a in env["data"]["actions"] if a["action"] == "noop")
    members = site.members()
    state = json.loads(site.state.read_text())
    assert {m["remote_event_id"]: m["remote_etag"] for m in state["events"].values()} == members


# ---- a kill at any instant: the rerun reports what it did (docs/calendar.md "Writes") -----------------------


def many_events(site: Site, count: int) -> Path:
    data = yaml.safe_load((site.root / "bindings" / "calendar.global.yaml").read_text())
    spine = [n for n, d in data["layers"]["definitions"].items() if d["authority"] == "spine"]
    for name in spine:
        data["layers"]["definitions"][name]["events"] = []
    for i in range(count):
        data["layers"]["definitions"][spine[i % len(spine)]]["events"].append(
            {"id": f"many-{i:03d}", "summary": f"Event {i}", "freq": "DAILY", "byhour": i % 24, "byminute": 0,
             "duration_minutes": 15})  # fmt: skip
    path = site.root / "bindings" / "many.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_kill_9_mid_run_loses_at_most_the_write_in_flight_and_the_rerun_counts_only_its_own(site):
    import os
    import signal
    import subprocess
    import time

    from tests.cli_process import SPINE_COMMS, clean_env

    total = 60
    source = many_events(site, total)
    journal = site.state.with_name(site.state.name + ".journal")
    argv = [SPINE_COMMS, "calendar.sync.execute", "--root", str(site.root), "--json", "--execute", "--yes",
            "--source", str(source)]  # fmt: skip
    process = subprocess.Popen(argv, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 15:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    on_server = len(site.members())
    recorded = journal.read_bytes().count(b"\n")
    assert 15 <= on_server < total
    assert on_server - 1 <= recorded <= on_server, (on_server, recorded)
    code, env = site.execute("--source", str(source))
    assert code == 0 and env["status"] == "ok", env["data"]["errors"]
    summary = env["data"]["summary"]
    assert summary["created"] == total - on_server, summary
    assert summary["noop"] == on_server and len(site.members()) == total
    assert not journal.exists()
    code, env = site.execute("--source", str(source))
    assert code == 0 and env["data"]["summary"]["noop"] == total and env["data"]["summary"]["created"] == 0


def test_a_412_on_update_of_an_event_deleted_meanwhile_creates_it_again(site):
    _, first = site.execute()
    href = site.href_of(first, "automation-daily-control")
    site.client.delete(href)
    hide_changes_from_the_delta(site)
    source = site.source_copy("duration_minutes: 30", "duration_minutes: 40")
    code, env = site.execute("--source", str(source))
    assert code == 0 and env["status"] == "ok", env["data"]["errors"]
    action = next(a for a in env["data"]["actions"] if a["event_id"] == "automation-daily-control")
    assert action["action"] == "create" and action["done"] and "gone from the server" in action["reason"]
    assert env["data"]["summary"]["created"] == 1 and env["data"]["summary"]["updated"] == 0
    assert b"PT40M" in site.client.get(href)[0]


def test_create_over_our_event_with_other_content_and_no_record_is_reported_as_the_update_it_is(site):
    _, first = site.execute()
    href = site.href_of(first, "spine-verification-window")
    site.state.unlink()
    edit_on_server(site, href, b"SUMMARY:", b"SUMMARY:Edited ")
    code, env = site.execute()
    assert code == 0 and env["status"] == "ok", env["data"]["errors"]
    action = next(a for a in env["data"]["actions"] if a["event_id"] == "spine-verification-window")
    assert action["action"] == "update" and action["done"] and "unrecorded" in action["reason"]
    summary = env["data"]["summary"]
    assert (summary["created"], summary["updated"], summary["noop"]) == (0, 1, 3)
    assert b"SUMMARY:Edited" not in site.client.get(href)[0]
