"""One outcome vocabulary: every protocol error carries a closed kind, and core maps it once."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import spine_comms.protocols
from spine_comms.core.errors import CouldNotEvaluate, ExitCode
from spine_comms.core.outcomes import OUTCOMES, FailureKind, ProtocolFailure, could_not_evaluate
from spine_comms.core.result import Status
from spine_comms.protocols.dav.model import DavError
from spine_comms.protocols.http import HttpFailure
from spine_comms.protocols.imap import ImapError
from spine_comms.protocols.managesieve import SieveError
from spine_comms.protocols.smtp import SmtpError
from spine_comms.protocols.stalwart.model import StalwartError
from spine_comms.protocols.tls import ProtocolError

K = FailureKind


def test_the_map_covers_every_kind_and_could_not_evaluate_is_exit_3():
    assert set(OUTCOMES) == set(FailureKind)
    assert {(o.status, o.exit_code) for o in OUTCOMES.values()} == {(Status.ERROR, ExitCode.COULD_NOT_EVALUATE)}


def test_every_exception_of_the_protocol_package_derives_from_the_one_base():
    """A protocol module that adds an error class of its own must put it under ProtocolFailure."""
    found = []
    for info in pkgutil.walk_packages(spine_comms.protocols.__path__, "spine_comms.protocols."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == info.name:
                found.append(value)
    private = {"_Refused"}  # xmlwire's internal signal, caught inside the module
    strays = [c.__qualname__ for c in found if not issubclass(c, ProtocolFailure) and c.__name__ not in private
              and not issubclass(c, ValueError)]  # fmt: skip
    assert strays == []
    assert {ImapError, SmtpError, SieveError, DavError, StalwartError, HttpFailure, ProtocolError} <= set(found)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ImapError("connect", "refused"), K.UNREACHABLE),
        (ImapError("connect", "x", kind=K.TIMEOUT), K.TIMEOUT),
        (ImapError("auth", "login refused"), K.CREDENTIALS_REFUSED),
        (ImapError("starttls", "not offered"), K.TLS_UNTRUSTED),
        (ImapError("select", "NO"), K.PROTOCOL_ERROR),
        (ImapError("fetch", "x", cause=TimeoutError()), K.TIMEOUT),  # a hung server mid-session
        (ImapError("fetch", "x", cause=ConnectionResetError()), K.UNREACHABLE),
        (SmtpError("connect", "refused"), K.UNREACHABLE),
        (SmtpError("auth", "535"), K.CREDENTIALS_REFUSED),
        (SmtpError("auth", "no AUTH", kind=K.UNSUPPORTED), K.UNSUPPORTED),
        (SmtpError("rcpt", "550"), K.PROTOCOL_ERROR),
        (SieveError("network", "refused"), K.UNREACHABLE),
        (SieveError("timeout", "x"), K.TIMEOUT),
        (SieveError("auth", "NO"), K.CREDENTIALS_REFUSED),
        (SieveError("bye", "BYE", failure=K.CREDENTIALS_REFUSED), K.CREDENTIALS_REFUSED),
        (SieveError("tls", "no STARTTLS"), K.TLS_UNTRUSTED),
        (SieveError("no", "NO (QUOTA)"), K.PROTOCOL_ERROR),
        (DavError("auth", "401"), K.CREDENTIALS_REFUSED),
        (DavError("forbidden", "403"), K.CREDENTIALS_REFUSED),
        (DavError("precondition", "412"), K.PROTOCOL_ERROR),
        (DavError("unreachable", "cert", failure=K.TLS_UNTRUSTED), K.TLS_UNTRUSTED),
        (StalwartError("auth", "401"), K.CREDENTIALS_REFUSED),
        (StalwartError("unreachable", "x", failure=K.TIMEOUT), K.TIMEOUT),
        (StalwartError("api", "500"), K.PROTOCOL_ERROR),
        (StalwartError("unsupported", "no JMAP"), K.UNSUPPORTED),
        (HttpFailure("tls", "certificate verify failed"), K.TLS_UNTRUSTED),
        (HttpFailure("timeout", "x"), K.TIMEOUT),
        (ProtocolError("not an SMTP reply"), K.PROTOCOL_ERROR),
    ],
)
def test_each_protocol_names_its_failures_in_the_one_vocabulary(error, kind):
    assert isinstance(error, ProtocolFailure) and error.failure_kind is kind


def test_a_submission_that_timed_out_mid_transaction_is_not_a_refused_message():
    assert SmtpError("rcpt", "550 no").refused_message is True
    assert SmtpError("data", "timed out", kind=K.TIMEOUT).refused_message is False
    assert SmtpError("mail", "closed", kind=K.UNREACHABLE).refused_message is False


def test_the_kind_travels_into_the_envelope_error():
    error = could_not_evaluate(SieveError("auth", "login refused"), "ops: ManageSieve: login refused", hint="h")
    assert isinstance(error, CouldNotEvaluate) and error.exit_code == 3
    assert error.envelope_error() == {"reference": "could-not-evaluate", "message": "ops: ManageSieve: login refused",
                                      "problems": [], "hint": "h", "kind": "credentials_refused"}  # fmt: skip
    assert "kind" not in CouldNotEvaluate("a lock is held").envelope_error()
