"""Does a receipt prove it? One proof of the loop evidence contract, judged against the root's receipts.

The latest receipt of exactly the run the proof names decides: the named
capability (or capabilities), with the proof's arguments and no other argument
that could narrow it (run_arguments.py: `verify.pack.run communications --gate
D903` is not a run of the pack). Proven when that receipt is one a run wrote
(its seal, its line in the receipt chain, its signature when a key is set), its
status is accepted, it is fresh enough and, for a verify receipt, the named gate
is PASS in it; refused when it is edited, copied or hand-written (a receipt.md
with no receipt.json included); otherwise failing or stale. No such receipt:
unproven.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spine_comms.contracts.loop_evidence import Proof
from spine_comms.core.receipt_seal import ReceiptVerifier
from spine_comms.core.receipts import ReceiptSummary, list_receipts
from spine_comms.governance.run_arguments import proof_args_problem, same_run

VERDICTS = ("refused", "failing", "unproven", "stale", "undeclared", "proven")  # worst first
_MD_ARGS = re.compile(r"\|\s*Args\s*\|\s*`?([^`|]*)`?\s*\|")
_MD_STATUS = {"done": "ok"}


@dataclass
class Receipt:
    summary: ReceiptSummary
    status: str
    argv: list[str]
    document: dict[str, Any] | None

    @property
    def generated(self) -> datetime | None:
        try:
            return datetime.strptime(self.summary.generated, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None


@dataclass
class ProofOutcome:
    proof: Proof
    verdict: str
    reason: str
    receipt: Receipt | None = None
    age_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        found = self.receipt
        return {
            "wants": {
                "capability": self.proof.capability,
                "status": self.proof.status,
                "args": self.proof.args,
                "allow": self.proof.allow,
                "gate": self.proof.gate,
            },
            "verdict": self.verdict,
            "reason": self.reason,
            "capability": found.summary.capability if found else None,
            "status": found.status if found else None,
            "age_seconds": round(self.age_seconds) if self.age_seconds is not None else None,
            "age": human_age(self.age_seconds),
            "run_key": found.summary.run_key if found else None,
            "receipt": str(found.summary.directory) if found else None,
        }


class ReceiptIndex:
    """The root's receipts by capability, newest first, each read (and checked) at most once per run."""

    def __init__(self, receipts_dir: Path, env: dict[str, str], root: Path | None = None):
        self.receipts_dir = receipts_dir
        self._by_cap: dict[str, list[Receipt]] = {}
        self._verifier = ReceiptVerifier(receipts_dir, env, root)
        self._problems: dict[Path, list[str]] = {}

    def of(self, capability: str) -> list[Receipt]:
        if capability not in self._by_cap:
            # A dry run changed nothing, so it proves nothing.
            found = [s for s in list_receipts(self.receipts_dir, capability) if not s.dry_run]
            self._by_cap[capability] = [_read(s) for s in found]
        return self._by_cap[capability]

    def problems(self, receipt: Receipt) -> list[str]:
        """Why this receipt is not one a spine-comms run wrote; empty when it is."""
        where = receipt.summary.directory
        if where not in self._problems:
            self._problems[where] = self._verifier.problems(where)
        return self._problems[where]


def _read(summary: ReceiptSummary) -> Receipt:
    document = None
    with contextlib.suppress(OSError, ValueError):
        document = json.loads((summary.directory / "receipt.json").read_text(encoding="utf-8"))
    if isinstance(document, dict):
        argv = [str(a) for a in (document.get("invocation") or {}).get("argv") or []]
        return Receipt(summary, summary.status, argv, document)
    # A receipt.md alone is still a candidate, so that a hand-written one is named and refused.
    argv = []
    try:
        match = _MD_ARGS.search((summary.directory / "receipt.md").read_text(encoding="utf-8", errors="replace"))
        argv = ["spine-comms", summary.capability, *(match.group(1).split() if match else [])]
    except OSError:
        pass
    return Receipt(summary, _MD_STATUS.get(summary.status, "fail"), argv, None)


def judge(proof: Proof, index: ReceiptIndex, now: datetime, default_max_age_hours: float) -> ProofOutcome:
    wanted = " or ".join(proof.capability) + (f" {' '.join(proof.args)}" if proof.args else "")
    for cap in proof.capability:
        if problem := proof_args_problem(cap, proof.args, proof.allow):
            return ProofOutcome(proof, "unproven", f"the proof cannot be met: {problem}")
    candidates = [r for cap in proof.capability for r in index.of(cap)
                  if same_run(cap, r.argv, proof.args, proof.allow)]  # fmt: skip
    if not candidates:
        return ProofOutcome(proof, "unproven", f"no receipt of exactly {wanted} (a narrower run does not count)")
    latest = max(candidates, key=lambda r: (r.generated or datetime.min.replace(tzinfo=UTC), r.summary.run_key))
    generated = latest.generated
    age = (now - generated).total_seconds() if generated else None
    max_age = (proof.max_age_hours or default_max_age_hours) * 3600
    if forged := index.problems(latest):
        return ProofOutcome(proof, "refused", f"receipt {latest.summary.directory} refused: " + "; ".join(forged),
                            latest, age)  # fmt: skip
    if latest.status not in proof.status:
        return ProofOutcome(proof, "failing", f"latest receipt is {latest.status}, wants {'|'.join(proof.status)}",
                            latest, age)  # fmt: skip
    if proof.gate:
        gate = gate_status(latest.document, proof.gate)
        if gate != "PASS":
            return ProofOutcome(proof, "failing", f"gate {proof.gate} is {gate or 'absent'} in the latest receipt",
                                latest, age)  # fmt: skip
    if age is None or age > max_age:
        return ProofOutcome(proof, "stale", f"older than {human_age(max_age)}", latest, age)
    return ProofOutcome(proof, "proven", f"{latest.summary.capability} {latest.status}", latest, age)


def gate_status(document: dict[str, Any] | None, gate: str) -> str | None:
    """PASS, FAIL, SKIP... for one gate id in a verify receipt: a `{id, status}` entry anywhere in its data,
    else a `<ID> PASS|FAIL|SKIP: ...` line (the spine's form) in its summary or data."""
    if not document:
        return None
    envelope = document.get("envelope") or {}
    found = _find_gate(envelope.get("data"), gate)
    if found:
        return found
    line = re.compile(rf"^\s*{re.escape(gate)}\s+(PASS|FAIL|SKIP|WARN)\b")
    texts = [*(envelope.get("summary") or []), *_strings(envelope.get("data"))]
    for text in texts:
        if match := line.match(text):
            return match.group(1)
    return None


def _find_gate(node: Any, gate: str) -> str | None:
    if isinstance(node, dict):
        if node.get("id") == gate and isinstance(node.get("status"), str):
            status = node["status"].upper()
            return "PASS" if status == "OK" else status
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_gate(child, gate)
        if found:
            return found
    return None


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}" if unit != "d" else f"{seconds / size:.1f}d"
    return f"{seconds:.0f}s"


def worst(verdicts: list[str]) -> str:
    return min(verdicts, key=VERDICTS.index) if verdicts else "undeclared"
