"""calendar.global.yaml as desired CalDAV events: validation, UIDs, rendering, the desired hash."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spine_comms.calendar.layers import desired_events, escape, fold, load_source, payload_hash, vtimezone
from spine_comms.core.errors import ContractError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "spine" / "calendar.global.yaml"


def copy_with(tmp_path: Path, old: str, new: str) -> Path:
    text = FIXTURE.read_text()
    assert old in text, old
    path = tmp_path / "calendar.global.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_real_layers_give_seven_events_with_the_spines_uid_strategy():
    events = desired_events(load_source(FIXTURE))
    assert [e.event_id for e in events] == [
        "infra-backup-window", "automation-daily-control", "identity-calendar-pull-anchor",
        "personal-calendar-review", "spine-verification-window", "spine-weekly-hygiene-cadence",
        "life-weekly-planning",
    ]  # fmt: skip
    assert [e.authority for e in events] == ["spine", "spine", "external", "external", "spine", "spine", "external"]
    infra = events[0]
    # source_ref: the layer's first source_contracts ref
    assert infra.source_ref == "ops/bindings/backup.calendar.yaml"
    raw = "infrastructure|infra-backup-window|ops/bindings/backup.calendar.yaml|Infrastructure backup window"
    assert infra.uid == hashlib.sha1(raw.encode()).hexdigest() + "@calendar.agentic-spine"
    key = "infrastructure|infra-backup-window|ops/bindings/backup.calendar.yaml"
    assert infra.canonical_key == hashlib.sha1(key.encode()).hexdigest()
    assert infra.name == infra.uid.split("@")[0] + ".ics"
    assert len({e.uid for e in events}) == 7


def test_rendering_is_deterministic_and_carries_rrule_dtstart_dtstamp_duration():
    first = desired_events(load_source(FIXTURE))
    again = desired_events(load_source(FIXTURE))
    assert [e.body for e in first] == [e.body for e in again]
    body = first[0].body.decode()
    assert "\r\nDTSTART;TZID=America/New_York:20260217T020000\r\n" in body
    assert "\r\nRRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=0\r\n" in body
    assert "\r\nDTSTAMP:20260217T000000Z\r\n" in body
    assert "\r\nDURATION:PT120M\r\n" in body
    assert "PRODID:-//agentic-spine//calendar-global-v1//EN" in body
    # Weekly on Mondays: 2026-02-17 is a Tuesday, so the first occurrence is Monday the 23rd.
    weekly = next(e for e in first if e.event_id == "spine-weekly-hygiene-cadence").body.decode()
    assert "DTSTART;TZID=America/New_York:20260223T090000" in weekly
    assert "RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0" in weekly


def test_the_body_parses_and_the_first_occurrence_is_2am_new_york_in_utc():
    import icalendar

    event = desired_events(load_source(FIXTURE))[0]
    calendar = icalendar.Calendar.from_ical(event.body)
    (vevent,) = calendar.walk("VEVENT")
    start = vevent.decoded("DTSTART")
    assert start.utcoffset().total_seconds() == -5 * 3600  # EST in February
    assert str(vevent["UID"]) == event.uid


def test_the_desired_hash_follows_content_not_folding_or_x_properties(tmp_path):
    base = desired_events(load_source(FIXTURE))[0]
    changed = desired_events(load_source(copy_with(tmp_path, "duration_minutes: 120", "duration_minutes: 90")))[0]
    assert changed.desired_hash != base.desired_hash
    assert changed.canonical_key == base.canonical_key and changed.uid == base.uid
    # A server that re-serializes: LF line ends, parameters re-ordered, RRULE parts shuffled, X- props gone.
    text = base.body.decode().replace("\r\n ", "").replace("\r\n", "\n")
    text = text.replace("RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=0", "RRULE:BYMINUTE=0;FREQ=DAILY;BYHOUR=2")
    text = re.sub(r"X-SPINE-[^\n]*\n", "", text)
    text = text.replace("DURATION:PT120M", "DURATION:PT2H")
    assert payload_hash(text.encode()) == base.desired_hash
    assert payload_hash(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n") is None


def test_a_changed_summary_changes_the_uid_but_not_the_canonical_key(tmp_path):
    base = desired_events(load_source(FIXTURE))[0]
    path = copy_with(tmp_path, 'summary: "Infrastructure backup window"', 'summary: "Backups"')
    renamed = desired_events(load_source(path))[0]
    assert renamed.uid != base.uid and renamed.name != base.name
    assert renamed.canonical_key == base.canonical_key


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("byhour: 2\n", "byhour: 24\n", "less than or equal to 23"),
        ('freq: "DAILY"', 'freq: "HOURLY"', "DAILY"),
        ('byday: ["MO"]', 'byday: ["XX"]', "byday XX"),
        ('authority: "external"', 'authority: "spine"', "identity must be external"),
        ('default: "America/New_York"', 'default: "Mars/Olympus"', "not an IANA time zone"),
        ('value: "20260217T000000Z"', 'value: "2026-02-17"', "String should match pattern"),
        ("    - life\n", "", "not in order: life"),
        ('id: "automation-daily-control"', 'id: "infra-backup-window"', None),
    ],
    ids=["byhour", "freq", "byday", "authority", "timezone", "dtstamp", "order", "dup-id-other-layer"],
)
def test_invalid_layers_are_reported_with_file_and_line(tmp_path, old, new, message):
    path = copy_with(tmp_path, old, new)
    if message is None:  # the same id in two layers is fine: the canonical key includes the layer
        assert len(desired_events(load_source(path))) == 7
        return
    with pytest.raises(ContractError) as caught:
        load_source(path)
    lines = caught.value.lines()
    assert any(message in line for line in lines), lines
    assert all(re.match(rf"{re.escape(str(path))}:\d+:", line) for line in lines if not line.startswith("hint")), lines


def test_one_event_id_twice_in_a_layer_is_refused(tmp_path):
    path = copy_with(tmp_path, 'id: "spine-weekly-hygiene-cadence"', 'id: "spine-verification-window"')
    with pytest.raises(ContractError, match="invalid contract") as caught:
        load_source(path)
    assert "used twice" in " ".join(caught.value.lines())


def test_vtimezone_rules_for_new_york_berlin_and_utc():
    ny = "\n".join(vtimezone("America/New_York", 2026))
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU" in ny and "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU" in ny
    assert "DTSTART:20250309T020000" in ny  # the wall clock before the change
    berlin = "\n".join(vtimezone("Europe/Berlin", 2026))
    assert "BYMONTH=3;BYDAY=-1SU" in berlin and "BYMONTH=10;BYDAY=-1SU" in berlin
    utc = vtimezone("UTC", 2026)
    assert "TZOFFSETFROM:+0000" in utc and not any(line.startswith("RRULE") for line in utc)


def test_escape_text():
    assert escape("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=400))
def test_fold_keeps_lines_within_75_octets_and_unfolds_to_the_original(text):
    line = "DESCRIPTION:" + text
    folded = fold(line)
    assert all(len(part.encode("utf-8")) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line
