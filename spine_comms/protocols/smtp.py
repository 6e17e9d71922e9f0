"""SMTP submission: one message, over verified TLS, as an authenticated mailbox.

Implicit TLS (SMTPS, 465) or STARTTLS (587); a server that does not offer
STARTTLS is an error, never a fall back to plain text. The certificate is
verified against the given CA file (or the system store) and `server_name`,
which may differ from the host dialled, so a server can be reached by IP.

It knows the wire, not the policy: callers decide what a refusal means. Every
failure is an SmtpError naming the stage it happened in and, when the server
answered, its reply. No message ever holds the password.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from spine_comms.core.outcomes import FailureKind, ProtocolFailure
from spine_comms.protocols.tls import verified_context

Security = Literal["tls", "starttls"]
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+")
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True)
class SmtpReply:
    code: int
    enhanced: str | None  # RFC 3463 status ("2.0.0"), when the server sends one
    text: str

    @classmethod
    def parse(cls, code: int, message: bytes | str) -> SmtpReply:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        text = " ".join(text.split())
        match = _ENHANCED.match(text)
        if match:
            return cls(code, match.group(1), text[match.end() :])
        return cls(code, None, text)

    def __str__(self) -> str:
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p)

    def to_dict(self) -> dict:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


# What a failure at each stage means unless the site knows better (a timeout, a dropped connection).
_STAGE_KINDS = {
    "connect": FailureKind.UNREACHABLE,
    "tls": FailureKind.TLS_UNTRUSTED,
    "starttls": FailureKind.TLS_UNTRUSTED,
    "auth": FailureKind.CREDENTIALS_REFUSED,
}


class SmtpError(ProtocolFailure):
    """Submission failed at `stage` (connect, tls, starttls, ehlo, auth, mail, rcpt, data).

    `reply` is the server's answer when there was one; `refused_message` says whether the
    server could not be used at all (unreachable, tls, auth) or refused the message;
    `failure_kind` is the outcome vocabulary's name for what happened.
    """

    UNUSABLE = ("connect", "tls", "starttls", "ehlo", "auth")

    def __init__(self, stage: str, message: str, reply: SmtpReply | None = None, *,
                 kind: FailureKind | None = None):  # fmt: skip
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message
        self.reply = reply
        self.failure_kind = kind or _STAGE_KINDS.get(stage, FailureKind.PROTOCOL_ERROR)

    @property
    def refused_message(self) -> bool:
        """True when the server was reached and authenticated us but would not take this message
        (not when the connection timed out or dropped along the way)."""
        return self.stage not in self.UNUSABLE and self.failure_kind is FailureKind.PROTOCOL_ERROR


def _reply_of(exc: smtplib.SMTPResponseException) -> SmtpReply:
    return SmtpReply.parse(exc.smtp_code, exc.smtp_error)


def _connect(host: str, port: int, security: Security, context: ssl.SSLContext, timeout: float) -> smtplib.SMTP:
    try:
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, context=context, timeout=timeout)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
    except ssl.SSLCertVerificationError as exc:
        raise SmtpError("tls", f"certificate not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise SmtpError("tls", f"TLS handshake failed: {exc.reason or exc}") from None
    except smtplib.SMTPConnectError as exc:
        raise SmtpError("connect", "greeting refused", _reply_of(exc), kind=FailureKind.PROTOCOL_ERROR) from None
    except smtplib.SMTPServerDisconnected as exc:
        raise SmtpError("connect", f"server closed the connection: {exc}") from None
    except ConnectionRefusedError:
        raise SmtpError("connect", f"{host}:{port} connection refused") from None
    except TimeoutError:
        raise SmtpError("connect", f"{host}:{port} timed out after {timeout:g} s", kind=FailureKind.TIMEOUT) from None
    except OSError as exc:
        raise SmtpError("connect", f"{host}:{port} {exc.strerror or exc}") from None
    if security == "starttls":
        try:
            code, text = smtp.ehlo()
            if code != 250:
                raise SmtpError("ehlo", "EHLO refused", SmtpReply.parse(code, text), kind=FailureKind.PROTOCOL_ERROR)
            if not smtp.has_extn("starttls"):
                raise SmtpError("starttls", "STARTTLS not offered (refusing to continue in plain text)")
            smtp.starttls(context=context)
        except ssl.SSLCertVerificationError as exc:
            _close(smtp)
            raise SmtpError("tls", f"certificate not trusted: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            _close(smtp)
            raise SmtpError("tls", f"TLS handshake failed: {exc.reason or exc}") from None
        except smtplib.SMTPResponseException as exc:
            _close(smtp)
            raise SmtpError("starttls", "STARTTLS refused", _reply_of(exc)) from None
        except SmtpError:
            _close(smtp)
            raise
        except TimeoutError:  # a server that took the connection and went silent
            _close(smtp)
            raise SmtpError("ehlo", f"{host}:{port} timed out after {timeout:g} s", kind=FailureKind.TIMEOUT) from None
        except OSError as exc:  # smtplib's errors are OSErrors too: a dropped connection, mostly
            _close(smtp)
            raise SmtpError("ehlo", f"{host}:{port} {exc}", kind=FailureKind.UNREACHABLE) from None
    return smtp


def _close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def submit(
    host: str,
    port: int,
    *,
    security: Security,
    server_name: str | None,
    ca_file: str | None,
    login: str | None,
    password: str | None,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    timeout: float = 10.0,
    before_data: Callable[[], None] | None = None,
    envelope_id: str | None = None,
    on_envelope_id: Callable[[], None] | None = None,
) -> SmtpReply:
    """Submit `message` for `recipients` with envelope `sender`; returns the reply to the end of DATA.

    `envelope_id` (letters and digits) goes in MAIL FROM as RFC 3461's ENVID, with RET=HDRS, when the
    server offers DSN; `on_envelope_id` is then called once the server accepted MAIL FROM with it. A
    DSN about this transaction must quote it (Original-Envelope-Id), which a forged one cannot.

    Without login, no AUTH is attempted. Raises SmtpError on any failure; every
    recipient must be accepted (a partial send is an error, nothing is sent).
    `before_data` is called once every recipient is accepted, just before DATA: until
    then the server cannot have taken the message, which lets a durable caller tell an
    interrupted attempt that surely sent nothing from one whose outcome is unknown.
    """
    if security not in ("tls", "starttls"):
        raise ValueError(f"security must be 'tls' or 'starttls', not {security!r}")
    if not recipients:
        raise ValueError("no recipients")
    # RFC 5321 wants CRLF line ends; smtplib sends bytes as they are.
    message = _BARE_LF.sub(b"\r\n", message)
    smtp = _connect(host, port, security, verified_context(server_name, ca_file), timeout)
    stage = "ehlo"
    try:
        smtp.ehlo_or_helo_if_needed()
        if login:
            stage = "auth"
            try:
                smtp.login(login, password or "")
            except smtplib.SMTPNotSupportedError:
                raise SmtpError("auth", "the server offers no AUTH here", kind=FailureKind.UNSUPPORTED) from None
            except smtplib.SMTPException as exc:
                if isinstance(exc, smtplib.SMTPResponseException):
                    raise SmtpError("auth", f"login refused for {login}", _reply_of(exc)) from None
                raise SmtpError("auth", f"no usable AUTH mechanism for {login}",
                                kind=FailureKind.UNSUPPORTED) from None  # fmt: skip
        stage = "mail"
        options = []
        if envelope_id and login and not smtp.has_extn("dsn"):
            # Stalwart offers DSN only to an authenticated client, and decides at EHLO: ask again after AUTH
            # (RFC 5321 4.1.4 allows a later EHLO; it resets the transaction, not the authentication).
            smtp.ehlo()
        if envelope_id and smtp.has_extn("dsn"):
            if not envelope_id.isalnum() or not envelope_id.isascii():
                raise ValueError("envelope_id must be ASCII letters and digits (no xtext encoding needed)")
            options = [f"ENVID={envelope_id}", "RET=HDRS"]
        code, text = smtp.mail(sender, options)
        if code != 250:
            _reset(smtp)
            raise SmtpError("mail", f"sender {sender} refused", SmtpReply.parse(code, text))
        if options and on_envelope_id is not None:
            on_envelope_id()
        stage = "rcpt"
        for recipient in recipients:
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                _reset(smtp)
                raise SmtpError("rcpt", f"recipient {recipient} refused", SmtpReply.parse(code, text))
        stage = "data"
        if before_data is not None:
            before_data()
        code, text = smtp.data(message)
        reply = SmtpReply.parse(code, text)
        if code != 250:
            raise SmtpError("data", "message refused", reply)
        return reply
    except smtplib.SMTPResponseException as exc:
        raise SmtpError(stage, "refused", _reply_of(exc)) from None
    except smtplib.SMTPServerDisconnected as exc:
        raise SmtpError(stage, f"server closed the connection: {exc}", kind=FailureKind.UNREACHABLE) from None
    except TimeoutError:
        raise SmtpError(stage, f"timed out after {timeout:g} s", kind=FailureKind.TIMEOUT) from None
    except OSError as exc:
        raise SmtpError(stage, f"{exc.strerror or exc}", kind=FailureKind.UNREACHABLE) from None
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            _close(smtp)


def _reset(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.rset()
