"""The operator's calendar layers (calendar.global.yaml) as the events a CalDAV calendar should hold.

Pure: a YAML file in, a list of DesiredEvent out, each with its iCalendar body, the
spine's deterministic UID, the canonical key the sync state is keyed by and the
desired hash. Same file, same bytes, on every machine: the DTSTAMP is the
binding's fixed value and the VTIMEZONE is derived from the zone's rules.

Choices the spine leaves open, made here (documented in docs/calendar-sync):
- source_ref is the layer's FIRST source_contracts ref ("" when it has none);
- the UID is sha1("layer|event_id|source_ref|summary") in hex, "@" determinism.uid.domain;
- the canonical key is sha1("layer|event_id|source_ref") in hex (the spine's state policy);
- the resource name is the UID's hex part + ".ics", so it follows the UID;
- the desired hash is sha256 of the event's normalized payload (see `fingerprint`), the
  same function applied to a server's copy, so "the server holds what we would write"
  can be told even when the server re-serialized the body.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from spine_comms.core.contracts import ContractModel, validate
from spine_comms.core.yamlfile import load_yaml

# The spine's schema (calendar.global.schema.yaml): which layers must have which authority.
SPINE_AUTHORITY = {
    "infrastructure": "spine",
    "automation": "spine",
    "spine": "spine",
    "identity": "external",
    "personal": "external",
}
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
RENDER_FORMAT = 1  # bump when the rendering changes meaningfully: every event is then updated once


class SourceContract(ContractModel):
    type: str
    ref: str


class EventSpec(ContractModel):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    summary: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)
    freq: Literal["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]
    byday: list[str] | None = None
    byhour: int = Field(ge=0, le=23)
    byminute: int = Field(ge=0, le=59)
    duration_minutes: int = Field(ge=1, le=60 * 24 * 366)

    @field_validator("byday")
    @classmethod
    def _weekdays(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("byday is empty: leave it out, or name days (MO, TU ...)")
        bad = [d for d in value if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"byday {', '.join(map(str, bad))}: use {', '.join(WEEKDAYS)}")
        return value


class LayerDefinition(ContractModel):
    authority: Literal["spine", "external"]
    authority_direction: str | None = None
    source_contracts: list[SourceContract] = Field(default_factory=list)
    events: list[EventSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> LayerDefinition:
        ids = [e.id for e in self.events]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"event id(s) used twice in one layer: {', '.join(twice)}")
        return self


class Layers(ContractModel):
    order: list[str] = Field(min_length=1)
    definitions: dict[str, LayerDefinition]

    @model_validator(mode="after")
    def _order_matches(self) -> Layers:
        if len(set(self.order)) != len(self.order):
            raise ValueError("layers.order names a layer twice")
        missing = [name for name in self.order if name not in self.definitions]
        extra = [name for name in self.definitions if name not in self.order]
        if missing or extra:
            parts = [
                f"no definition for {', '.join(missing)}" if missing else "",
                f"not in order: {', '.join(extra)}" if extra else "",
            ]
            raise ValueError("layers.order and layers.definitions disagree: " + "; ".join(p for p in parts if p))
        wrong = [
            f"{name} must be {SPINE_AUTHORITY[name]}"
            for name, layer in self.definitions.items()
            if name in SPINE_AUTHORITY and layer.authority != SPINE_AUTHORITY[name]
        ]
        if wrong:
            raise ValueError(f"authority against the spine's schema: {'; '.join(wrong)}")
        return self


class CalendarMeta(ContractModel):
    id: str
    name: str | None = None
    prodid: str = "-//spine-comms//calendar-sync//EN"
    default_dtstart_date: date

    @field_validator("default_dtstart_date", mode="before")
    @classmethod
    def _date(cls, value: object) -> object:
        if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
            raise ValueError(f"{value!r} is not a YYYY-MM-DD date")
        return value


class Timezone(ContractModel):
    default: str
    output: dict[str, Any] | None = None  # the spine's generator's settings, not read here
    handling: dict[str, Any] | None = None  # the spine's generator's settings, not read here

    @field_validator("default")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/New_York)") from None
        return value


class UidRule(ContractModel):
    strategy: str = "sha1(layer|event_id|source_ref|summary)"
    domain: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")

    @field_validator("strategy")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != "sha1(layer|event_id|source_ref|summary)":
            raise ValueError(f"uid strategy {value!r} is not supported: use sha1(layer|event_id|source_ref|summary)")
        return value


class DtstampRule(ContractModel):
    strategy: str = "fixed_from_binding"
    value: str = Field(pattern=r"^[0-9]{8}T[0-9]{6}Z$")


class Determinism(ContractModel):
    uid: UidRule
    dtstamp: DtstampRule
    ordering: dict[str, Any] | None = None  # the spine's generator's, not read here


class CalendarSource(ContractModel):
    """calendar.global.yaml, or any events file in the same shape (feeds, conflict_policy and
    sync_contracts are the spine's generator's business and may be left out). The spine's keys are listed;
    any other key is refused as a typo."""

    spine_owned: ClassVar[bool] = True

    version: int | str = 1
    updated_at: str | date | None = None
    updated: str | date | None = None  # the spine's older name of updated_at
    owner: str | None = None
    feeds: dict[str, Any] | None = None
    conflict_policy: dict[str, Any] | None = None
    sync_contracts: dict[str, Any] | None = None
    calendar: CalendarMeta
    timezone: Timezone
    layers: Layers
    determinism: Determinism


@dataclass(frozen=True)
class DesiredEvent:
    layer: str
    authority: str
    event_id: str
    summary: str
    source_ref: str
    uid: str
    canonical_key: str
    name: str  # the resource name in the calendar collection
    body: bytes  # the iCalendar object to PUT
    desired_hash: str


@dataclass(frozen=True)
class Source:
    path: Path
    sha256: str
    model: CalendarSource

    @property
    def layer_order(self) -> list[str]:
        return list(self.model.layers.order)

    def authority(self, layer: str) -> str | None:
        definition = self.model.layers.definitions.get(layer)
        return definition.authority if definition else None


def load_source(path: Path | str) -> Source:
    """Load and validate; every problem is a ContractError with file:line (exit 2)."""
    doc = load_yaml(path, spine_owned=CalendarSource.spine_owned)  # the spine's file: read as yq reads it
    return Source(Path(path), doc.sha256, validate(doc, CalendarSource))


def desired_events(source: Source, layers: list[str] | None = None) -> list[DesiredEvent]:
    """The events of the given layers (default: all), layer by layer in the file's order."""
    model = source.model
    timezone_block = vtimezone(model.timezone.default, model.calendar.default_dtstart_date.year)
    out = []
    for layer in model.layers.order:
        if layers is not None and layer not in layers:
            continue
        definition = model.layers.definitions[layer]
        source_ref = definition.source_contracts[0].ref if definition.source_contracts else ""
        for event in definition.events:
            out.append(_desired(model, layer, definition.authority, source_ref, event, timezone_block))
    return out


