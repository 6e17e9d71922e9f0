"""The gates of a run: where they are declared, what one gate's verdict holds, how it is printed.

The gates come from the root's bindings/verify.gates.yaml, else from the default set shipped in
this package. A verdict is printed in the spine's form `<ID> PASS|FAIL|SKIP: <detail>`; details
are made safe for the spine's mixed-status heuristic, which flags a passing run whose output holds
words such as Traceback, Exception or ` ERROR:`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_comms.contracts.verify import VERIFY_CONTRACT, Gate, VerifyContract
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.outcomes import FailureKind

DEFAULT_GATES = Path(__file__).with_name("default_gates.yaml")
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

# Why a FAIL gate could not be evaluated (it found no verdict; the system is not as it should be):
# the outcome vocabulary's kinds (core.outcomes.FailureKind), or what went wrong on our side of the gate.
# JUnit reports these gates as <error>, a FAIL with a verdict as <failure>.
NOT_EVALUATED = (
    *(str(k) for k in FailureKind),
    "contract_absent",  # a contract the gate needs is not in the root, and its surface is not declared absent
    "contract_invalid",  # the capability refused its contract or options (exit 2)
    "secret_unresolved",  # a password or token reference could not be resolved
    "not_installed",  # the capability is registered but its code is not installed
    "no_envelope",  # the capability printed no JSON envelope (a crash)
    "internal_error",  # the capability or the gate itself broke (exit 70)
    "unknown",  # exit 3 without a kind (a capability that does not say why)
)
DETAIL_LIMIT = 400

# The spine's mixed-status heuristic (its verify-topology), case-insensitive, and what we write instead.
_ALARMING = [
    (re.compile(r"failed to wait for command termination", re.I), "could not wait for the command to end"),
    (re.compile(r"command not found", re.I), "command missing"),
    (re.compile(r"traceback", re.I), "stack trace"),
    (re.compile(r"exception", re.I), "exc"),
    (re.compile(r"unbound variable", re.I), "unset variable"),
    (re.compile(r"unexpected EOF", re.I), "unexpected end of input"),
    (re.compile(r"no such file or directory", re.I), "not found"),
    (re.compile(r"(^|\s)error:", re.I), r"\1error -"),
    (re.compile(r"^FAIL:", re.I), "FAIL -"),
]


def spine_safe(text: str) -> str:
    """One line, bounded, without the words that make the spine's runner doubt a passing run."""
    line = " ".join(str(text).split())
    for pattern, instead in _ALARMING:
        line = pattern.sub(instead, line)
    return line if len(line) <= DETAIL_LIMIT else line[: DETAIL_LIMIT - 3] + "..."


@dataclass
class GateResult:
    """One gate's verdict and the evidence behind it."""

    id: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    name: str = ""
    severity: str = ""
    ring: str = ""
    kind: str = ""
    capability: str | None = None
    run_key: str | None = None  # the receipt the verdict rests on
    receipt: str | None = None
    age_seconds: float | None = None  # how old that receipt was when judged
    elapsed: float = 0.0  # seconds this gate took
    fix_hint: str = ""
    exit_code: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    could_not_evaluate: str | None = None  # for a FAIL without a verdict: one of NOT_EVALUATED

    def __post_init__(self) -> None:
        self.detail = spine_safe(self.detail)
        if self.could_not_evaluate is not None and self.could_not_evaluate not in NOT_EVALUATED:
            raise ValueError(f"unknown reason a gate could not be evaluated: {self.could_not_evaluate!r}")

    @property
    def verified(self) -> bool:
        """The gate reached a verdict on evidence: PASS, or a FAIL that is not 'could not evaluate'."""
        return self.status == PASS or (self.status == FAIL and self.could_not_evaluate is None)

    def line(self) -> str:
        return f"{self.id} {self.status}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "status": self.status, "detail": self.detail,
            "severity": self.severity, "ring": self.ring, "kind": self.kind, "capability": self.capability,
            "run_key": self.run_key, "receipt": self.receipt,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "elapsed": round(self.elapsed, 3), "exit_code": self.exit_code, "fix_hint": self.fix_hint,
            "could_not_evaluate": self.could_not_evaluate,
        }  # fmt: skip


def verdict(gate: Gate, status: str, detail: str, **extra: Any) -> GateResult:
    """A GateResult carrying the gate's declared fields."""
    return GateResult(gate.id, status, detail, name=gate.name, severity=gate.severity, ring=gate.ring,
                      kind=gate.kind, capability=gate.capability, fix_hint=gate.fix_hint, **extra)  # fmt: skip


@dataclass
class GateSet:
    contract: VerifyContract
    source: str  # the file the gates came from


def load_gates(ctx: RunContext) -> GateSet:
    """The root's verify.gates.yaml when it has one (recorded in the receipt), else the default set."""
    if ctx.contracts.exists(VERIFY_CONTRACT):
        return GateSet(ctx.contracts.load(VERIFY_CONTRACT, VerifyContract), str(ctx.contracts.path(VERIFY_CONTRACT)))
    return GateSet(ctx.contracts.load(str(DEFAULT_GATES), VerifyContract), f"default ({DEFAULT_GATES})")


def pack_gates(gates: GateSet, pack: str) -> tuple[list[Gate], str]:
    """The gates of `pack` in its order, with the ring whose budget the run keeps."""
    chosen = gates.contract.packs.get(pack)
    if chosen is None:
        known = ", ".join(sorted(gates.contract.packs))
        raise UsageError(f"no verify pack {pack!r} in {gates.source} (it has: {known})")
    members = [gates.contract.gate(g) for g in dict.fromkeys(chosen.gates)]
    ring = chosen.ring or max((g.ring for g in members), key=("instant", "standard", "deep").index)
    return members, ring
