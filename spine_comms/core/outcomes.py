"""One outcome vocabulary: why a server could not be used, and what that makes of a run.

Every protocol error (IMAP, SMTP, ManageSieve, DAV, HTTP, Stalwart, the TLS probe, DNS answers)
derives from ProtocolFailure and carries one FailureKind from a closed set. Protocol classes keep
their own detail (an IMAP stage, an SMTP reply, a DAV status) for callers that need it, but what
a failure *means* is decided here, once: OUTCOMES maps a kind to a run status and an exit code,
and the kind travels in the JSON envelope (`error.kind`, a check's `evidence.kind`) so that readers
such as the verify gates decide by kind, never by the wording of a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from spine_comms.core.errors import CouldNotEvaluate, ExitCode
from spine_comms.core.result import Status


class FailureKind(StrEnum):
    # No connection: refused, no route, the name does not resolve, closed before it answered.
    UNREACHABLE = "unreachable"
    # No answer within the timeout, whether the connection was made or not (a hung server).
    TIMEOUT = "timeout"
    # The server answered and refused who we are: a login refused, HTTP 401 or 403.
    CREDENTIALS_REFUSED = "credentials_refused"
    # No trusted TLS: the certificate is not trusted or not for the name, the handshake failed,
    # or STARTTLS is not offered (never a fall back to plain text).
    TLS_UNTRUSTED = "tls_untrusted"
    # The server lacks what we need: an extension, a SASL mechanism, an API form.
    UNSUPPORTED = "unsupported"
    # The server answered, but not as the protocol or the request wants (a NO, a 4xx/5xx, garbage).
    PROTOCOL_ERROR = "protocol_error"


@dataclass(frozen=True)
class Outcome:
    status: Status
    exit_code: ExitCode
    meaning: str


# What a capability whose server failed this way reports: it could not evaluate what it was asked.
# (A capability whose subject *is* the failure, such as the TLS checks of communications.stack.status
# on a server that answered with a bad certificate, reports that as a finding, `fail`, instead.)
_COULD_NOT_EVALUATE = (Status.ERROR, ExitCode.COULD_NOT_EVALUATE)
OUTCOMES: dict[FailureKind, Outcome] = {
    FailureKind.UNREACHABLE: Outcome(*_COULD_NOT_EVALUATE, "the server could not be reached"),
    FailureKind.TIMEOUT: Outcome(*_COULD_NOT_EVALUATE, "the server did not answer in time"),
    FailureKind.CREDENTIALS_REFUSED: Outcome(*_COULD_NOT_EVALUATE, "the server refused the credentials"),
    FailureKind.TLS_UNTRUSTED: Outcome(*_COULD_NOT_EVALUATE, "no trusted TLS to the server"),
    FailureKind.UNSUPPORTED: Outcome(*_COULD_NOT_EVALUATE, "the server does not support what is needed"),
    FailureKind.PROTOCOL_ERROR: Outcome(*_COULD_NOT_EVALUATE, "the server answered outside the protocol"),
}


class ProtocolFailure(Exception):
    """The base of every protocol error. `failure_kind` is one of FailureKind, set by the protocol
    module where it knows what happened; subclasses add their own detail attributes."""

    failure_kind: FailureKind = FailureKind.PROTOCOL_ERROR


def outcome(kind: FailureKind | str) -> Outcome:
    return OUTCOMES[FailureKind(kind)]


def check_status(kind: FailureKind | str) -> Status:
    """The status of a check that could not be evaluated because of a failure of this kind."""
    return outcome(kind).status


def could_not_evaluate(failure: ProtocolFailure, message: str, *, hint: str | None = None) -> CouldNotEvaluate:
    """The run-ending error for a protocol failure, its exit code and kind taken from OUTCOMES."""
    kind = failure.failure_kind
    error = CouldNotEvaluate(message, hint=hint, kind=kind)
    error.exit_code = outcome(kind).exit_code
    return error
