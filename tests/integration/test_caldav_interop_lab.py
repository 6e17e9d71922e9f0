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
    acting = ("--execute",) if capability.startswith("calendar.event.") and capability != "calendar.event.get" else ()
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
