"""calendar.event.* through the CLI against the lab's Radicale (HTTPS, logins) and Xandikos."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from spine_comms.protocols.dav import DavClient, child_href, discover
from tests.cli_process import SPINE_COMMS, run_capability
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
ACCOUNTS = ["radicale", "xandikos"]
CONTRACT = "communications.dav.contract.yaml"


# The writes are dry runs unless told to act (the runner's rule): these tests act unless they say --dry-run.
WRITES = ("calendar.event.create", "calendar.event.update", "calendar.event.delete")


def acting(capability: str, args: tuple[str, ...]) -> tuple[str, ...]:
    return ("--execute",) if capability in WRITES and "--dry-run" not in args else ()


def command(root: Path, capability: str, *args: str) -> list[str]:
    return [SPINE_COMMS, capability, "--root", str(root), "--json", *acting(capability, args), *args]


def run(root: Path, capability: str, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    done = run_capability(root, capability, *acting(capability, args), *args, env=env)
    return done.code, done.envelope, done.stdout + done.stderr


def client_for(lab: dict, account: str) -> DavClient:
    if account == "radicale":
        ops = lab["users"]["ops"]
        url = f"https://127.0.0.1:{lab['ports']['radicale_tls']}/"
        return DavClient(url, username=ops["login"], password=ops["password"], ca_file=lab["tls"]["ca_cert"],
                         server_name=lab["server_name"])  # fmt: skip
    return DavClient(f"http://127.0.0.1:{lab['ports']['xandikos']}/", username=None, password=None)


@pytest.fixture(scope="module")
def calendar(lab) -> str:
    """A calendar of its own on both servers, so runs never see each other's events."""
    name = f"events-{uuid.uuid4().hex[:8]}"
    for account in ACCOUNTS:
        with client_for(lab, account) as client:
            home = discover(client, "caldav").home_set
            client.mkcalendar(child_href(home, name) + "/", display_name=name, color=None, components=["VEVENT"])
    return name


@pytest.fixture(params=ACCOUNTS)
def on(request, lab_root, calendar):
    """Run a capability on one account's test calendar: on(cap, *args) -> (exit code, envelope)."""

    def call(capability: str, *args: str) -> tuple[int, dict]:
        code, env, _ = run(lab_root, capability, "--account", request.param, "--calendar", calendar, *args)
        return code, env

    call.account = request.param
    return call


def create(on, *args: str) -> dict:
    code, env = on("calendar.event.create", *args)
    assert code == 0, env
    return env["data"]


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC)


def test_create_get_update_delete_with_zone_location_and_attendees(on):
    made = create(on, "--summary", "Planning", "--start", "2031-01-14T09:30", "--end", "2031-01-14T10:15",
                  "--tz", "Europe/Berlin", "--location", "Room 4", "--description", "agenda:\n1. budget",
                  "--attendee", "Ann Smith <ann@spine.test>", "--attendee", "bob@spine.test")  # fmt: skip
    assert made["href"].endswith(f"/{made['uid']}.ics") and made["etag"]
    code, env = on("calendar.event.get", "--uid", made["uid"], "--raw")
    assert code == 0 and env["status"] == "ok"
    event = env["data"]["event"]
    assert (event["start"], event["end"], event["tz"]) == ("2031-01-14T09:30:00+01:00", "2031-01-14T10:15:00+01:00",
                                                           "Europe/Berlin")  # fmt: skip
    assert event["location"] == "Room 4" and event["description"] == "agenda:\n1. budget"
    assert event["attendees"] == [{"email": "ann@spine.test", "name": "Ann Smith"},
                                  {"email": "bob@spine.test", "name": None}]  # fmt: skip
    assert env["data"]["etag"] == made["etag"] and "BEGIN:VTIMEZONE" in env["data"]["raw"]
    validate_receipt(Path(env["receipt"]) / "receipt.json")

    code, env = on("calendar.event.update", "--uid", made["uid"], "--summary", "Planning (moved)", "--start",
                   "2031-01-15T08:00:00Z", "--clear-attendees")  # fmt: skip
    assert code == 0, env
    event = env["data"]["event"]
    assert event["summary"] == "Planning (moved)" and event["attendees"] == [] and event["location"] == "Room 4"
    assert utc(event["end"]) - utc(event["start"]) == utc("2031-01-14T10:15+01:00") - utc("2031-01-14T09:30+01:00")
    assert env["data"]["etag"] not in (None, made["etag"]) and event["sequence"] == 1

    code, env = on("calendar.event.delete", "--uid", made["uid"])
    assert code == 0 and env["status"] == "ok", env
    code, env = on("calendar.event.get", "--uid", made["uid"])
    assert code == 1 and env["status"] == "fail" and "no event with UID" in env["checks"][0]["detail"]


