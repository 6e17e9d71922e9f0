"""What one submission attempt's result means: delivered, transient, permanent, error or unknown.

From the SMTP reply code and its RFC 3463 enhanced status (the class digit of the
enhanced code wins when both are present, since it is the more specific), and from
where the conversation stopped when there was no reply:

- delivered: the server answered 2xx to the end of DATA (it accepted the message; a DSN may still come).
- transient: 4xx, a timeout or a lost connection before DATA: retried by flush.
- permanent: 5xx for the sender, a recipient or the message: never retried; a bounce notice.
- error: we could not use the server as configured (login refused, certificate not trusted,
  no STARTTLS): retrying would fail the same way, so it is not retried and says what to fix.
- unknown: the connection was lost after DATA began and before the reply: the server may have
  taken the message, so resending could duplicate it.
"""

from __future__ import annotations

from dataclasses import dataclass

DELIVERED, TRANSIENT, PERMANENT, ERROR, UNKNOWN = "delivered", "transient", "permanent", "error", "unknown"


@dataclass(frozen=True)
class Outcome:
    kind: str
    reason: str
    stage: str | None = None
    code: int | None = None
    enhanced: str | None = None

    @property
    def retry(self) -> bool:
        return self.kind == TRANSIENT

    def to_dict(self) -> dict:
        return {"outcome": self.kind, "reason": self.reason, "stage": self.stage, "code": self.code,
                "enhanced": self.enhanced}  # fmt: skip


def _class_of(code: int, enhanced: str | None) -> int:
    if enhanced and enhanced[:1] in "245":
        return int(enhanced[0])
    return code // 100


def accepted(reply) -> Outcome:
    """The reply to the end of DATA (the submit function returns only a 250)."""
    return Outcome(DELIVERED, f"accepted: {reply}", "data", reply.code, reply.enhanced)


def refused(exc) -> Outcome:
    """An SmtpError (protocols/smtp.py) as an outcome."""
    stage, reply = exc.stage, exc.reply
    code, enhanced = (reply.code, reply.enhanced) if reply else (None, None)
    if stage == "auth":
        if reply is not None and _class_of(reply.code, reply.enhanced) == 4:
            return Outcome(TRANSIENT, f"login deferred by the server: {reply}", stage, code, enhanced)
        said = f": {reply}" if reply else f": {exc.message}"
        return Outcome(ERROR, f"login refused{said} (check the mailbox's password; not retried)", stage, code,
                       enhanced)  # fmt: skip
    if stage in ("tls", "starttls"):
        return Outcome(ERROR, f"{exc.message} (fix the TLS setup; not retried)", stage, code, enhanced)
    if reply is None:
        if stage == "data":
            return Outcome(UNKNOWN, f"connection lost during DATA ({exc.message}): the server may have the message",
                           stage)  # fmt: skip
        return Outcome(TRANSIENT, f"{stage}: {exc.message}", stage)
    klass = _class_of(reply.code, reply.enhanced)
    if klass == 4:
        return Outcome(TRANSIENT, f"{stage}: {exc.message}: {reply}", stage, code, enhanced)
    if klass == 5:
        return Outcome(PERMANENT, f"{stage}: {exc.message}: {reply}", stage, code, enhanced)
    return Outcome(TRANSIENT, f"{stage}: unexpected reply {reply}", stage, code, enhanced)
