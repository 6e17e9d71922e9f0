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
    # SMTPS (implicit TLS, 465) is Stalwart 0.16's only submission port by default; STARTTLS is 587.
    form: Literal["SMTPS", "STARTTLS"] = "SMTPS"
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)


class Retry(ContractModel):
    # The wait before attempt n+1 is backoff_seconds[n-1]; the last value repeats.
    backoff_seconds: list[float] = Field(default_factory=lambda: [60.0, 300.0, 1800.0, 3600.0], min_length=1)
    max_attempts: int = Field(default=8, ge=1, le=100)
    time_to_live_seconds: float = Field(default=48 * 3600.0, gt=0)


class BounceNotice(ContractModel):
    enabled: bool = True


class UnknownOutcome(ContractModel):
    # Where a copy of a submitted message can show up in the sender's own mailbox (a server that
    # files submissions in Sent); found there, an interrupted attempt is known to have been accepted.
    lookup_folders: list[str] = Field(default_factory=lambda: ["Sent"])


class Limits(ContractModel):
    max_attachment_bytes: int = Field(default=10 * 2**20, ge=1)
    max_message_bytes: int = Field(default=25 * 2**20, ge=1)
    max_recipients: int = Field(default=50, ge=1, le=100)  # Stalwart refuses past 100 (455 4.5.3)


class OutboxContract(ContractModel):
    version: int | str = 1
    submission: Submission = Field(default_factory=Submission)
    retry: Retry = Field(default_factory=Retry)
    bounce_notice: BounceNotice = Field(default_factory=BounceNotice)
    unknown_outcome: UnknownOutcome = Field(default_factory=UnknownOutcome)
    limits: Limits = Field(default_factory=Limits)
    allowed_recipient_domains: list[str] = Field(default_factory=list)
    agent: str = Field(default=DEFAULT_AGENT, pattern=r"^[A-Za-z0-9._:-]{1,100}$")  # the X-Spine-Agent value
