"""The inbox contract: `communications.inbox.contract.yaml`.

Which mailboxes are polled and watched, what happens to a message once its
mailroom item is durably written, the policy hostile mail meets (sizes,
senders, DMARC), where items go (the filesystem mailroom or the bridge), the
item's header values, and where checkpoints live. The JSON Schema users read
(spine_comms/schemas/inbox.contract.schema.json) is generated from this model,
and a test keeps the two equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spine_comms.contracts.jetstream import JetStream
from spine_comms.core.contract_files import CaFile
from spine_comms.core.contracts import ContractModel
from spine_comms.core.secrets import check_secret_reference

INBOX_CONTRACT = "communications.inbox.contract.yaml"


class Imap(ContractModel):
    """Where to read; each field defaults to the stack contract (endpoints.host, the IMAPS port, ...)."""

    host: str | None = None
    """The IMAP server; default: the stack contract's endpoints.host, then the VM's address."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Its port; default: the stack contract's IMAPS (or IMAP) port."""
    security: Literal["tls", "starttls"] = "tls"
    """tls: implicit TLS (993); starttls: STARTTLS on a plain port (143), never plain text."""
    server_name: str | None = None
    """The certificate name (and SNI); default: the stack contract's."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates (relative to the root); default: the stack contract's, else the system's."""
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    """How long a connection or an answer may take."""


class AfterEnqueue(ContractModel):
    """Done on the server only after the item is durably written: none, flag \\Seen, or move."""

    action: Literal["none", "seen", "move"] = "none"
    """none: leave the message; seen: flag it \\Seen; move: move it to `folder`."""
    folder: str | None = None
    """The folder a move puts it in (action move only)."""

    @model_validator(mode="after")
    def _folder_for_move(self) -> AfterEnqueue:
        if self.action == "move" and not self.folder:
            raise ValueError("action move needs a folder")
        return self


class Mailbox(ContractModel):
    """A mailbox to poll: a stack mailbox id; address, login and password come from the stack contract unless
    given here."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """The stack mailbox id (ops, alerts ...)."""
    address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    """Its address; default: the stack contract's."""
    login: str | None = None
    """The IMAP login; default: the stack contract's, else the address."""
    password_ref: str | None = None
    """A secret reference for its password (env:, file:, cmd:, infisical://); STALWART_<ID>_PASSWORD overrides."""
    imap: Imap = Field(default_factory=Imap)
    """Where and how to reach its IMAP server."""
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    """The folders polled and watched."""
    after_enqueue: AfterEnqueue = Field(default_factory=AfterEnqueue)
    """What is done on the server once a message's item is durably written."""

    @field_validator("password_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return check_secret_reference(value)


class Senders(ContractModel):
    """Who may send: entries are addresses (ops@example.org) or domains (@example.org)."""

    allow: list[str] = Field(default_factory=list)
    """When not empty, only these senders are admitted."""
    deny: list[str] = Field(default_factory=list)
    """These senders are never admitted (deny always wins)."""
    allow_unauthenticated: bool = False
    """Let an allow entry admit a message the receiving server (trusted_authserv_id) judged without
    authenticating its From (dmarc=none, fail, temperror, permerror, or no result for it). A From can be
    forged: such a message is parked unless this is true. Mail the server wrote no Authentication-Results for
    (submission, local delivery, IMAP APPEND) is not affected."""


class Policy(ContractModel):
    """What hostile mail meets before it becomes an item."""

    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    """A larger message is not fetched whole; it is quarantined with its headers only."""
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    """A larger attachment is not saved."""
    max_attachments: int = Field(default=20, ge=0)
    """At most this many attachments are saved per message."""
    senders: Senders = Field(default_factory=Senders)
    """Which senders are admitted."""
    dmarc_fail: Literal["enqueue", "quarantine", "drop"] = "quarantine"
    """What happens to a message whose trusted Authentication-Results say dmarc=fail."""
    trusted_authserv_id: str | None = None
    """Authentication-Results are believed only from this authserv-id (the receiving server)."""
    secret_match: Literal["park", "redact"] = "park"
    """An item that would trip the watcher's secret pattern: park it with a reason, or redact the match."""


class Bridge(ContractModel):
    """The spine's mailroom bridge (POST /inbox/enqueue)."""

    url: str = Field(pattern=r"^https?://")
    """The bridge's base URL (http://127.0.0.1:8799)."""
    token_ref: str
    """A secret reference for its token; MAILROOM_BRIDGE_TOKEN (or _FILE) overrides, as the bridge reads it."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates for an https bridge (relative to the root)."""
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    """How long one request may take."""

    @field_validator("token_ref")
    @classmethod
    def _reference(cls, value: str) -> str:
        return check_secret_reference(value)


class Target(ContractModel):
    """Where items go."""

    via: Literal["filesystem", "bridge", "jetstream"] = "filesystem"
    """filesystem: the mailroom's queued/ directory; bridge: the mailroom bridge's HTTP API; jetstream: a NATS
    JetStream stream (docs/scale-out.md)."""
    bridge: Bridge | None = None
    """The bridge (via bridge only)."""
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
    """The item's AUDIENCE line."""
    mode: Literal["ROUTE", "EXECUTE", "TRIAGE", "TALK"] = "ROUTE"
    """The item's MODE line."""
    session_type: Literal["SPINE"] = "SPINE"
    """The item's SESSION TYPE line."""
    pipeline_stage: Literal["INTAKE", "VERIFY", "EXECUTE", "CLOSEOUT"] = "INTAKE"
    """The item's PIPELINE STAGE line."""
    horizon: Literal["NOW", "NEXT", "LATER"] = "NOW"
    """The item's HORIZON line."""
    outcome: str = "Route inbound email to correct handler"
    """The item's OUTCOME line."""
    slug: str = Field(default="email_received", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The slug in the item's file name (S<date>-<time>__<slug>__R<id>.md)."""


class Watch(ContractModel):
    """How communications.inbox.watch keeps its IMAP IDLE connection."""

    idle_renew_seconds: float = Field(default=29 * 60, gt=0, le=29 * 60)
    """Renew IDLE before this many seconds (RFC 2177: servers may drop it after 30 minutes)."""
    reconnect_backoff_seconds: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0, 30.0])
    """Waits before each reconnection attempt; the last repeats."""
    heartbeat_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often the watcher writes its heartbeat."""


class Health(ContractModel):
    """What communications.inbox.health calls fresh."""

    max_heartbeat_age_seconds: float = Field(default=300.0, gt=0)
    """The watcher's heartbeat (or the last poll) may be at most this old."""
    max_unprocessed_minutes: float = Field(default=10.0, gt=0)
    """A message may wait at most this long before its item is written."""


