"""One exit-code table and the errors that carry a code to the one funnel in core.runner.

Capabilities raise these; they never choose an exit code or print themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # ok, and warn unless --strict
    FAIL = 1  # fail or partial
    USAGE = 2  # bad usage or an invalid contract
    COULD_NOT_EVALUATE = 3  # unreachable, timeout, refused credentials
    INTERNAL = 70  # a bug in spine-comms (EX_SOFTWARE)
    INTERRUPTED = 130  # ^C


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, printed as `file:line: field: message`."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpineCommsError(Exception):
    """An error the user can act on. `reference` is stable, for scripts and docs."""

    exit_code = ExitCode.INTERNAL
    reference = "spine-comms-error"
    # For errors that end a run because a server failed: one of core.outcomes.FailureKind, carried
    # into the envelope as `error.kind` so that readers never guess from the message.
    kind: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, problems=()):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems: list[Problem] = list(problems)

    def envelope_error(self) -> dict:
        """The `error` object of the JSON envelope and the receipt."""
        out = {"reference": self.reference, "message": self.message, "problems": [str(p) for p in self.problems],
               "hint": self.hint}  # fmt: skip
        if self.kind:
            out["kind"] = str(self.kind)
        return out

    def lines(self) -> list[str]:
        out = [self.message] if not self.problems else []
        out.extend(str(p) for p in self.problems)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class UsageError(SpineCommsError):
    exit_code = ExitCode.USAGE
    reference = "usage"


class ContractError(SpineCommsError):
    """A contract (or another input file) is missing, unreadable or invalid."""

    exit_code = ExitCode.USAGE
    reference = "invalid-contract"


class SecretError(SpineCommsError):
    """A secret reference cannot be resolved. The message never holds the value."""

    exit_code = ExitCode.USAGE
    reference = "secret-unresolved"


class CouldNotEvaluate(SpineCommsError):
    """The thing to check could not be reached or asked (timeout, refusal, 401).

    Raised for a protocol failure through core.outcomes.could_not_evaluate, which sets `kind`.
    """

    exit_code = ExitCode.COULD_NOT_EVALUATE
    reference = "could-not-evaluate"

    def __init__(self, message: str, *, hint: str | None = None, problems=(), kind: str | None = None):
        super().__init__(message, hint=hint, problems=problems)
        if kind:  # else the class's own (a refused bridge token is credentials_refused), or none
            self.kind = str(kind)
