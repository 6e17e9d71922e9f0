"""The inbox contract: `communications.inbox.contract.yaml`.

Which mailboxes are polled and watched, what happens to a message once its
mailroom item is durably written, the policy hostile mail meets (sizes,
senders, DMARC), where items go (the filesystem mailroom or the bridge), the
item's header values, and where checkpoints live. The JSON Schema users read
(spine_comms/schemas/inbox.contract.schema.json) is generated from this model,
and a test keeps the two equal.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spine_comms.contracts.jetstream import JetStream
from spine_comms.core.contracts import ContractModel

INBOX_CONTRACT = "communications.inbox.contract.yaml"


class Imap(ContractModel):
    """Where to read; each field defaults to the stack contract (endpoints.host, the IMAPS port, ...)."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["tls", "starttls"] = "tls"
    server_name: str | None = None
    ca_file: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)


class AfterEnqueue(ContractModel):
    """Done on the server only after the item is durably written: none, flag \\Seen, or move."""

    action: Literal["none", "seen", "move"] = "none"
    folder: str | None = None  # for move

    @model_validator(mode="after")
    def _folder_for_move(self) -> AfterEnqueue:
        if self.action == "move" and not self.folder:
            raise ValueError("action move needs a folder")
        return self


class Mailbox(ContractModel):
    # A stack mailbox id: address, login and password_ref come from the stack contract unless given here.
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    login: str | None = None
    password_ref: str | None = None
    imap: Imap = Field(default_factory=Imap)
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    after_enqueue: AfterEnqueue = Field(default_factory=AfterEnqueue)


class Senders(ContractModel):
    # Entries are addresses (ops@example.org) or domains (@example.org). An allow list, when not
    # empty, admits only its senders; deny always wins.
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class Policy(ContractModel):
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    max_attachments: int = Field(default=20, ge=0)
    senders: Senders = Field(default_factory=Senders)
    # A message whose trusted Authentication-Results say dmarc=fail.
    dmarc_fail: Literal["enqueue", "quarantine", "drop"] = "quarantine"
    # Authentication-Results are believed only from this authserv-id (the receiving server).
    trusted_authserv_id: str | None = None
    # An item that would trip the watcher's secret pattern: park it with a reason, or redact the match.
    secret_match: Literal["park", "redact"] = "park"


class Bridge(ContractModel):
    url: str = Field(pattern=r"^https?://")
    token_ref: str  # a secret reference; MAILROOM_BRIDGE_TOKEN overrides, as the bridge reads it
    ca_file: str | None = None
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)


class Target(ContractModel):
    via: Literal["filesystem", "bridge", "jetstream"] = "filesystem"
    bridge: Bridge | None = None
    jetstream: JetStream | None = None
    """The NATS JetStream stream (via jetstream): servers, stream, subjects, replicas, credentials, CA."""

    @model_validator(mode="after")
    def _bridge_named(self) -> Target:
        if self.via == "bridge" and self.bridge is None:
            raise ValueError("via bridge needs a bridge section (url, token_ref)")
        if self.via == "jetstream" and self.jetstream is None:
            raise ValueError("via jetstream needs a jetstream section (servers, ...)")
        return self


class Item(ContractModel):
    """The header block of each mailroom item, in the spine's vocabulary."""

    audience: Literal["SUPERVISOR"] = "SUPERVISOR"
    mode: Literal["ROUTE", "EXECUTE", "TRIAGE", "TALK"] = "ROUTE"
    session_type: Literal["SPINE"] = "SPINE"
    pipeline_stage: Literal["INTAKE", "VERIFY", "EXECUTE", "CLOSEOUT"] = "INTAKE"
    horizon: Literal["NOW", "NEXT", "LATER"] = "NOW"
    outcome: str = "Route inbound email to correct handler"
    slug: str = Field(default="email_received", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class Watch(ContractModel):
    # RFC 2177: servers may drop an IDLE after 30 minutes; renew before.
    idle_renew_seconds: float = Field(default=29 * 60, gt=0, le=29 * 60)
    reconnect_backoff_seconds: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0, 30.0])
    heartbeat_seconds: float = Field(default=30.0, gt=0, le=3600)


class Health(ContractModel):
    max_heartbeat_age_seconds: float = Field(default=300.0, gt=0)
    max_unprocessed_minutes: float = Field(default=10.0, gt=0)


class InboxContract(ContractModel):
    version: int | str
    mailboxes: list[Mailbox] = Field(min_length=1)
    policy: Policy = Field(default_factory=Policy)
    mailroom: Target = Field(default_factory=Target)
    item: Item = Field(default_factory=Item)
    # Checkpoints, the raw .eml, the normalized JSON and attachments live here, under the
    # mailroom state directory (relative) or at an absolute path.
    state_directory: str = "communications/inbox"
    watch: Watch = Field(default_factory=Watch)
    health: Health = Field(default_factory=Health)

    @model_validator(mode="after")
    def _unique_ids(self) -> InboxContract:
        ids = [m.id for m in self.mailboxes]
        if len(set(ids)) != len(ids):
            raise ValueError("mailbox ids must be unique")
        return self

    def mailbox(self, mailbox_id: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if m.id == mailbox_id), None)
