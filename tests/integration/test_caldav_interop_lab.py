"""Interop with an independent client: what spine-comms writes, a plain WebDAV client reads, and what
that client writes, spine-comms reads and updates under its ETag.

spine-comms speaks CalDAV through python-caldav (its DAVClient, on spine-comms' guarded session), so
python-caldav can no longer be the other side. The other side here is raw HTTP written in this
test (http.client, the stdlib's XML parser, icalendar for the data): MKCALENDAR, PUT with ETags, a
calendar-query by UID, against a real server (Radicale, over its plain port, which shares the TLS
port's storage); the instances of a repeating event are checked against RFC 5545, worked out by hand.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import icalendar
import pytest

from tests.cli_process import run_capability

pytestmark = pytest.mark.lab

CALDAV_NS = "urn:ietf:params:xml:ns:caldav"


def run(root: Path, capability: str, *args: str) -> tuple[int, dict]:
    # The event writes are dry runs unless told to act (the runner's rule).
    acting = (
        ("--execute",)
        if capability in ("calendar.event.create", "calendar.event.update", "calendar.event.delete")
        else ()
    )
    done = run_capability(root, capability, *acting, *args)
    return done.code, done.envelope


class RawCalendar:
    """One calendar on Radicale's plain port, spoken to in raw WebDAV (no DAV library)."""

    def __init__(self, port: int, login: str, password: str, path: str):
        self.port, self.path = port, path
        self.auth = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()

    def request(self, method: str, path: str, body: bytes = b"", **headers) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers={"Authorization": self.auth, **headers})
            answer = connection.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            connection.close()

    def make(self, name: str) -> None:
        body = (f'<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="{CALDAV_NS}"><D:set><D:prop>'
                f"<D:displayname>{escape(name)}</D:displayname></D:prop></D:set></C:mkcalendar>").encode()  # fmt: skip
        status, _, answer = self.request("MKCALENDAR", self.path, body, **{"Content-Type": "application/xml"})
        assert status == 201, answer

    def put(self, uid: str, ics: bytes, etag: str | None = None) -> int:
        headers = {"Content-Type": "text/calendar; charset=utf-8", **({"If-Match": etag} if etag else {})}
        return self.request("PUT", f"{self.path}{uid}.ics", ics, **headers)[0]

    def report(self, calendar_data: str, comp_filter: str) -> list[tuple[str, str, bytes]]:
        body = (f'<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV_NS}">'
                f"<D:prop><D:getetag/>{calendar_data}</D:prop><C:filter><C:comp-filter name=\"VCALENDAR\">"
                f"{comp_filter}</C:comp-filter></C:filter></C:calendar-query>").encode()  # fmt: skip
        status, _, answer = self.request("REPORT", self.path, body, Depth="1", **{"Content-Type": "application/xml"})
        assert status == 207, answer
        found = []
        for response in ET.fromstring(answer).iter("{DAV:}response"):
            data = response.findtext(f".//{{{CALDAV_NS}}}calendar-data")
            if data:
                found.append((response.findtext("{DAV:}href"), response.findtext(".//{DAV:}getetag"), data.encode()))
        return found

    def event_by_uid(self, uid: str) -> tuple[str, icalendar.Calendar]:
        """(etag, calendar) of the event with this UID, found by a calendar-query (RFC 4791 7.8)."""
        match = (f'<C:comp-filter name="VEVENT"><C:prop-filter name="UID"><C:text-match collation="i;octet">'
                 f"{escape(uid)}</C:text-match></C:prop-filter></C:comp-filter>")  # fmt: skip
        (found,) = [(etag, icalendar.Calendar.from_ical(data)) for _, etag, data in self.report("<C:calendar-data/>",
                    match) if icalendar.Calendar.from_ical(data).walk("VEVENT")[0]["UID"] == uid]  # fmt: skip
        return found


def event_ics(uid: str, summary: str, start: datetime, end: datetime) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//raw interop test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20310101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{end:%Y%m%dT%H%M%SZ}\r\n"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()  # fmt: skip


@pytest.fixture(scope="module")
def shared_calendar(lab, lab_root):
    """A calendar made by the raw client, then named to spine-comms through --calendar."""
    ops = lab["users"]["ops"]
    name = f"interop-{uuid.uuid4().hex[:8]}"
    calendar = RawCalendar(lab["ports"]["radicale"], ops["login"], ops["password"], f"/{ops['login']}/{name}/")
    calendar.make("Interop")
    yield name, calendar


