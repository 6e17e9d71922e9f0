"""The outbox contract: `communications.outbox.contract.yaml` (optional; every key has a default).

What the spine's files do not already say about sending. Allowed recipient domains
come from the stack contract's `pilot.send_test.allowed_recipient_domains`; this
contract's list is used only when that one is empty. The delivery log location and
schema are the delivery contract's (communications.delivery.contract.yaml).

    version: 1
    submission: {form: SMTPS, timeout_seconds: 30}
    retry: {backoff_seconds: [60, 300, 1800, 3600], max_attempts: 8, time_to_live_seconds: 172800}
    bounce_notice: {enabled: true}
    unknown_outcome: {lookup_folders: [Sent]}
    limits: {max_attachment_bytes: 10485760, max_message_bytes: 26214400}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from spine_comms.core.contracts import ContractModel

OUTBOX_CONTRACT = "communications.outbox.contract.yaml"
DEFAULT_AGENT = "communications.mail.send"


class Submission(ContractModel):
    """How mail is submitted."""

    form: Literal["SMTPS", "STARTTLS"] = "SMTPS"
    """SMTPS (implicit TLS, 465: Stalwart 0.16's only submission port by default) or STARTTLS (587); the port
    comes from the stack contract."""
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    """How long a connection or an answer may take."""


class Retry(ContractModel):
    """How a send that could not be delivered is retried."""

    backoff_seconds: list[float] = Field(default_factory=lambda: [60.0, 300.0, 1800.0, 3600.0], min_length=1)
    """The wait before attempt n+1 is backoff_seconds[n-1]; the last value repeats."""
    max_attempts: int = Field(default=8, ge=1, le=100)
    """After this many attempts the send fails."""
    time_to_live_seconds: float = Field(default=48 * 3600.0, gt=0)
    """A send older than this is not tried again."""


class BounceNotice(ContractModel):
    """A notice in the mailroom when a send bounces."""

    enabled: bool = True
    """Write the notice."""


class UnknownOutcome(ContractModel):
    """How an interrupted attempt is settled."""

    lookup_folders: list[str] = Field(default_factory=lambda: ["Sent"])
    """Where a copy of a submitted message can show up in the sender's own mailbox; found there, the attempt is
    known to have been accepted."""


class Limits(ContractModel):
    """What one send may be."""

    max_attachment_bytes: int = Field(default=10 * 2**20, ge=1)
    """The largest attachment."""
    max_message_bytes: int = Field(default=25 * 2**20, ge=1)
    """The largest message."""
    max_recipients: int = Field(default=50, ge=1, le=100)
    """The most recipients (Stalwart refuses past 100 with 455 4.5.3)."""


class OutboxContract(ContractModel):
    """communications.outbox.contract.yaml: what the spine's files do not already say about sending."""

    version: int | str = 1
    """The contract's version."""
    submission: Submission = Field(default_factory=Submission)
    """How mail is submitted."""
    retry: Retry = Field(default_factory=Retry)
    """How undelivered sends are retried."""
    bounce_notice: BounceNotice = Field(default_factory=BounceNotice)
    """A mailroom notice on a bounce."""
    unknown_outcome: UnknownOutcome = Field(default_factory=UnknownOutcome)
    """How an interrupted attempt is settled."""
    limits: Limits = Field(default_factory=Limits)
    """What one send may be."""
    allowed_recipient_domains: list[str] = Field(default_factory=list)
    """Domains mail may go to, used only when the stack contract's pilot.send_test list is empty."""
    agent: str = Field(default=DEFAULT_AGENT, pattern=r"^[A-Za-z0-9._:-]{1,100}$")
    """The X-Spine-Agent header's value."""
