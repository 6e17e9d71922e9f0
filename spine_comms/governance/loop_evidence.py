"""loop.evidence: every step, Definition of Done and success criterion of a loop scope, with its proof.

The spine once closed this loop with no evidence behind its Definitions of Done;
this lists, for each part of the scope, the latest receipt that proves it (or
"unproven") so that cannot happen unseen. Which receipts prove what is the loop
evidence contract (contracts/loop_evidence.py): the root's
bindings/loop.evidence.contract.yaml, else the one shipped with spine-comms
(governance/loops/), which maps LOOP-COMMS-AGENTIC-LAYER-20260223.

A Definition of Done without a passing, fresh receipt fails the run (exit 1);
a step or success criterion without one is a warning. A receipt that is not
what a run wrote (edited, copied, hand-written: see core/receipt_seal.py) is
refused, named, and fails the run wherever it was offered as proof.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from spine_comms.contracts.loop_evidence import LOOP_EVIDENCE_CONTRACT, LoopEvidenceContract, LoopMapping, Proof
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.governance.loop_proofs import ProofOutcome, ReceiptIndex, judge, worst
from spine_comms.governance.loop_scope import LoopScope, parse_scope

SHIPPED = Path(__file__).resolve().parent / "loops"

LoopArg = Annotated[
    str,
    typer.Argument(metavar="LOOP", help="A loop id (LOOP-...), read from <mailroom state>/loop-scopes/<id>.scope.md, "
                   "or the path of a scope file.", show_default=False),
]  # fmt: skip
ContractOpt = Annotated[
    Path | None,
    typer.Option("--contract", metavar="FILE", help="The loop evidence contract to use instead of the root's "
                 "bindings/loop.evidence.contract.yaml (or, without one, the contract shipped with spine-comms)."),
]  # fmt: skip


@capability("loop.evidence", safety="read-only", approval="auto")
def loop_evidence(ctx: RunContext, loop: LoopArg, contract: ContractOpt = None) -> Result:
    """List every step, Definition of Done and success criterion of a loop scope with the latest receipt that
    proves it (capability, status, age, run key) or why it is unproven, failing or stale. Exit 1 while any
    Definition of Done lacks a passing, fresh receipt; unproven steps and criteria are warnings."""
    contract_path = _contract_path(ctx, contract)
    evidence = ctx.contracts.load(str(contract_path), LoopEvidenceContract)
    path = _scope_path(ctx, loop, evidence)
    scope = parse_scope(path)
    ctx.contracts.read[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()  # recorded like a contract
    mapping = evidence.loops.get(scope.loop_id)
    index = ReceiptIndex(ctx.root.receipts_dir, ctx.env, ctx.root.path)
    now = ctx.clock()
    result = Result()
    if mapping is None:
        result.add(
            Check(
                id="loop.evidence.mapping",
                status=Status.FAIL,
                detail=f"{contract_path} maps no proof for {scope.loop_id}",
                subject=scope.loop_id,
                expected=scope.loop_id,
                actual=sorted(evidence.loops),
            )
        )
        mapping = LoopMapping()
    else:
        _unknown_keys(result, scope, mapping, contract_path)

    def prove(kind: str, key: str, text: str, proofs: list[Proof] | None) -> dict[str, Any]:
        outcomes = [judge(p, index, now, mapping.max_age_hours) for p in proofs or []]
        verdict = worst([o.verdict for o in outcomes]) if outcomes else "undeclared"
        item = {"key": key, "text": text, "verdict": verdict, "detail": _detail(verdict, outcomes),
                "wants": [_wants(p) for p in proofs or []], "proofs": [o.to_dict() for o in outcomes]}  # fmt: skip
        if kind == "dod":  # one check per Definition of Done: these decide the exit code
            status = Status.OK if verdict == "proven" else Status.FAIL
            result.add(
                Check(
                    id=f"loop.dod.{key}",
                    status=status,
                    detail=item["detail"],
                    subject=text[:120],
                    expected=item["wants"],
                    actual=verdict,
                    evidence=item["proofs"],
                )
            )
        return item

    phases = []
    for phase in scope.phases:
        steps = [{"id": s.id, "action": s.action, "evidence": s.evidence,
                  **prove("step", s.id, s.action, mapping.steps.get(s.id))} for s in phase.steps]  # fmt: skip
        dod = prove(
            "dod", phase.number, phase.dod or f"(phase {phase.number} states no DoD)", mapping.dod.get(phase.number)
        )
        phases.append({"number": phase.number, "title": phase.title, "goal": phase.goal, "steps": steps, "dod": dod})
    criteria = [prove("criterion", c.number, c.text, mapping.criteria.get(c.number)) for c in scope.criteria]
    steps = [s for p in phases for s in p["steps"]]
    _refused(result, [*steps, *(p["dod"] for p in phases), *criteria])
    _aggregate(result, "loop.steps", "steps", [(s["id"], s) for s in steps])
    _aggregate(result, "loop.criteria", "success criteria", [(c["key"], c) for c in criteria])
    result.data = _data(scope, contract_path, phases, criteria)
    result.summary = _table(scope, phases, criteria)
    return result


def _aggregate(result: Result, check_id: str, what: str, items: list[tuple[str, dict]]) -> None:
    """Steps and criteria in one warning each: the table above lists them one by one."""
    open_items = [key for key, item in items if item["verdict"] != "proven"]
    detail = (f"all {len(items)} {what} proven" if not open_items
              else f"{len(open_items)} of {len(items)} {what} not proven: {', '.join(open_items)}")  # fmt: skip
    result.add(
        Check(
            id=check_id,
            status=Status.WARN if open_items else Status.OK,
            detail=detail,
            subject=what,
            expected="proven",
            actual=open_items,
        )
    )


def _refused(result: Result, items: list[dict]) -> None:
    """An edited, copied or hand-written receipt offered as proof fails the run, whatever it proves."""
    refused = {p["receipt"]: p["reason"] for item in items for p in item["proofs"] if p["verdict"] == "refused"}
    status = Status.FAIL if refused else Status.OK
    detail = (f"{len(refused)} receipt(s) refused: " + "; ".join(refused.values()) if refused
              else "every receipt offered as proof is one a run wrote")  # fmt: skip
    result.add(
        Check(
            id="loop.evidence.receipts",
            status=status,
            detail=detail,
            subject="receipts",
            expected="sealed and chained",
            actual=sorted(refused),
        )
    )


def _contract_path(ctx: RunContext, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser().resolve()
    in_root = ctx.contracts.path(LOOP_EVIDENCE_CONTRACT)
    return in_root if in_root.is_file() else SHIPPED / LOOP_EVIDENCE_CONTRACT


def _scope_path(ctx: RunContext, loop: str, evidence: LoopEvidenceContract) -> Path:
    given = Path(loop).expanduser()
    if given.is_file():
        return given.resolve()
    if not loop.startswith("LOOP-") or "/" in loop:
        raise UsageError(f"{loop}: no such scope file, and not a loop id (LOOP-...)")
    mapping = evidence.loops.get(loop)
    candidates = [ctx.root.path / mapping.scope] if mapping and mapping.scope else []
    name = f"{loop}.scope.md"
    candidates += [ctx.mailroom.state / "loop-scopes" / name, ctx.root.path / "mailroom/state/loop-scopes" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"no scope file for {loop}",
                     hint="looked in " + ", ".join(str(c) for c in dict.fromkeys(candidates)))  # fmt: skip


def _unknown_keys(result: Result, scope: LoopScope, mapping: LoopMapping, contract_path: Path) -> None:
    """A mapping key the scope lacks is a typo or a scope that changed: its proof would never be shown."""
    known = {
        "steps": {s.id for p in scope.phases for s in p.steps},
        "dod": {p.number for p in scope.phases},
        "criteria": {c.number for c in scope.criteria},
    }
    unknown = [f"{part}.{key}" for part, keys in known.items() for key in getattr(mapping, part) if key not in keys]
    if unknown:
        result.add(
            Check(
                id="loop.evidence.mapping",
                status=Status.WARN,
                detail=f"{contract_path} maps parts the scope lacks: " + ", ".join(unknown),
                subject=scope.loop_id,
                expected="keys of the scope",
                actual=unknown,
            )
        )


def _wants(proof: Proof) -> str:
    text = " or ".join(proof.capability)
    if proof.args:
        text += " " + " ".join(proof.args)
    if proof.gate:
        text += f" (gate {proof.gate} PASS)"
    return text


def _detail(verdict: str, outcomes: list[ProofOutcome]) -> str:
    if not outcomes:
        return "no proof declared in the loop evidence contract"
    shown = [o for o in outcomes if o.verdict == verdict] if verdict != "proven" else outcomes
    parts = []
    for outcome in shown:
        found = outcome.receipt
        if found:
            parts.append(f"{found.summary.capability} {found.status} {_age(outcome)} ({found.summary.run_key})"
                         + ("" if outcome.verdict == "proven" else f": {outcome.reason}"))  # fmt: skip
        else:
            parts.append(outcome.reason)
    return f"{verdict}: " + "; ".join(parts)


def _age(outcome: ProofOutcome) -> str:
    return outcome.to_dict()["age"] + " ago" if outcome.age_seconds is not None else "age unknown"


def _data(scope: LoopScope, contract_path: Path, phases: list[dict], criteria: list[dict]) -> dict[str, Any]:
    dods = [p["dod"] for p in phases]
    steps = [s for p in phases for s in p["steps"]]
    return {
        "loop_id": scope.loop_id,
        "scope_status": scope.front_matter.get("status"),
        "scope": str(scope.path),
        "contract": str(contract_path),
        "phases": phases,
        "criteria": criteria,
        "counts": {
            "dod": len(dods),
            "dod_proven": sum(d["verdict"] == "proven" for d in dods),
            "steps": len(steps),
            "steps_proven": sum(s["verdict"] == "proven" for s in steps),
            "criteria": len(criteria),
            "criteria_proven": sum(c["verdict"] == "proven" for c in criteria),
        },
        "dod_unproven": [p["number"] for p in phases if p["dod"]["verdict"] != "proven"],
    }


def _table(scope: LoopScope, phases: list[dict], criteria: list[dict]) -> list[str]:
    def row(key: str, item: dict) -> str:
        return f"  {key:<9} {item['verdict']:<10} {item['detail'].split(': ', 1)[-1]}"

    lines = [f"{scope.loop_id} ({scope.front_matter.get('status', 'no status')}): {scope.path}"]
    for phase in phases:
        lines.append(f"Phase {phase['number']}: {phase['title']}")
        lines += [row(step["id"], step) for step in phase["steps"]]
        lines.append(row("DoD", phase["dod"]))
    if criteria:
        lines.append("Success criteria")
        lines += [row(c["key"], c) for c in criteria]
    dods = [p["dod"] for p in phases]
    proven = sum(d["verdict"] == "proven" for d in dods)
    lines.append(f"Definitions of Done: {proven} of {len(dods)} proven by a passing, fresh receipt")
    return lines