def test_dry_runs_show_what_would_be_written_and_where_and_change_nothing(lab, on):
    uid = f"dry-{uuid.uuid4().hex[:8]}"
    code, env = on("calendar.event.create", "--uid", uid, "--summary", "Dry", "--start", "2031-05-01T10:00Z",
                   "--dry-run")  # fmt: skip
    would = env["data"]["would"]
    assert code == 0 and env["data"]["dry_run"] is True and env["data"]["etag"] is None
    assert (would["method"], would["href"], would["condition"]) == ("PUT", env["data"]["href"], "If-None-Match: *")
    assert would["href"].endswith(f"/{uid}.ics") and "SUMMARY:Dry" in would["body"]
    assert on("calendar.event.get", "--uid", uid)[0] == 1  # not created
    made = create(on, "--uid", uid, "--summary", "Dry", "--start", "2031-05-01T10:00Z")
    code, env = on("calendar.event.update", "--uid", uid, "--summary", "Wet", "--dry-run")
    would = env["data"]["would"]
    assert code == 0 and (would["method"], would["condition"]) == ("PUT", f"If-Match: {made['etag']}")
    assert would["href"] == made["href"] and "SUMMARY:Wet" in would["body"]
    code, env = on("calendar.event.delete", "--uid", uid, "--dry-run")
    would = env["data"]["would"]
    assert code == 0 and (would["method"], would["href"], would["body"]) == ("DELETE", made["href"], None)
    code, env = on("calendar.event.get", "--uid", uid)
    assert code == 0 and env["data"]["event"]["summary"] == "Dry" and env["data"]["etag"] == made["etag"]


