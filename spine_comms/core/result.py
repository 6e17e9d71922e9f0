"""Typed results: checks with stable ids, and the status vocabulary.

A capability returns a Result. Core turns it into output, a receipt and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    PARTIAL = "partial"  # some actions done, some not
    ERROR = "error"  # could not evaluate
    SKIP = "skip"  # checks only: a prerequisite failed, so this was not tried


# Worst first. A definite failure outranks "could not evaluate": when one endpoint
# is down and another could not be asked, the run has still found a failure.
_SEVERITY = [Status.FAIL, Status.PARTIAL, Status.ERROR, Status.WARN, Status.OK, Status.SKIP]


def worst(statuses) -> Status:
    statuses = [Status(s) for s in statuses]
    for status in _SEVERITY:
        if status in statuses:
            return Status.OK if status is Status.SKIP else status
    return Status.OK


# Keyword arguments only: with eight fields of like types, a swapped `expected` and `actual` would
# otherwise pass unnoticed.
@dataclass(kw_only=True)
class Check:
    """One verdict. `id` is stable across runs (`stack.tls.expiry`); `subject` says what was checked."""

    id: str
    status: Status
    detail: str
    subject: str = ""
    expected: Any = None
    actual: Any = None
    evidence: Any = None
    duration_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "status": str(self.status),
            "detail": self.detail,
            "expected": self.expected,
            "actual": self.actual,
            "evidence": self.evidence,
            "duration_ms": self.duration_ms,
        }


@dataclass
class Result:
    """What a capability found or did. Status defaults to the worst of its checks."""

    data: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    status: Status | None = None

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def final_status(self) -> Status:
        if self.status is not None:
            return Status(self.status)
        return worst(c.status for c in self.checks)
