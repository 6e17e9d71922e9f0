"""The code side of the registry: a capability is a plain function marked with its id.

    @capability("communications.stack.status", safety="read-only", approval="auto")
    def stack_status(ctx: RunContext, only: ... = None) -> Result: ...

The first parameter is always the run context; the others are its CLI options,
declared once with typer's Annotated style. The function never prints, parses
argv, writes receipts or picks an exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SAFETY = ("read-only", "mutating", "destructive")
APPROVAL = ("auto", "manual", "operator")


@dataclass(frozen=True)
class CapabilityCode:
    id: str
    safety: str
    approval: str
    function: Callable


_BY_ID: dict[str, CapabilityCode] = {}


def capability(cap_id: str, *, safety: str, approval: str) -> Callable[[Callable], Callable]:
    if safety not in SAFETY or approval not in APPROVAL:
        raise ValueError(f"{cap_id}: bad safety {safety!r} or approval {approval!r}")

    def mark(function: Callable) -> Callable:
        code = CapabilityCode(cap_id, safety, approval, function)
        function.__capability__ = code
        _BY_ID[cap_id] = code
        return function

    return mark


def code_for(cap_id: str) -> CapabilityCode | None:
    return _BY_ID.get(cap_id)
