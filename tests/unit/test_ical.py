"""calendar.ical and ical_read: strict writing, tolerant reading, no property injection."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from spine_comms.calendar import ical
from spine_comms.calendar.ical_read import expand, find_event, is_recurring, read_events, summary_line

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def build(**fields) -> bytes:
    start = fields.pop("start", datetime(2030, 3, 1, 8, 0, tzinfo=UTC))
    spec = ical.EventSpec(uid=fields.pop("uid", "u-1"), summary=fields.pop("summary", "Standup"), start=start,
                          end=fields.pop("end", ical.default_end(start)), **fields)  # fmt: skip
    return ical.build_calendar(spec, now=NOW)


# ---- input ------------------------------------------------------------------------------------------------


def test_times_with_offsets_are_written_in_utc_and_zoned_times_keep_their_zone():
    assert ical.parse_when("2030-03-01T09:00+01:00") == datetime(2030, 3, 1, 8, 0, tzinfo=UTC)
    assert ical.parse_when("2030-03-01T08:00Z").utcoffset() == timedelta(0)
    berlin = ical.parse_when("2030-07-01T09:00", tz="Europe/Berlin")
    assert berlin.tzinfo.key == "Europe/Berlin" and berlin.utcoffset() == timedelta(hours=2)  # summer time
    moved = ical.parse_when("2030-07-01T09:00+00:00", tz="Europe/Berlin")
    assert (moved.hour, moved.tzinfo.key) == (11, "Europe/Berlin")
    assert ical.parse_when("2030-03-01") == date(2030, 3, 1)


@pytest.mark.parametrize(
    ("text", "tz", "all_day", "message"),
    [
        ("2030-03-01T09:00", None, False, "no UTC offset"),
        ("tomorrow", None, False, "not an ISO-8601"),
        ("2030-02-30", None, False, "not a valid date"),
        ("2030-03-01T09:00", "Mars/Olympus", False, "unknown time zone"),
        ("2030-03-01T09:00", "../../etc/passwd", False, "not an IANA"),
        ("2030-03-01T09:00Z", None, True, "takes dates"),
        ("0001-01-01", None, False, "between 1900 and 2999"),
    ],
)
def test_bad_times_and_zones_are_refused_with_a_reason(text, tz, all_day, message):
    with pytest.raises(ValueError, match=message):
        ical.parse_when(text, tz=tz, all_day=all_day)


def test_span_must_be_forward_and_of_one_kind():
    with pytest.raises(ValueError, match="exclusive"):
        ical.check_span(date(2030, 3, 1), date(2030, 3, 1))
    with pytest.raises(ValueError, match="both be dates"):
        ical.check_span(date(2030, 3, 1), datetime(2030, 3, 2, tzinfo=UTC))


def test_rrules_are_validated_against_the_start():
    aware = datetime(2030, 3, 1, 8, tzinfo=UTC)
    assert ical.validate_rrule("RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=4", aware) == "FREQ=WEEKLY;COUNT=4;BYDAY=MO,WE"
    assert ical.validate_rrule("FREQ=DAILY;UNTIL=20300310", date(2030, 3, 1)).endswith("UNTIL=20300310")
    for rule, message in [
        ("COUNT=3", "no FREQ"),
        ("FREQ=WEEKLY;BYDAY=XX", "does not parse"),
        ("FREQ=DAILY\r\nATTENDEE:mailto:x@y", "one line"),
        ("FREQ=DAILY;UNTIL=20300310", "UTC time"),
    ]:
        with pytest.raises(ValueError, match=message):
            ical.validate_rrule(rule, aware)
    with pytest.raises(ValueError, match="is a date"):
        ical.validate_rrule("FREQ=DAILY;UNTIL=20300310T000000Z", date(2030, 3, 1))


def test_attendees_take_name_and_address_forms():
    assert ical.parse_attendee("Ann Smith <ann@spine.test>") == ical.Attendee("ann@spine.test", "Ann Smith")
    assert ical.parse_attendee("mailto:bob@spine.test") == ical.Attendee("bob@spine.test", None)
    for bad in ("ann", "Ann <ann@spine.test>\r\nX:y", "a b@c.d", "<>"):
        with pytest.raises(ValueError):
            ical.parse_attendee(bad)


def test_resource_names_are_path_safe_and_distinct():
    assert ical.resource_name("3f1c-a.b_c") == "3f1c-a.b_c.ics"
    climbing = ical.resource_name("../../x")
    assert "/" not in climbing and ".." not in climbing and climbing.endswith(".ics")
    assert ical.resource_name("a/b") != ical.resource_name("a?b")
    assert len(ical.resource_name("x" * 255)) < 100


# ---- writing ----------------------------------------------------------------------------------------------


def test_a_full_event_round_trips():
    start = ical.parse_when("2030-03-01T09:00", tz="Europe/Berlin")
    people = [ical.Attendee("ann@spine.test", 'Ann "A" Smith'), ical.Attendee("bob@spine.test")]
    body = build(start=start, end=start + timedelta(minutes=30), rrule="FREQ=WEEKLY;COUNT=3",
                 description="line 1\nline 2", location="Room 1; east, 2nd floor", attendees=people)  # fmt: skip
    assert b"BEGIN:VTIMEZONE" in body and b"TZID:Europe/Berlin" in body
    view = find_event(body, "u-1")
    assert view.start == "2030-03-01T09:00:00+01:00" and view.end == "2030-03-01T09:30:00+01:00"
    assert view.tz == "Europe/Berlin" and view.rrule == "FREQ=WEEKLY;COUNT=3" and not view.all_day
    assert view.description == "line 1\nline 2" and view.location == "Room 1; east, 2nd floor"
    assert view.attendees == [{"email": "ann@spine.test", "name": 'Ann "A" Smith'},
                              {"email": "bob@spine.test", "name": None}]  # fmt: skip
    assert is_recurring(body)


def test_all_day_events_use_dates_with_an_exclusive_end():
    body = build(start=date(2030, 3, 2), end=date(2030, 3, 4))
    assert b"DTSTART;VALUE=DATE:20300302" in body and b"DTEND;VALUE=DATE:20300304" in body
    view = find_event(body, "u-1")
    assert view.all_day and (view.start, view.end) == ("2030-03-02", "2030-03-04")


@pytest.mark.parametrize(
    "hostile",
    [
        "Lunch\r\nATTENDEE:mailto:x@evil.test",
        "Lunch\nATTENDEE:mailto:x@evil.test",
        "Lunch\rATTENDEE:mailto:x@evil.test",
        "Lunch\x00\x1b[31m\x85ATTENDEE;CN=x:mailto:x@evil.test",
        "END:VEVENT\r\nBEGIN:VEVENT\r\nUID:other\r\nATTENDEE:mailto:x@evil.test",
    ],
)
def test_text_cannot_inject_properties_or_components(hostile):
    body = build(summary=hostile, location=hostile, description=hostile,
                 attendees=[ical.Attendee("a@spine.test", hostile)])  # fmt: skip
    cal = Calendar.from_ical(body)
    (event,) = cal.walk("VEVENT")
    attendees = event.get("attendee")
    assert str(attendees) == "mailto:a@spine.test"  # one attendee, ours
    for line in body.split(b"\r\n"):
        assert not line.startswith((b"ATTENDEE:", b"UID:other", b"BEGIN:VEVENT\x00"))
        assert not any(c < 32 and c != 9 for c in line)
    view = find_event(body, "u-1")
    assert "ATTENDEE" in view.summary and "\x1b" not in view.summary and "\x00" not in view.summary


def test_huge_text_is_refused_over_the_portable_size_but_stored_below_it():
    body = build(summary="x" * 200_000)
    assert len(find_event(body, "u-1").summary) == 200_000
    with pytest.raises(ValueError, match="at most"):
        build(summary="x" * 600_000)


def test_changes_keep_what_they_do_not_touch_and_bump_the_sequence():
    start = datetime(2030, 3, 1, 8, tzinfo=UTC)
    body = build(start=start, end=start + timedelta(hours=2), location="Room 1").replace(
        b"END:VEVENT", b"X-KEEP-ME:yes\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\nEND:VEVENT"
    )
    moved = datetime(2030, 3, 2, 10, tzinfo=UTC)
    changed = ical.apply_changes(body, "u-1", ical.Changes(summary="Moved", start=moved, location=""), now=NOW)
    view = find_event(changed, "u-1")
    assert view.summary == "Moved" and view.location is None and view.sequence == 1
    assert view.end == (moved + timedelta(hours=2)).isoformat()  # the duration is kept
    assert b"X-KEEP-ME:yes" in changed and b"BEGIN:VALARM" in changed
    with pytest.raises(ical.EventDataError):
        ical.apply_changes(body, "other-uid", ical.Changes(summary="x"), now=NOW)
    with pytest.raises(ical.EventDataError):
        ical.apply_changes(b"not a calendar", "u-1", ical.Changes(summary="x"), now=NOW)


def test_a_kept_rrule_must_fit_a_new_all_day_start():
    body = build(rrule="FREQ=DAILY;UNTIL=20300310T000000Z")
    with pytest.raises(ValueError, match="give a new --rrule"):
        ical.apply_changes(body, "u-1", ical.Changes(start=date(2030, 3, 1)), now=NOW)
    fine = ical.apply_changes(body, "u-1", ical.Changes(start=date(2030, 3, 1), rrule="FREQ=DAILY;COUNT=2"), now=NOW)
    assert find_event(fine, "u-1").all_day


# ---- reading ----------------------------------------------------------------------------------------------


def test_local_expansion_gives_each_occurrence_in_range_and_is_capped():
    start = ical.parse_when("2030-03-01T09:00", tz="Europe/Berlin")
    body = build(start=start, rrule="FREQ=DAILY;COUNT=10")
    views, truncated, problem = expand(body, datetime(2030, 3, 3, tzinfo=UTC), datetime(2030, 3, 6, tzinfo=UTC))
    assert [v.start for v in views] == [f"2030-03-0{d}T09:00:00+01:00" for d in (3, 4, 5)]
    assert all(v.recurrence_id and v.rrule is None for v in views) and not truncated and problem is None
    forever = build(rrule="FREQ=MINUTELY")
    views, truncated, _ = expand(forever, datetime(2030, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC), limit=50)
    assert len(views) == 50 and truncated


def test_summary_lines_are_one_short_line():
    body = build(summary="a\nb" + "c" * 500, location="L", rrule="FREQ=DAILY;COUNT=2",
                 attendees=[ical.Attendee("a@spine.test")])  # fmt: skip
    line = summary_line(find_event(body, "u-1"))
    assert "\n" not in line and len(line) < 300 and "RRULE:FREQ=DAILY;COUNT=2" in line and "1 attendee(s)" in line
    assert summary_line(None) == "(no event)"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe garbage",
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:notadate\r\nDTEND;VALUE=DATE:20300101\r\nEND:VEVENT\r\nEND:VCALENDAR",
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nRRULE:FREQ=NEVER\r\nEND:VEVENT\r\nEND:VCALENDAR",
        b"BEGIN:VCARD\r\nFN:x\r\nEND:VCARD",
        b"BEGIN:VCALENDAR\r\n" + b"BEGIN:VEVENT\r\n" * 5000,
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nATTENDEE;CN=\x1b]0;pwned\x07:mailto:a@b\r\nEND:VEVENT\r\nEND:VCALENDAR",
    ],
)
def test_hostile_server_data_never_raises(data):
    events, _problem = read_events(data)
    for view in events:
        assert isinstance(summary_line(view), str)
        assert "\x1b" not in str(view.to_dict())
    expand(data, datetime(2030, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC))
    is_recurring(data)


_LINES = st.sampled_from(
    ["BEGIN:VCALENDAR", "END:VCALENDAR", "BEGIN:VEVENT", "END:VEVENT", "UID:x", "SUMMARY:hi\\nthere",
     "DTSTART:20300101T090000Z", "DTSTART;VALUE=DATE:20300101", "DTSTART;TZID=Nowhere/Zone:20300101T090000",
     "DTEND:20291231T000000Z", "DURATION:P1D", "DURATION:-PT5M", "RRULE:FREQ=DAILY;COUNT=3", "RRULE:FREQ=YEARLY",
     "RRULE:FREQ=SECONDLY;INTERVAL=0", "EXDATE:20300102T090000Z", "RECURRENCE-ID:20300102T090000Z",
     "ATTENDEE;CN=\"a\":mailto:a@b", "SEQUENCE:abc", "BEGIN:VTIMEZONE", "END:VTIMEZONE", " folded"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_LINES, st.text(max_size=40)), max_size=30))
def test_reading_arbitrary_calendar_lines_never_raises(lines):
    data = "\r\n".join(lines).encode("utf-8", "surrogatepass")
    events, _ = read_events(data)
    for view in events:
        summary_line(view)
        view.to_dict()
    expand(data, datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC), limit=100)
    find_event(data, "x")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_reading_arbitrary_bytes_never_raises(data):
    read_events(data)
    is_recurring(data)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.text(max_size=100))
def test_any_text_we_write_reads_back_as_itself_without_controls(summary, name):
    # icalendar 7.3 reads a literal backslash followed by "N" as an escaped newline (its
    # _unescape_char replaces "\\N" before "\\\\"): a known gap, listed in docs/calendar.md.
    assume("\\N" not in summary)
    body = build(summary=summary, location=summary, attendees=[ical.Attendee("a@spine.test", name or None)])
    view = find_event(body, "u-1")
    expected = ical.clean_text(summary)
    assert view.summary == expected
    assert len(view.attendees) == 1 and view.attendees[0]["email"] == "a@spine.test"


def test_a_servers_expanded_answer_is_refused_when_it_is_not_expanded_or_lost_its_zone():
    from spine_comms.calendar.ical_read import read_instances

    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
    event = "BEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20310101T000000Z\r\n{}END:VEVENT\r\nEND:VCALENDAR\r\n"
    views, problem = read_instances(head + event.format("DTSTART:20310101T090000Z\r\nRRULE:FREQ=DAILY\r\n"))
    assert views == [] and "not expanded" in problem
    views, problem = read_instances(head + event.format("DTSTART;TZID=Nowhere/Office:20310101T090000\r\n"))
    assert views == [] and "Nowhere/Office" in problem
    views, problem = read_instances(head + event.format("DTSTART;TZID=Europe/Berlin:20310101T090000\r\n"))
    assert problem is None and views[0].start == "2031-01-01T09:00:00+01:00"
