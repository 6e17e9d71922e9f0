"""gaps.list's reading of the registry: filters, counts and the schema check of every entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spine_comms.core.errors import UsageError
from spine_comms.gaps import schema


@dataclass
class Filters:
    statuses: set[str] | None  # None: every status
    severities: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    loop: str | None = None

    def check(self) -> None:
        problems = []
        for flag, values, allowed in (
            ("--status", sorted(self.statuses or []), schema.LISTED_STATUSES),
            ("--severity", self.severities, schema.SEVERITIES),
            ("--type", self.types, schema.TYPES),
        ):
            problems += [f"{flag} {v!r}: not one of {', '.join(allowed)}" for v in values if v not in allowed]
        if problems:
            raise UsageError("gaps.list: " + problems[0], hint="; ".join(problems[1:]) or None)

    def keeps(self, entry: dict[str, Any]) -> bool:
        return (
            (self.statuses is None or entry.get("status") in self.statuses)
            and (not self.severities or entry.get("severity") in self.severities)
            and (not self.types or entry.get("type") in self.types)
            and (not self.loop or loop_of(entry) == self.loop)
        )


def loop_of(entry: dict[str, Any]) -> str | None:
    """parent_loop, else the deprecated `loop`, else a discoverer that is a loop id (older entries)."""
    found = entry.get("parent_loop") or entry.get("loop")
    if not found and isinstance(entry.get("discovered_by"), str) and schema.LOOP_RE.match(entry["discovered_by"]):
        found = entry["discovered_by"]
    return found


def row(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": entry.get("id"),
        "status": entry.get("status"),
        "severity": entry.get("severity"),
        "type": entry.get("type"),
        "loop": loop_of(entry),
        "discovered_at": entry.get("discovered_at"),
        "title": schema.title_of(entry),
    }


def line(r: dict[str, Any]) -> str:
    return (f"{r['id']}  {r['status']!s:<6}  {r['severity']!s:<8}  {r['type']!s:<15}  {r['loop'] or '-'}  "
            f"{r['title']}")  # fmt: skip


def survey(items: list[Any], filters: Filters) -> tuple[list[dict], dict[str, int], list[str]]:
    """(matching rows, count per status, schema violations as `id: field: message`)."""
    rows, counts, broken = [], {}, []
    for index, entry in enumerate(items):
        if not isinstance(entry, dict):
            broken.append(f"gaps[{index}]: not a mapping")
            continue
        name = entry.get("id") or f"gaps[{index}]"
        broken += [f"{name}: {where or 'entry'}: {message}"
                   for where, message in schema.violations(entry, grandfathered=True)]  # fmt: skip
        counts[str(entry.get("status"))] = counts.get(str(entry.get("status")), 0) + 1
        if filters.keeps(entry):
            rows.append(row(entry))
    return rows, counts, broken