def test_an_event_spine_comms_creates_is_read_by_an_independent_client(lab_root, shared_calendar):
    name, calendar = shared_calendar
    start = datetime(2031, 5, 6, 9, 30, tzinfo=UTC)
    code, env = run(lab_root, "calendar.event.create", "--account", "radicale", "--calendar", name,
                    "--summary", "Interop review", "--start", start.isoformat(), "--location", "Room 4",
                    "--attendee", "Ada <ada@example.org>")  # fmt: skip
    assert code == 0, env
    uid = env["data"]["uid"]
    _, event = calendar.event_by_uid(uid)
    component = event.walk("VEVENT")[0]
    assert str(component["SUMMARY"]) == "Interop review"
    assert str(component["LOCATION"]) == "Room 4"
    assert component["DTSTART"].dt == start
    assert "mailto:ada@example.org" in str(component["ATTENDEE"]).lower()


def test_an_event_an_independent_client_writes_is_found_and_updated_by_spine_comms(lab_root, shared_calendar):
    name, calendar = shared_calendar
    uid = f"caldav-{uuid.uuid4().hex}"
    start = datetime(2031, 5, 7, 14, 0, tzinfo=UTC)
    assert calendar.put(uid, event_ics(uid, "Written by a raw client", start, start + timedelta(hours=1))) == 201

    code, got = run(lab_root, "calendar.event.get", "--account", "radicale", "--calendar", name, "--uid", uid)
    assert code == 0, got
    assert got["data"]["event"]["summary"] == "Written by a raw client"
    etag = got["data"]["etag"]

    code, env = run(lab_root, "calendar.event.update", "--account", "radicale", "--calendar", name, "--uid", uid,
                    "--etag", etag, "--summary", "Renamed by spine-comms")  # fmt: skip
    assert code == 0, env
    their_etag, event = calendar.event_by_uid(uid)
    assert str(event.walk("VEVENT")[0]["SUMMARY"]) == "Renamed by spine-comms"

    # The other client changes it again, under its ETag: spine-comms' old ETag is now stale and must be refused.
    event.walk("VEVENT")[0]["SUMMARY"] = "Changed behind spine-comms' back"
    assert calendar.put(uid, event.to_ical(), etag=their_etag) in (200, 201, 204)
    code, env = run(lab_root, "calendar.event.update", "--account", "radicale", "--calendar", name, "--uid", uid,
                    "--etag", etag, "--summary", "Blind overwrite")  # fmt: skip
    assert code == 1 and env["status"] == "fail"
    assert "Changed behind" in json.dumps(env["data"]["conflict"])
    assert str(calendar.event_by_uid(uid)[1].walk("VEVENT")[0]["SUMMARY"]) == "Changed behind spine-comms' back"


def test_expanded_instances_of_what_an_independent_client_writes_are_the_rfc_5545_instances(lab_root, shared_calendar):
    """A repeating event with an EXDATE, an RDATE and a moved instance, in a custom VTIMEZONE,
    written by the raw client: spine-comms' --expand gives the instances RFC 5545 defines, worked out by hand
    below. (python-caldav expanded them client-side before; Radicale's own CALDAV:expand cannot be the
    reference: for this event it returns 2 of the 4 instances.)"""
    name, calendar = shared_calendar
    uid = f"caldav-rec-{uuid.uuid4().hex[:8]}"
    status = calendar.put(
        uid,
        (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//raw interop test//EN\r\n"
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
        ).encode(),
    )
    assert status == 201
    start, end = datetime(2031, 8, 30, tzinfo=UTC), datetime(2031, 9, 15, tzinfo=UTC)
    # 08:00 at -03:30 is 11:30 UTC: 1 September, 2 is excluded, 3 moved to 12:00 (15:30 UTC), 4, and the RDATE on 10.
    theirs = [(datetime(2031, 9, day, hour, 30, tzinfo=UTC), datetime(2031, 9, day, hour + 1, 30, tzinfo=UTC))
              for day, hour in ((1, 11), (3, 15), (4, 11), (10, 11))]  # fmt: skip
    code, env = run(lab_root, "calendar.event.list", "--account", "radicale", "--calendar", name,
                    "--from", start.isoformat(), "--to", end.isoformat(), "--expand")  # fmt: skip
    assert code == 0, (env.get("error"), env.get("summary"))
    ours = sorted((datetime.fromisoformat(e["start"]).astimezone(UTC), datetime.fromisoformat(e["end"]).astimezone(UTC))
                  for e in env["data"]["events"] if e["uid"] == uid)  # fmt: skip
    assert ours == theirs and len(ours) == 4  # 1, 3 (moved to 12:00), 4 and the RDATE on 10 September
    assert [s for s, _ in ours] == [
        datetime(2031, 9, day, hour, 30, tzinfo=UTC) for day, hour in ((1, 11), (3, 15), (4, 11), (10, 11))
    ]  # 08:00 at -03:30
