"""Interop with python-caldav, an independent client: what spine-comms writes, python-caldav reads,
and what python-caldav writes, spine-comms reads and updates under its ETag.

spine-comms speaks WebDAV through its own client (one client for CalDAV, CardDAV and the sync,
with its redirect, size and XML rules); this proves it stays compatible with the reference Python
CalDAV client on a real server (Radicale, over its plain port, which shares the TLS port's storage).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import caldav
import pytest

from tests.cli_process import run_capability

pytestmark = pytest.mark.lab


def run(root: Path, capability: str, *args: str) -> tuple[int, dict]:
    # The event writes are dry runs unless told to act (the runner's rule).
    acting = (
        ("--execute",)
        if capability in ("calendar.event.create", "calendar.event.update", "calendar.event.delete")
        else ()
    )
    done = run_capability(root, capability, *acting, *args)
    return done.code, done.envelope


@pytest.fixture(scope="module")
def shared_calendar(lab, lab_root):
    """A calendar made by python-caldav, then named to spine-comms through --calendar."""
    ops = lab["users"]["ops"]
    client = caldav.DAVClient(f"http://127.0.0.1:{lab['ports']['radicale']}/", username=ops["login"],
                              password=ops["password"])  # fmt: skip
    name = f"interop-{uuid.uuid4().hex[:8]}"
    calendar = client.principal().make_calendar(name="Interop", cal_id=name)
    yield name, calendar
    client.close()


def test_an_event_spine_comms_creates_is_read_by_python_caldav(lab_root, shared_calendar):
    name, calendar = shared_calendar
    start = datetime(2031, 5, 6, 9, 30, tzinfo=UTC)
    code, env = run(lab_root, "calendar.event.create", "--account", "radicale", "--calendar", name,
                    "--summary", "Interop review", "--start", start.isoformat(), "--location", "Room 4",
                    "--attendee", "Ada <ada@example.org>")  # fmt: skip
    assert code == 0, env
    uid = env["data"]["uid"]
    event = calendar.event_by_uid(uid)
    component = event.icalendar_component
    assert str(component["SUMMARY"]) == "Interop review"
    assert str(component["LOCATION"]) == "Room 4"
    assert component["DTSTART"].dt == start
    assert "mailto:ada@example.org" in str(component["ATTENDEE"]).lower()


def test_an_event_python_caldav_writes_is_found_and_updated_by_spine_comms(lab_root, shared_calendar):
    name, calendar = shared_calendar
    uid = f"caldav-{uuid.uuid4().hex}"
    start = datetime(2031, 5, 7, 14, 0, tzinfo=UTC)
    calendar.save_event(uid=uid, summary="Written by python-caldav", dtstart=start, dtend=start + timedelta(hours=1))

    code, got = run(lab_root, "calendar.event.get", "--account", "radicale", "--calendar", name, "--uid", uid)
    assert code == 0, got
    assert got["data"]["event"]["summary"] == "Written by python-caldav"
    etag = got["data"]["etag"]

    code, env = run(lab_root, "calendar.event.update", "--account", "radicale", "--calendar", name, "--uid", uid,
                    "--etag", etag, "--summary", "Renamed by spine-comms")  # fmt: skip
    assert code == 0, env
    assert str(calendar.event_by_uid(uid).icalendar_component["SUMMARY"]) == "Renamed by spine-comms"

    # python-caldav changes it again: spine-comms' old ETag is now stale and must be refused.
    event = calendar.event_by_uid(uid)
    event.icalendar_component["SUMMARY"] = "Changed behind spine-comms' back"
    event.save()
    code, env = run(lab_root, "calendar.event.update", "--account", "radicale", "--calendar", name, "--uid", uid,
                    "--etag", etag, "--summary", "Blind overwrite")  # fmt: skip
    assert code == 1 and env["status"] == "fail"
    assert "Changed behind" in json.dumps(env["data"]["conflict"])
    assert str(calendar.event_by_uid(uid).icalendar_component["SUMMARY"]) == "Changed behind spine-comms' back"


def test_expanded_instances_of_what_python_caldav_writes_match_its_own_expansion(lab_root, shared_calendar):
    """A repeating event with an EXDATE, an RDATE and a moved instance, in a custom VTIMEZONE,
    written by python-caldav: spine-comms' --expand gives the instances python-caldav gives."""
    name, calendar = shared_calendar
    uid = f"caldav-rec-{uuid.uuid4().hex[:8]}"
    calendar.save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//python-caldav test//EN\r\n"
        "BEGIN:VTIMEZONE\r\nTZID:Custom/Plant\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        "TZOFFSETFROM:-0330\r\nTZOFFSETTO:-0330\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20310101T000000Z\r\nSUMMARY:Shift\r\n"
        "DTSTART;TZID=Custom/Plant:20310901T080000\r\nDTEND;TZID=Custom/Plant:20310901T090000\r\n"
        "RRULE:FREQ=DAILY;COUNT=4\r\nEXDATE;TZID=Custom/Plant:20310902T080000\r\n"
        "RDATE;TZID=Custom/Plant:20310910T080000\r\nEND:VEVENT\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20310101T000000Z\r\nSUMMARY:Shift (late)\r\n"
        "RECURRENCE-ID;TZID=Custom/Plant:20310903T080000\r\n"
        "DTSTART;TZID=Custom/Plant:20310903T120000\r\nDTEND;TZID=Custom/Plant:20310903T130000\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    start, end = datetime(2031, 8, 30, tzinfo=UTC), datetime(2031, 9, 15, tzinfo=UTC)
    theirs = sorted(
        (c.icalendar_component["DTSTART"].dt.astimezone(UTC), c.icalendar_component["DTEND"].dt.astimezone(UTC))
        for c in calendar.search(start=start, end=end, event=True, expand=True)
        if str(c.icalendar_component["UID"]) == uid
    )
    code, env = run(lab_root, "calendar.event.list", "--account", "radicale", "--calendar", name,
                    "--from", start.isoformat(), "--to", end.isoformat(), "--expand")  # fmt: skip
    assert code == 0, (env.get("error"), env.get("summary"))
    ours = sorted((datetime.fromisoformat(e["start"]).astimezone(UTC), datetime.fromisoformat(e["end"]).astimezone(UTC))
                  for e in env["data"]["events"] if e["uid"] == uid)  # fmt: skip
    assert ours == theirs and len(ours) == 4  # 1, 3 (moved to 12:00), 4 and the RDATE on 10 September
    assert (ours[0][0].hour, ours[0][0].minute) == (11, 30)  # 08:00 at -03:30
