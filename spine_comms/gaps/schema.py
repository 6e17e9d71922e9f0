"""The spine's gap schema (ops/bindings/gap.schema.yaml, schema_version 1.1) as facts and checks.

D332 enforces it strictly in the spine: unknown keys are violations, so an entry
written here carries only the fields listed below. The rule for closing
(high or critical fixed/closed gaps need a real regression lock) lives here too.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_VERSION = "1.1"
GAPS_FILE = "operational.gaps.yaml"

TYPES = ("stale-ssot", "missing-entry", "agent-behavior", "unclear-doc", "duplicate-truth", "runtime-bug")
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "fixed", "closed")
# `accepted` is not in the schema's enum but 14 entries of the real file carry it; listing filters on it.
LISTED_STATUSES = (*STATUSES, "accepted")
CLOSING_STATUSES = ("fixed", "closed")
BLOCKER_CLASSES = ("blocked_by_ronny_arch_decision", "blocked_by_ronny_on_site", "blocked_by_runtime_access")

REQUIRED = ("id", "discovered_by", "discovered_at", "type", "description", "severity", "status")
OPTIONAL = (
    "title", "classification", "doc", "fixed_in", "parent_loop", "notes", "regression_lock_id", "blocker_class",
    "blocked_case", "owner", "fixed_at", "closed_at", "created_at", "fixed_by", "evidence_run_keys", "next_action",
    "eta", "resolution", "deferred_reason", "deferred_ref", "deferred_to_repo", "loop",
)  # fmt: skip
DATE_FIELDS = ("discovered_at", "fixed_at", "closed_at", "created_at")

ID_RE = re.compile(r"^GAP-OP-(\d+)$")
# gaps-file's own test for --loop-id; the schema's parent_loop pattern (LOOP-.*) is looser.
LOOP_RE = re.compile(r"^LOOP-[A-Z0-9-]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LEGACY_LOCK = "LEGACY-NO-REGRESSION-LOCK-"
TITLE_MAX = 110


def derive_title(description: str) -> str:
    """As gaps-file does: the first non-blank line of the description, at most 110 characters."""
    for line in str(description).splitlines():
        if line.strip():
            return line.strip()[:TITLE_MAX].rstrip()
    return ""


def title_of(entry: dict[str, Any]) -> str:
    """An entry's title: its own `title`, else derived (older entries have none)."""
    title = entry.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return derive_title(entry.get("description", ""))


def id_number(gap_id: Any) -> int | None:
    match = ID_RE.match(str(gap_id)) if isinstance(gap_id, str) else None
    return int(match.group(1)) if match else None


def needs_regression_lock(severity: str, status: str) -> bool:
    return severity in ("high", "critical") and status in CLOSING_STATUSES


def real_regression_lock(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not value.startswith(LEGACY_LOCK)


def violations(entry: Any, *, grandfathered: bool = False) -> list[tuple[str, str]]:
    """(field, message) for every way `entry` breaks the schema; empty when it conforms.

    `grandfathered`: a LEGACY-NO-REGRESSION-LOCK-* id satisfies the regression rule, as it does
    for the entries closed before the rule existed (a check of the file as it is, not of a write).
    """
    if not isinstance(entry, dict):
        return [("", f"a gap must be a mapping, found {type(entry).__name__}")]
    out: list[tuple[str, str]] = []
    for name in REQUIRED:
        value = entry.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            out.append((name, "required"))
    for name in entry:
        if name not in REQUIRED and name not in OPTIONAL:
            out.append((str(name), "unknown key (the gap schema allows only its listed fields)"))
    checks = [
        ("id", lambda v: isinstance(v, str) and ID_RE.match(v), "must look like GAP-OP-<number>"),
        ("type", lambda v: v in TYPES, f"must be one of {', '.join(TYPES)}"),
        ("severity", lambda v: v in SEVERITIES, f"must be one of {', '.join(SEVERITIES)}"),
        ("status", lambda v: v in STATUSES, f"must be one of {', '.join(STATUSES)}"),
        ("parent_loop", lambda v: isinstance(v, str) and v.startswith("LOOP-"), "must match LOOP-.*"),
        ("blocker_class", lambda v: v in BLOCKER_CLASSES, f"must be one of {', '.join(BLOCKER_CLASSES)}"),
        ("evidence_run_keys", lambda v: isinstance(v, list), "must be a list"),
        *[(name, lambda v: isinstance(v, str) and DATE_RE.match(v), "must be a YYYY-MM-DD string") for name in
          DATE_FIELDS],
    ]  # fmt: skip
    for name, ok, message in checks:
        if entry.get(name) is not None and not ok(entry[name]):
            out.append((name, f"{message} (found {entry[name]!r})"))
    for name in ("discovered_by", "description", "title", "doc", "fixed_in", "notes", "regression_lock_id"):
        if entry.get(name) is not None and not isinstance(entry[name], str):
            out.append((name, f"must be a string (found {type(entry[name]).__name__})"))
    lock = entry.get("regression_lock_id")
    legacy_ok = grandfathered and isinstance(lock, str) and lock.startswith(LEGACY_LOCK)
    if needs_regression_lock(entry.get("severity"), entry.get("status")) and not (
        real_regression_lock(lock) or legacy_ok
    ):
        out.append(("regression_lock_id", f"a {entry.get('severity')} gap that is {entry.get('status')} needs a "
                    f"regression lock id (not {LEGACY_LOCK}*)"))  # fmt: skip
    return out
