"""The verify gates contract: `verify.gates.yaml`, the gates and the packs that group them.

A gate proves one thing in one of three ways:
- `run`: a read-only capability, run as cron would run it (its own process, its own receipt), judged
  by its exit code and envelope, optionally only by some of its checks or data values;
- `receipt`: the latest receipt of a capability, judged by its status and age (for what is costly or
  mutating to redo, like the probe mail);
- `builtin`: a check of the root itself (every contract loads into its model, the latest receipts
  match the shipped schema).

Gate ids keep the spine's `D<NN>` shape, so the spine's runner, its failure statistics and a gap's
`regression_lock_id` accept them. A root without this file gets the toolkit's default set
(spine_comms/verify/default_gates.yaml); a root with it gets exactly what it declares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from spine_comms.contracts.stack import Surface
from spine_comms.core.contracts import ContractModel

VERIFY_CONTRACT = "verify.gates.yaml"
RINGS = ("instant", "standard", "deep")
DEFAULT_BUDGETS = {"instant": 5.0, "standard": 60.0, "deep": 300.0}  # the spine's verify.ring.policy.yaml
BUILTINS = ("contracts_valid", "receipts_valid")
_CAPABILITY = r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$"


class RunCheck(ContractModel):
    """Run `spine-comms <capability> --root <root> --json [args]` and judge what it reports."""

    capability: str = Field(pattern=_CAPABILITY)
    args: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Judge only the checks whose ids match these globs (`stack.tls.*`); none given: the whole run.
    only_checks: list[str] = Field(default_factory=list)
    # Values the envelope's data must hold, by dotted path: {"summary.planned": 0}.
    expect_data: dict[str, Any] = Field(default_factory=dict)
    # A warn passes unless this is set (the spine's rc 0 = PASS).
    fail_on_warn: bool = False


class ReceiptCheck(ContractModel):
    """The newest receipt of `capability` must have one of `statuses` and be younger than max_age_minutes."""

    capability: str = Field(pattern=_CAPABILITY)
    max_age_minutes: float = Field(default=24 * 60, gt=0)
    # receipt.json statuses (ok, warn, ...) or the spine's receipt.md ones (done, failed).
    statuses: list[str] = Field(default_factory=lambda: ["ok", "done"], min_length=1)


class Gate(ContractModel):
    id: str = Field(pattern=r"^D[0-9]+$")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=1)
    severity: Literal["low", "medium", "high", "critical"]
    ring: Literal["instant", "standard", "deep"] = "standard"
    checks: str = Field(min_length=1, description="What the gate checks, in the operator's words.")
    fix_hint: str = Field(min_length=1)
    # The part of the stack the gate proves: when the stack contract declares it not deployed
    # (`surfaces.<surface>.deployed: false`), the gate is SKIP, the only way a gate can be.
    surface: Surface | None = None
    # Contracts (in bindings/) the gate needs: one absent makes the gate FAIL (could not evaluate),
    # unless its surface is declared not deployed.
    needs: list[str] = Field(default_factory=list)
    # Gates that must PASS first; when one does not, this gate does not run and is SKIP with the
    # reason (its verdict would only echo that failure, which already fails the run).
    depends_on: list[str] = Field(default_factory=list)
    run: RunCheck | None = None
    receipt: ReceiptCheck | None = None
    builtin: Literal["contracts_valid", "receipts_valid"] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Gate:
        given = [k for k in ("run", "receipt", "builtin") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a gate checks in exactly one way (run, receipt or builtin); {self.id} has "
                             f"{', '.join(given) or 'none'}")  # fmt: skip
        return self

    @property
    def kind(self) -> str:
        return "run" if self.run else ("receipt" if self.receipt else "builtin")

    @property
    def capability(self) -> str | None:
        return self.run.capability if self.run else (self.receipt.capability if self.receipt else None)


class Pack(ContractModel):
    description: str = ""
    # The ring whose budget the whole run must keep; default: the slowest ring among its gates.
    ring: Literal["instant", "standard", "deep"] | None = None
    gates: list[str] = Field(min_length=1)


class VerifyContract(ContractModel):
    version: Literal[1] = 1
    # Seconds a run of each ring may take; an overrun fails the run (the spine's `budget exceeded`).
    budgets: dict[Literal["instant", "standard", "deep"], float] = Field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    gates: list[Gate] = Field(min_length=1)
    packs: dict[str, Pack] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> VerifyContract:
        ids = [g.id for g in self.gates]
        problems = [f"gate id {i} declared twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
        known = set(ids)
        for name, pack in self.packs.items():
            problems += [f"pack {name} lists unknown gate {g}" for g in pack.gates if g not in known]
        for gate in self.gates:
            problems += [f"gate {gate.id} depends on unknown gate {d}" for d in gate.depends_on if d not in known]
        if not problems and (cycle := self._cycle()):
            problems.append(f"gates depend on each other in a circle: {' -> '.join(cycle)}")
        for ring, seconds in self.budgets.items():
            if seconds <= 0:
                problems.append(f"budget of ring {ring} must be above 0 seconds")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _cycle(self) -> list[str] | None:
        deps = {g.id: g.depends_on for g in self.gates}
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> list[str] | None:
            state[node] = 1
            for nxt in deps[node]:
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                if nxt not in state and (found := visit(nxt, [*path, nxt])):
                    return found
            state[node] = 2
            return None

        for gate in deps:
            if gate not in state and (found := visit(gate, [gate])):
                return found
        return None

    def gate(self, gate_id: str) -> Gate | None:
        return next((g for g in self.gates if g.id == gate_id), None)

    def budget(self, ring: str) -> float:
        return float(self.budgets.get(ring, DEFAULT_BUDGETS[ring]))  # type: ignore[index]
