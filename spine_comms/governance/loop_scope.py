"""A loop scope file in the spine's format (mailroom/state/loop-scopes/<LOOP-ID>.scope.md), parsed.

    ---                                  front matter: loop_id, status, owner, objective ...
    ### Phase 1: Email Authentication    one heading per phase
    **Goal:** ...
    | Step | Action | Evidence |         a table of steps; ids like 1.1
    **DoD:** ...                         the phase's Definition of Done
    ## Success Criteria                  a numbered list
    1. ...

Only that structure is read; the prose around it is ignored. A file with no
phase heading is refused, since every answer drawn from it would be empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_comms.core.errors import ContractError, Problem

_PHASE = re.compile(r"^#{2,4}\s+Phase\s+(\d+)\s*[:.\-–]\s*(.+?)\s*$", re.IGNORECASE)
_GOAL = re.compile(r"^\*\*Goal:?\*\*:?\s*(.+?)\s*$")
_DOD = re.compile(r"^\*\*(?:DoD|Definition of Done):?\*\*:?\s*(.+?)\s*$", re.IGNORECASE)
_ROW = re.compile(r"^\|\s*(\d+(?:\.\d+)+)\s*\|(.*)\|\s*$")
_SECTION = re.compile(r"^##\s+(.+?)\s*$")
_NUMBERED = re.compile(r"^(\d+)[.)]\s+(.+?)\s*$")
MAX_BYTES = 1024 * 1024


@dataclass
class Step:
    id: str
    action: str
    evidence: str
    line: int


@dataclass
class Phase:
    number: str
    title: str
    line: int
    goal: str = ""
    dod: str = ""
    steps: list[Step] = field(default_factory=list)


@dataclass
class Criterion:
    number: str
    text: str
    line: int


@dataclass
class LoopScope:
    path: Path
    loop_id: str
    front_matter: dict[str, Any]
    phases: list[Phase]
    criteria: list[Criterion]


def parse_scope(path: Path) -> LoopScope:
    shown = str(path)
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        raise ContractError(f"{shown}: {reason}", problems=[Problem(shown, None, "", reason)]) from None
    if len(raw) > MAX_BYTES:
        raise ContractError(f"{shown}: larger than {MAX_BYTES} bytes")
    lines = raw.decode("utf-8", errors="replace").splitlines()
    front, body_start = _front_matter(lines, shown)
    phases: list[Phase] = []
    criteria: list[Criterion] = []
    section = ""
    for index in range(body_start, len(lines)):
        line, number = lines[index].strip(), index + 1
        if match := _PHASE.match(line):
            phases.append(Phase(match.group(1), match.group(2), number))
            section = "phase"
        elif match := _SECTION.match(line):
            section = "criteria" if "success criteria" in match.group(1).lower() else ""
        elif section == "phase" and (match := _GOAL.match(line)):
            phases[-1].goal = match.group(1)
        elif section == "phase" and (match := _DOD.match(line)):
            phases[-1].dod = match.group(1)
        elif section == "phase" and (match := _ROW.match(line)):
            cells = [c.strip() for c in match.group(2).split("|")]
            phases[-1].steps.append(Step(match.group(1), cells[0], cells[1] if len(cells) > 1 else "", number))
        elif section == "criteria" and (match := _NUMBERED.match(line)):
            criteria.append(Criterion(match.group(1), match.group(2), number))
    if not phases:
        reason = "no `### Phase N: title` heading; is it a loop scope?"
        raise ContractError(f"{shown}: no phases", problems=[Problem(shown, None, "", reason)])
    loop_id = str(front.get("loop_id") or path.name.removesuffix(".md").removesuffix(".scope"))
    return LoopScope(path, loop_id, front, phases, criteria)


def _front_matter(lines: list[str], shown: str) -> tuple[dict[str, Any], int]:
    if not lines or lines[0].strip() != "---":
        return {}, 0
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            import yaml

            try:
                data = yaml.load("\n".join(lines[1:index]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 2 if mark else 1
                problem = Problem(shown, line, "front matter", "not valid YAML")
                raise ContractError(f"{shown}: front matter is not YAML", problems=[problem]) from None
            return (data if isinstance(data, dict) else {}), index + 1
    raise ContractError(f"{shown}: front matter never closed",
                        problems=[Problem(shown, 1, "front matter", "opening --- without a closing ---")])  # fmt: skip
