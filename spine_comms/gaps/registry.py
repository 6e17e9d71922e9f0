"""operational.gaps.yaml as the spine keeps it: read, append, close, always round-trip.

Filing appends each entry at the end of `gaps:` and rewrites `updated`; closing
sets the closing fields of one entry and `updated`. Nothing else in the file
moves (core.yaml_roundtrip verifies every edit). Ids are allocated from the file
as it is under the lock: the highest GAP-OP number + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from spine_comms.core.errors import ContractError, Problem, UsageError
from spine_comms.core.root import Root
from spine_comms.core.yaml_roundtrip import RoundTripYaml
from spine_comms.gaps import schema
from spine_comms.gaps.drafts import Closure, GapDraft

NEW_FILE = """\
# Operational Gaps - Runtime SSOT Discoveries
#
# Issues found during work that are out of scope to fix at once (the spine's schema:
# gap.schema.yaml 1.1). Written by spine-comms gaps.file; edit by hand with care.

version: 1
updated: "{stamp}"
gaps: []
"""


def gaps_path(root: Root) -> Path:
    """`<root>/bindings/operational.gaps.yaml`, or the spine's `ops/bindings/` one."""
    return root.bindings_dir / schema.GAPS_FILE


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def open_gaps(path: Path, *, create_stamp: str | None = None) -> RoundTripYaml:
    """The registry, checked for its shape (a mapping with a `gaps` list). With `create_stamp`,
    a missing file starts empty (standalone roots have none yet); the caller saves it."""
    if not path.exists() and create_stamp is not None:
        return RoundTripYaml.from_text(NEW_FILE.format(stamp=create_stamp), str(path))
    doc = RoundTripYaml.load(path)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("gaps"), list):
        problem = Problem(str(path), 1, "gaps", "expected a mapping with a `gaps:` list")
        raise ContractError(f"{path}: not a gaps registry", problems=[problem])
    return doc


def entries(doc: RoundTripYaml) -> list[Any]:
    return doc.data["gaps"]


def next_number(doc: RoundTripYaml) -> int:
    numbers = [n for n in (schema.id_number(e.get("id")) for e in entries(doc) if isinstance(e, dict)) if n is not None]
    return max(numbers, default=0) + 1


def index_of(doc: RoundTripYaml, gap_id: str) -> int | None:
    for index, entry in enumerate(entries(doc)):
        if isinstance(entry, dict) and entry.get("id") == gap_id:
            return index
    return None


def open_duplicate(doc: RoundTripYaml, title: str) -> str | None:
    for entry in entries(doc):
        if isinstance(entry, dict) and entry.get("status") == "open" and schema.title_of(entry) == title:
            return str(entry.get("id"))
    return None


@dataclass
class Filing:
    filed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def new_entry(draft: GapDraft, gap_id: str, moment: datetime) -> dict[str, Any]:
    """The entry as gaps-file writes it, in its key order, with only schema fields."""
    entry: dict[str, Any] = {
        "id": gap_id,
        "title": draft.title,
        "discovered_by": draft.discovered_by.strip(),
        "discovered_at": moment.strftime("%Y-%m-%d"),
        "type": draft.type,
        "classification": draft.type,
    }
    if draft.doc:
        entry["doc"] = draft.doc
    entry["description"] = draft.description.strip("\n").rstrip() + "\n"
    entry.update(severity=draft.severity, status="open", parent_loop=draft.parent_loop,
                 notes=f"Filed via gaps.file at {stamp(moment)}")  # fmt: skip
    return entry


def file_gaps(doc: RoundTripYaml, drafts: list[GapDraft], moment: datetime) -> Filing:
    """Append every draft that is not already open under the same title. Explicit ids that are
    taken are refused (exit 2) before anything changes."""
    taken = [d for d in drafts if d.id != "auto" and index_of(doc, d.id) is not None]
    if taken:
        raise UsageError("gaps.file: id already in the registry", problems=[
            Problem(d.where, d.line, "id", f"{d.id} already exists in {doc.source}") for d in taken])  # fmt: skip
    result = Filing()
    number = next_number(doc)
    for draft in drafts:
        existing = open_duplicate(doc, draft.title)
        if existing:
            result.skipped.append({"title": draft.title, "existing_id": existing})
            continue
        if draft.id == "auto":
            gap_id, number = f"GAP-OP-{number}", number + 1
        else:
            gap_id, number = draft.id, max(number, schema.id_number(draft.id) + 1)
        entry = new_entry(draft, gap_id, moment)
        wrong = schema.violations(entry)
        if wrong:  # a bug here, not the user's input: drafts were checked
            raise ContractError(f"gaps.file: entry {gap_id} would break the gap schema: {wrong}")
        doc.append_item(("gaps",), entry)
        result.filed.append(entry)
    if result.filed:
        doc.set_scalar(("updated",), stamp(moment))
    return result


@dataclass
class Closing:
    closed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def close_gaps(doc: RoundTripYaml, closures: list[Closure], moment: datetime) -> Closing:
    """Set status, fixed_in, notes, regression_lock_id and fixed_at/closed_at. A gap that is not
    open is skipped (idempotent). High/critical need a real regression lock: every problem is
    reported, exit 2, before anything changes."""
    problems = []
    for item in closures:
        index = index_of(doc, item.id)
        if index is None:
            problems.append(Problem(item.where, item.line, "id", f"{item.id} is not in {doc.source}"))
            continue
        entry = entries(doc)[index]
        lock = item.regression_lock_id or entry.get("regression_lock_id")
        needed = entry.get("status") == "open" and schema.needs_regression_lock(entry.get("severity"), item.status)
        if needed and not schema.real_regression_lock(lock):
            problems.append(Problem(item.where, item.line, "regression_lock_id",
                                    f"{item.id} is {entry.get('severity')}: --regression-lock-id is required "
                                    f"(a gate or test id; {schema.LEGACY_LOCK}* is refused)"))  # fmt: skip
    if problems:
        raise UsageError("gaps.close: refused", problems=problems)
    result = Closing()
    for item in closures:
        index = index_of(doc, item.id)
        entry = entries(doc)[index]
        if entry.get("status") != "open":
            result.skipped.append({"id": item.id, "status": str(entry.get("status"))})
            continue
        changes: dict[str, Any] = {"status": item.status}
        for name in ("fixed_in", "notes", "regression_lock_id"):
            if getattr(item, name):
                changes[name] = getattr(item, name)
        changes["fixed_at" if item.status == "fixed" else "closed_at"] = moment.strftime("%Y-%m-%d")
        for name, value in changes.items():
            doc.set_scalar(("gaps", index, name), value)
        result.closed.append({"id": item.id, **changes})
    if result.closed:
        doc.set_scalar(("updated",), stamp(moment))
    return result