class InboxContract(ContractModel):
    """communications.inbox.contract.yaml: which mailboxes are polled and what their mail meets."""

    version: int | str
    """The contract's version."""
    mailboxes: list[Mailbox] = Field(min_length=1)
    """The mailboxes polled and watched."""
    policy: Policy = Field(default_factory=Policy)
    """What hostile mail meets (sizes, senders, DMARC, secrets)."""
    mailroom: Target = Field(default_factory=Target)
    """Where items go."""
    item: Item = Field(default_factory=Item)
    """The header block of each item."""
    state_directory: str = "communications/inbox"
    """Checkpoints, raw .eml, normalized JSON and attachments: under the mailroom state directory (relative)
    or at an absolute path."""
    watch: Watch = Field(default_factory=Watch)
    """How the IDLE watcher behaves."""
    health: Health = Field(default_factory=Health)
    """What the health check calls fresh."""

    @model_validator(mode="after")
    def _unique_ids(self) -> InboxContract:
        ids = [m.id for m in self.mailboxes]
        if len(set(ids)) != len(ids):
            raise ValueError("mailbox ids must be unique")
        return self

    def mailbox(self, mailbox_id: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if m.id == mailbox_id), None)

    def state_path(self, mailroom_state: Path) -> Path:
        """state_directory resolved: relative to the mailroom state directory, or absolute. Here, below
        both the inbox and the outbox, so a reply (outbox) finds stored mail without importing the inbox."""
        path = Path(self.state_directory).expanduser()
        return path if path.is_absolute() else Path(mailroom_state) / path

    def check_with(self, contracts) -> list[tuple[tuple, str]]:
        """Each mailbox has an address: its own, or its stack mailbox's (found when the contract loads, so
        the error names this file and line, not a poll half way through)."""
        from spine_comms.contracts.stack import stack_mailbox_ids

        known = stack_mailbox_ids(contracts)
        return [(("mailboxes", i, "id"), f"mailbox {box.id}: no address here, and the stack contract has no "
                 f"mailbox {box.id} (it has: {', '.join(known or []) or 'none'})")
                for i, box in enumerate(self.mailboxes)
                    if known is not None and not box.address and box.id not in known]  # fmt: skip