def sha1_hex(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()


def _desired(
    model: CalendarSource, layer: str, authority: str, source_ref: str, event: EventSpec, timezone_block: list[str]
) -> DesiredEvent:
    uid_hex = sha1_hex(layer, event.id, source_ref, event.summary)
    uid = f"{uid_hex}@{model.determinism.uid.domain}"
    body = render(model, layer, event, uid, timezone_block)
    return DesiredEvent(
        layer=layer,
        authority=authority,
        event_id=event.id,
        summary=event.summary,
        source_ref=source_ref,
        uid=uid,
        canonical_key=sha1_hex(layer, event.id, source_ref),
        name=f"{uid_hex}.ics",
        body=body,
        desired_hash=payload_hash(body),
    )


def first_start(model: CalendarSource, event: EventSpec) -> datetime:
    """DTSTART: the default date at byhour:byminute, moved to the first day byday allows (RFC 5545
    wants DTSTART to be an occurrence; otherwise it counts as an extra one)."""
    day = model.calendar.default_dtstart_date
    if event.byday:
        wanted = {WEEKDAYS.index(d) for d in event.byday}
        while day.weekday() not in wanted:
            day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, event.byhour, event.byminute)


def rrule(event: EventSpec) -> str:
    parts = [f"FREQ={event.freq}"]
    if event.byday:
        parts.append("BYDAY=" + ",".join(event.byday))
    parts += [f"BYHOUR={event.byhour}", f"BYMINUTE={event.byminute}"]
    return ";".join(parts)


def render(model: CalendarSource, layer: str, event: EventSpec, uid: str, timezone_block: list[str]) -> bytes:
    tzid = model.timezone.default
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{model.calendar.prodid}",
        "CALSCALE:GREGORIAN",
        *timezone_block,
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{model.determinism.dtstamp.value}",
        f"DTSTART;TZID={tzid}:{first_start(model, event):%Y%m%dT%H%M%S}",
        f"DURATION:PT{event.duration_minutes}M",
        f"RRULE:{rrule(event)}",
        f"SUMMARY:{escape(event.summary)}",
    ]
    if event.description:
        lines.append(f"DESCRIPTION:{escape(event.description)}")
    lines += [f"X-SPINE-LAYER:{escape(layer)}", f"X-SPINE-EVENT-ID:{escape(event.id)}", "END:VEVENT", "END:VCALENDAR"]
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode("utf-8")