def test_all_day_events_list_with_dates_and_an_exclusive_end(on, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("bring:\n- laptop\n- ünïcode\n")
    made = create(on, "--summary", "Offsite", "--all-day", "--start", "2031-02-03", "--end", "2031-02-05",
                  "--description-file", str(notes))  # fmt: skip
    code, env = on("calendar.event.list", "--from", "2031-02-01", "--to", "2031-02-10")
    assert code == 0
    (event,) = [e for e in env["data"]["events"] if e["uid"] == made["uid"]]
    assert event["all_day"] and (event["start"], event["end"]) == ("2031-02-03", "2031-02-05")
    assert event["description"] == "bring:\n- laptop\n- ünïcode\n"
    code, env = on("calendar.event.list", "--from", "2031-02-05", "--to", "2031-02-10")
    assert made["uid"] not in [e["uid"] for e in env["data"]["events"]]  # the end date is not part of it


def test_a_repeating_event_is_listed_once_or_expanded_per_occurrence(on):
    made = create(on, "--summary", "Standup", "--start", "2031-03-24T09:00", "--end", "2031-03-24T09:15",
                  "--tz", "Europe/Berlin", "--rrule", "FREQ=DAILY;COUNT=8")  # fmt: skip
    span = ("--from", "2031-03-25T00:00Z", "--to", "2031-03-29T00:00Z")
    code, env = on("calendar.event.list", *span)
    mine = [e for e in env["data"]["events"] if e["uid"] == made["uid"]]
    assert code == 0 and len(mine) == 1 and mine[0]["rrule"] == "FREQ=DAILY;COUNT=8"
    code, env = on("calendar.event.list", *span, "--expand")
    mine = [e for e in env["data"]["events"] if e["uid"] == made["uid"]]
    # 25..28 March, still winter time in Berlin: 09:00 is 08:00 UTC
    assert [utc(e["start"]).isoformat() for e in mine] == [f"2031-03-{d}T08:00:00+00:00" for d in (25, 26, 27, 28)]
    assert all(utc(e["end"]) - utc(e["start"]) == utc("2031-03-24T09:15Z") - utc("2031-03-24T09:00Z") for e in mine)
    assert env["data"]["expanded_by"] in ("server", "local") and all(e["recurrence_id"] for e in mine)
    if on.account == "radicale":  # Radicale 3.1 does not expand
        assert env["data"]["expanded_by"] == "local"
    code, env = on("calendar.event.list", "--from", "2031-03-28T00:00Z", "--to", "2031-04-02T00:00Z", "--expand")
    starts = [e["start"] for e in env["data"]["events"] if e["uid"] == made["uid"]]
    # Berlin moves to summer time on 30 March 2031: 09:00 local becomes 07:00 UTC from then on
    assert [(utc(s).day, utc(s).hour) for s in starts] == [(28, 8), (29, 8), (30, 7), (31, 7)]


def test_two_clients_update_one_event_and_the_second_gets_the_conflict(on):
    made = create(on, "--summary", "Budget review", "--start", "2031-04-01T10:00Z")
    first = on("calendar.event.update", "--uid", made["uid"], "--etag", made["etag"], "--summary", "Budget A")
    second = on("calendar.event.update", "--uid", made["uid"], "--etag", made["etag"], "--summary", "Budget B")
    assert first[0] == 0 and first[1]["status"] == "ok"
    code, env = second
    assert code == 1 and env["status"] == "fail"
    conflict = env["data"]["conflict"]
    assert '"Budget B"' in conflict["ours"] and '"Budget A"' in conflict["theirs"]
    assert conflict["expected_etag"] == made["etag"] and conflict["current_etag"] == first[1]["data"]["etag"]
    (check,) = env["checks"]
    assert check["id"] == "calendar.event.update" and check["expected"] == made["etag"]
    code, env = on("calendar.event.get", "--uid", made["uid"])
    assert env["data"]["event"]["summary"] == "Budget A"  # never overwritten


def test_two_simultaneous_updates_from_the_same_etag_let_exactly_one_through(on, lab_root, calendar):
    made = create(on, "--summary", "Race", "--start", "2031-04-02T10:00Z")
    args = ("--account", on.account, "--calendar", calendar, "--uid", made["uid"], "--etag", made["etag"])
    runs = [
        subprocess.Popen(command(lab_root, "calendar.event.update", *args, "--summary", f"Race {n}"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (1, 2)
    ]  # fmt: skip
    outcomes = [(r.wait(timeout=60), json.loads(r.communicate()[0])) for r in runs]
    assert sorted(code for code, _ in outcomes) == [0, 1]
    winner = next(env for code, env in outcomes if code == 0)
    loser = next(env for code, env in outcomes if code == 1)
    assert loser["data"]["conflict"]["theirs"].startswith(f'"{winner["data"]["event"]["summary"]}"')


def test_delete_with_a_stale_etag_is_refused(on):
    made = create(on, "--summary", "Keep me", "--start", "2031-04-03T10:00Z")
    assert on("calendar.event.update", "--uid", made["uid"], "--location", "Hall")[0] == 0
    code, env = on("calendar.event.delete", "--uid", made["uid"], "--etag", made["etag"])
    assert code == 1 and env["status"] == "fail"
    assert env["data"]["conflict"]["theirs"].startswith('"Keep me"') and "@ Hall" in env["data"]["conflict"]["theirs"]
    code, env = on("calendar.event.get", "--uid", made["uid"])
    assert code == 0 and env["data"]["event"]["location"] == "Hall"


def test_creating_an_existing_uid_is_a_conflict_not_a_replacement(on):
    uid = f"fixed-{uuid.uuid4().hex[:8]}"
    create(on, "--uid", uid, "--summary", "First", "--start", "2031-04-04T10:00Z")
    code, env = on("calendar.event.create", "--uid", uid, "--summary", "Second", "--start", "2031-04-04T11:00Z")
    assert code == 1 and env["status"] == "fail" and env["data"]["conflict"]["theirs"].startswith('"First"')
    assert on("calendar.event.get", "--uid", uid)[1]["data"]["event"]["summary"] == "First"


def test_missing_events_fail_as_not_found(on):
    for capability, extra in [("calendar.event.get", ()), ("calendar.event.update", ("--summary", "x")),
                              ("calendar.event.delete", ())]:  # fmt: skip
        code, env = on(capability, "--uid", f"nothing-{uuid.uuid4().hex}", *extra)
        assert (code, env["status"]) == (1, "fail"), capability
        assert "no event with UID" in env["checks"][0]["detail"]


def test_a_summary_cannot_inject_properties_and_huge_text_reads_back(on):
    hostile = "Lunch\r\nATTENDEE:mailto:x@evil.test\r\nEND:VEVENT\x1b[31m\x07 " + "y" * 100_000
    made = create(on, "--summary", hostile, "--start", "2031-05-01T12:00Z", "--location", "a\nLOCATION:b")
    code, env = on("calendar.event.get", "--uid", made["uid"], "--raw")
    assert code == 0
    event = env["data"]["event"]
    assert event["attendees"] == [] and event["location"] == "a\nLOCATION:b"
    assert event["summary"].startswith("Lunch\nATTENDEE:mailto:x@evil.test\nEND:VEVENT[31m ")
    assert len(event["summary"]) > 100_000 and "\x1b" not in json.dumps(env)
    lines = env["data"]["raw"].splitlines()
    assert not [line for line in lines if line.startswith(("ATTENDEE", "LOCATION:b"))]
    assert sum(line == "END:VEVENT" for line in lines) == 1


def test_hostile_data_put_by_another_client_is_read_safely(lab, on, calendar):
    uid = f"foreign-{uuid.uuid4().hex[:8]}"
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//someone else//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20310101T000000Z\r\nDTSTART:20310601T100000Z\r\nDTEND:20310601T110000Z\r\n"
        "SUMMARY:bell\x07 and \x1b]0;title\x07 escape\r\nDESCRIPTION:" + "z" * 70 + "\r\n " + "z" * 70 + "\r\n"
        'ATTENDEE;CN="Eve":mailto:eve@spine.test\r\nX-ODD;FOO="bar":baz\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n'
    ).encode()
    with client_for(lab, on.account) as client:
        home = discover(client, "caldav").home_set
        client.put(child_href(child_href(home, calendar), "not-the-uid.ics"), body, "text/calendar")
    code, env = on("calendar.event.list", "--from", "2031-06-01", "--to", "2031-06-02")
    assert code == 0 and "\x1b" not in json.dumps(env) and "\x07" not in json.dumps(env)
    (event,) = [e for e in env["data"]["events"] if e["uid"] == uid]
    assert event["summary"].startswith("bell and ") and event["href"].endswith("/not-the-uid.ics")
    # found by UID through a calendar-query, though its resource name is not the UID
    code, env = on("calendar.event.update", "--uid", uid, "--summary", "tidied")
    assert code == 0 and env["data"]["href"].endswith("/not-the-uid.ics"), env
    code, env = on("calendar.event.get", "--uid", uid, "--raw")
    assert "X-ODD;FOO=bar:baz" in env["data"]["raw"].replace('"', "") and env["data"]["event"]["summary"] == "tidied"


def test_bad_input_is_a_one_line_usage_error(lab_root, calendar):
    for args, fragment in [
        (("--summary", "x", "--start", "tomorrow"), "not an ISO-8601"),
        (("--summary", "x", "--start", "2031-01-01T09:00"), "no UTC offset"),
        (("--summary", "x", "--start", "2031-01-01T09:00Z", "--rrule", "FREQ=SOMETIMES"), "RRULE"),
        (("--summary", "x", "--start", "2031-01-01T09:00Z", "--attendee", "not-an-address"), "attendee"),
        (("--summary", "x", "--start", "2031-01-01", "--end", "2031-01-01"), "exclusive"),
    ]:
        code, env, _ = run(lab_root, "calendar.event.create", "--calendar", calendar, *args)
        assert code == 2 and env["status"] == "error" and fragment in env["error"]["message"], (args, env)


def copied_root(lab_root: Path, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "root"
    shutil.copytree(lab_root / "bindings", root / "bindings")
    return root, yaml.safe_load((root / "bindings" / CONTRACT).read_text())


def test_a_contract_calendar_that_is_missing_is_exit_2_with_the_ensure_hint(lab_root, tmp_path):
    root, contract = copied_root(lab_root, tmp_path)
    absent = f"absent-{uuid.uuid4().hex[:8]}"
    contract["calendars"].insert(0, {"id": absent, "display_name": "Not there"})
    (root / "bindings" / CONTRACT).write_text(yaml.safe_dump(contract))
    code, env, _ = run(root, "calendar.event.list")
    assert code == 2 and absent in env["error"]["message"] and "calendar.caldav.ensure" in env["error"]["hint"]


def test_a_refused_password_is_exit_3_naming_the_account_never_the_password(lab_root, tmp_path, calendar):
    root, contract = copied_root(lab_root, tmp_path)
    contract["accounts"][0]["password_ref"] = "env:EVENTS_TEST_PASSWORD"
    (root / "bindings" / CONTRACT).write_text(yaml.safe_dump(contract))
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    code, env, out = run(root, "calendar.event.list", "--calendar", calendar, env={"EVENTS_TEST_PASSWORD": sentinel})
    assert code == 3 and env["status"] == "error" and "radicale" in env["error"]["message"]
    assert "401" in env["error"]["message"] and sentinel not in out
    for path in Path(env["receipt"]).iterdir():
        assert sentinel not in path.read_text(), path
