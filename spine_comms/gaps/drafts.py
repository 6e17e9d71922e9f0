"""What the user asked for, checked before anything is locked or written.

gaps.file takes one gap from its flags or many from `--batch FILE` (a list, or
`{gaps: [...]}`); gaps.close takes ids from `--id` or `--batch` (a list of ids or
of `{id, status?, fixed_in?, notes?, regression_lock_id?}`, or `{gaps: [...]}` /
`{ids: [...]}`), as the spine's gaps-file and gaps-close do. Every problem is
collected, one line each, so a bad batch is fixed in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_comms.core.errors import Problem, UsageError
from spine_comms.core.yamlfile import load_yaml
from spine_comms.gaps import schema

MAX_DESCRIPTION_BYTES = 64 * 1024
FILE_ITEM_KEYS = {"id", "type", "severity", "doc", "discovered_by", "parent_loop", "loop_id", "description",
                  "description_file"}  # fmt: skip
CLOSE_ITEM_KEYS = {"id", "status", "fixed_in", "notes", "regression_lock_id"}
FLAGS = {"id": "--id", "type": "--type", "severity": "--severity", "description": "--description",
         "description_file": "--description-file", "discovered_by": "--discovered-by", "doc": "--doc",
         "loop_id": "--loop-id", "status": "--status"}  # fmt: skip


@dataclass
class GapDraft:
    """One gap to file. `where`/`line` say where it was asked for, for error lines."""

    where: str
    line: int | None
    id: str = "auto"
    type: str | None = None
    severity: str | None = None
    description: str | None = None
    discovered_by: str | None = None
    doc: str | None = None
    parent_loop: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return schema.derive_title(self.description or "")


@dataclass
class Closure:
    where: str
    line: int | None
    id: str
    status: str
    fixed_in: str | None = None
    notes: str | None = None
    regression_lock_id: str | None = None


def _read_description(path: Path, where: str, line: int | None, problems: list[Problem]) -> str | None:
    try:
        raw = path.read_bytes()[: MAX_DESCRIPTION_BYTES + 1]
    except OSError as exc:
        problems.append(Problem(where, line, "description_file", f"cannot read {path}: {exc.strerror or exc}"))
        return None
    if len(raw) > MAX_DESCRIPTION_BYTES:
        problems.append(Problem(where, line, "description_file", f"{path} is over {MAX_DESCRIPTION_BYTES} bytes"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(where, line, "description_file", f"{path} is not UTF-8"))
        return None


def _loop(loop_id: str | None, aliases: dict[str, str | None], draft: GapDraft) -> str | None:
    chosen = loop_id
    for flag, value in aliases.items():
        if value:
            draft.warnings.append(f"{flag} is an alias of --loop-id; use --loop-id")
            chosen = chosen or value
    return chosen


def from_flags(*, gap_id: str, gap_type: str | None, severity: str | None, description: str | None,
               description_file: Path | None, discovered_by: str | None, doc: str | None, loop_id: str | None,
               loop_aliases: dict[str, str | None]) -> list[GapDraft]:  # fmt: skip
    problems: list[Problem] = []
    draft = GapDraft("gaps.file", None, gap_id or "auto", gap_type, severity, None, discovered_by, doc)
    draft.parent_loop = _loop(loop_id, loop_aliases, draft)
    if description is not None and description_file is not None:
        problems.append(Problem("gaps.file", None, "description", "give --description or --description-file, not both"))
    elif description_file is not None:
        draft.description = _read_description(description_file, "gaps.file", None, problems)
    else:
        draft.description = description
    problems += check(draft)
    problems = [Problem(p.file, p.line, FLAGS.get(p.field, p.field), p.message) for p in problems]
    if problems:
        raise UsageError("gaps.file: invalid input", problems=problems)
    return [draft]


def from_batch(path: Path, *, discovered_by: str | None, loop_id: str | None,
               loop_aliases: dict[str, str | None]) -> list[GapDraft]:  # fmt: skip
    doc = load_yaml(path)
    items = doc.data.get("gaps") if isinstance(doc.data, dict) else doc.data
    shown = str(path)
    if not isinstance(items, list) or not items:
        raise UsageError(f"{shown}: expected a non-empty list of gaps, or a mapping with `gaps:`",
                         problems=[Problem(shown, 1, "gaps", "expected a non-empty list of gaps")])  # fmt: skip
    prefix = ("gaps",) if isinstance(doc.data, dict) else ()
    problems: list[Problem] = []
    drafts = []
    for index, item in enumerate(items):
        line = doc.line_of((*prefix, index))
        where = f"{shown}"
        if not isinstance(item, dict):
            problems.append(Problem(where, line, f"gaps[{index}]", "each gap must be a mapping"))
            continue
        for key in sorted(set(item) - FILE_ITEM_KEYS, key=str):
            problems.append(Problem(where, doc.line_of((*prefix, index, key)), f"gaps[{index}].{key}",
                                    f"unknown key (allowed: {', '.join(sorted(FILE_ITEM_KEYS))})"))  # fmt: skip
        draft = GapDraft(where, line, str(item.get("id") or "auto"), item.get("type"), item.get("severity"), None,
                         item.get("discovered_by") or discovered_by, item.get("doc"))  # fmt: skip
        draft.parent_loop = item.get("parent_loop") or item.get("loop_id") or _loop(loop_id, loop_aliases, draft)
        if item.get("description") is not None and item.get("description_file") is not None:
            problems.append(Problem(where, line, f"gaps[{index}]", "give description or description_file, not both"))
        elif item.get("description_file") is not None:
            draft.description = _read_description(path.parent / str(item["description_file"]), where, line, problems)
        else:
            draft.description = item.get("description")
        problems += [Problem(p.file, p.line, f"gaps[{index}].{p.field}", p.message) for p in check(draft)]
        drafts.append(draft)
    if problems:
        raise UsageError("gaps.file: invalid batch", problems=problems)
    return drafts


def check(draft: GapDraft) -> list[Problem]:
    """The schema's rules for a new gap, plus gaps-file's own: a loop id is mandatory."""
    out = []

    def problem(name: str, message: str) -> None:
        out.append(Problem(draft.where, draft.line, name, message))

    if draft.id != "auto" and schema.id_number(draft.id) is None:
        problem("id", f"must be auto or GAP-OP-<number> (found {draft.id!r})")
    if draft.type not in schema.TYPES:
        problem(
            "type", f"required, one of {', '.join(schema.TYPES)}" + (f" (found {draft.type!r})" if draft.type else "")
        )
    if draft.severity not in schema.SEVERITIES:
        found = f" (found {draft.severity!r})" if draft.severity else ""
        problem("severity", f"required, one of {', '.join(schema.SEVERITIES)}{found}")
    if not isinstance(draft.description, str) or not draft.description.strip():
        problem("description", "required: --description TEXT or --description-file PATH")
    if not isinstance(draft.discovered_by, str) or not draft.discovered_by.strip():
        problem("discovered_by", "required: --discovered-by (a loop id, an audit, an agent)")
    if draft.doc is not None and not isinstance(draft.doc, str):
        problem("doc", "must be a path string")
    if not draft.parent_loop and isinstance(draft.discovered_by, str) and schema.LOOP_RE.match(draft.discovered_by):
        draft.parent_loop = draft.discovered_by  # gaps-file infers it from a loop-id discoverer
    if not draft.parent_loop:
        problem("loop_id", "Policy requires --loop-id (no-new-unlinked-gap)")
    elif not isinstance(draft.parent_loop, str) or not schema.LOOP_RE.match(draft.parent_loop):
        problem("loop_id", f"must match LOOP-[A-Z0-9-]+ (found {draft.parent_loop!r})")
    return out


def closures_from(ids: list[str], batch: Path | None, *, status: str | None, fixed_in: str | None,
                  notes: str | None, regression_lock_id: str | None) -> list[Closure]:  # fmt: skip
    problems: list[Problem] = []
    if status not in schema.CLOSING_STATUSES:
        problems.append(Problem("gaps.close", None, "--status", "required: fixed or closed"
                                + (f" (found {status!r})" if status else "")))  # fmt: skip
    closures = [
        Closure("gaps.close", None, gap_id, status or "", fixed_in, notes, regression_lock_id) for gap_id in ids
    ]
    if batch is not None:
        closures += _closures_from_batch(batch, status or "", fixed_in, notes, regression_lock_id, problems)
    if not closures and not problems:
        problems.append(Problem("gaps.close", None, "--id", "required: --id GAP-OP-<n> or --batch FILE"))
    for item in closures:
        if schema.id_number(item.id) is None:
            field = "--id" if item.where == "gaps.close" else "id"
            problems.append(
                Problem(item.where, item.line, field, f"must look like GAP-OP-<number> (found {item.id!r})")
            )
        if item.status not in schema.CLOSING_STATUSES and item.where != "gaps.close":
            problems.append(
                Problem(item.where, item.line, "status", f"must be fixed or closed (found {item.status!r})")
            )
    if problems:
        raise UsageError("gaps.close: invalid input", problems=problems)
    return closures


def _closures_from_batch(path: Path, status: str, fixed_in, notes, lock, problems: list[Problem]) -> list[Closure]:
    doc = load_yaml(path)
    data: Any = doc.data
    prefix: tuple = ()
    if isinstance(data, dict):
        key = "gaps" if "gaps" in data else "ids"
        data, prefix = data.get(key), (key,)
    if not isinstance(data, list) or not data:
        problems.append(Problem(str(path), 1, "", "expected a non-empty list of ids or of {id, status?, ...}"))
        return []
    out = []
    for index, item in enumerate(data):
        line = doc.line_of((*prefix, index))
        if isinstance(item, str):
            out.append(Closure(str(path), line, item, status, fixed_in, notes, lock))
        elif isinstance(item, dict):
            for key in sorted(set(item) - CLOSE_ITEM_KEYS, key=str):
                problems.append(Problem(str(path), line, f"[{index}].{key}", "unknown key"))
            out.append(Closure(str(path), line, str(item.get("id", "")), item.get("status") or status,
                               item.get("fixed_in", fixed_in), item.get("notes", notes),
                               item.get("regression_lock_id", lock)))  # fmt: skip
        else:
            problems.append(Problem(str(path), line, f"[{index}]", "each item is an id or a mapping with id"))
    return out