def escape(text: str) -> str:
    """RFC 5545 TEXT: backslash, semicolon, comma and newlines escaped."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def fold(line: str) -> str:
    """Fold at 75 octets without splitting a UTF-8 character (RFC 5545 3.1)."""
    raw = line.encode("utf-8")
    if len(raw) <= 75:
        return line
    pieces, current, limit = [], b"", 75
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > limit:
            pieces.append(current.decode("utf-8"))
            current, limit = b"", 74  # continuation lines start with a space
        current += encoded
    pieces.append(current.decode("utf-8"))
    return "\r\n ".join(pieces)


def vtimezone(tzid: str, year: int) -> list[str]:
    """A VTIMEZONE with yearly rules for the zone's transitions, from the year before `year` (so
    the first occurrence has an observance in force). Clients that know the IANA name use their
    own rules; this is for those that do not. Zones without DST get one STANDARD observance."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tzid)
    base = year - 1
    moment = datetime(base, 1, 1, tzinfo=UTC)
    before = moment.astimezone(zone)
    observances = []
    while moment.year == base:
        moment += timedelta(hours=1)
        after = moment.astimezone(zone)
        if after.utcoffset() != before.utcoffset():
            local = (moment + before.utcoffset()).replace(tzinfo=None)  # the instant, on the old wall clock
            observances.append((after, before.utcoffset(), local))
        before = after
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    if not observances:
        offset = _offset(before.utcoffset())
        return [
            *lines,
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZNAME:{before.tzname()}",
            f"TZOFFSETFROM:{offset}",
            f"TZOFFSETTO:{offset}",
            "END:STANDARD",
            "END:VTIMEZONE",
        ]
    for after, old_offset, local in observances:
        kind = "DAYLIGHT" if after.dst() else "STANDARD"
        last = local.day + 7 > _days_in_month(local)
        nth = -1 if last else (local.day - 1) // 7 + 1
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{local:%Y%m%dT%H%M%S}",
            f"RRULE:FREQ=YEARLY;BYMONTH={local.month};BYDAY={nth}{WEEKDAYS[local.weekday()]}",
            f"TZNAME:{after.tzname()}",
            f"TZOFFSETFROM:{_offset(old_offset)}",
            f"TZOFFSETTO:{_offset(after.utcoffset())}",
            f"END:{kind}",
        ]
    return [*lines, "END:VTIMEZONE"]


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _days_in_month(moment: datetime) -> int:
    following = (moment.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - timedelta(days=1)).day


# ---- the normalized payload: what the desired hash covers -------------------------------------------------

# The properties this sync sets and owns; X- properties and the VTIMEZONE are left out, as
# servers may drop or rewrite them without changing the event.
HASHED = ("UID", "DTSTAMP", "DTSTART", "DURATION", "RRULE", "SUMMARY", "DESCRIPTION")


def fingerprint(body: bytes) -> dict[str, str] | None:
    """The first VEVENT's owned properties, normalized (unfolded, parameters and RRULE parts
    sorted); None when the body holds no VEVENT."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = re.sub(r"\r?\n[ \t]", "", text)
    found: dict[str, str] = {"format": str(RENDER_FORMAT)}
    inside = False
    for line in text.splitlines():
        if line == "BEGIN:VEVENT":
            inside = True
            continue
        if line == "END:VEVENT" and inside:
            return found
        if not inside or ":" not in line:
            continue
        head, value = _split_property(line)
        name, *params = head.split(";")
        name = name.upper()
        if name not in HASHED:
            continue
        if name == "RRULE":
            value = ";".join(sorted(part.upper() for part in value.split(";") if part))
        elif name == "DURATION":
            value = _duration_seconds(value)
        found[name] = ";".join(sorted(p.upper() for p in params)) + ":" + value
    return None


def _duration_seconds(value: str) -> str:
    """PT95M and PT1H35M are one duration (Radicale re-serializes the first as the second)."""
    found = re.fullmatch(
        r"([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value.strip().upper()
    )
    if not found:
        return value
    sign, weeks, days, hours, minutes, seconds = found.groups()
    total = (int(weeks or 0) * 7 + int(days or 0)) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
    total += int(seconds or 0)
    return f"{'-' if sign == '-' else ''}{total}s"


def _split_property(line: str) -> tuple[str, str]:
    """Split at the first colon outside a quoted parameter value."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return line[:i], line[i + 1 :]
    return line, ""


def payload_hash(body: bytes) -> str | None:
    """sha256 of the normalized event payload (canonical JSON of `fingerprint`)."""
    found = fingerprint(body)
    if found is None:
        return None
    return hashlib.sha256(json.dumps(found, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()
