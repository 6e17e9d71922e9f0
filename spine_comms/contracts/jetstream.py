"""The inbox contract's `mailroom.jetstream` section: where and how items go to NATS JetStream.

A model of its own (imported by contracts/inbox.py) so the JetStream backend's settings read in
one place. Every field says what it does; docs/scale-out.md says when to choose this backend.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from spine_comms.core.contracts import ContractModel

NAME = r"^[A-Za-z0-9_-]{1,64}$"  # stream, consumer and bucket names: no dots, spaces or wildcards
SUBJECT_PREFIX = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"  # tokens without wildcards


class JetStream(ContractModel):
    """The JetStream stream items are published to (mailroom.via: jetstream)."""

    servers: list[str] = Field(min_length=1)
    """Client URLs of the cluster's nodes: tls://host:port (or nats://host:port on loopback only)."""
    stream: str = Field(default="SPINE_MAILROOM", pattern=NAME)
    """The stream; created with these settings when it does not exist, used as it is when it does."""
    subject_prefix: str = Field(default="spine.mailroom", pattern=SUBJECT_PREFIX)
    """Items are published on <prefix>.<mailbox id or `prompt`>.<run id>; the stream takes <prefix>.>."""
    replicas: int = Field(default=3, ge=1, le=5)
    """Copies of each message in the cluster (3 survives the loss of one node; 1 for a single server)."""
    duplicate_window_seconds: float = Field(default=3600.0, ge=60, le=7 * 86400)
    """How long the stream itself recognises a Nats-Msg-Id; keep it above the longest poll interval
    (a poll killed after its publish is repeated by the next poll). Older replays are caught by the
    dedup bucket."""
    dedup_bucket: str = Field(default="spine_mailroom_dedup", pattern=NAME)
    """A KV bucket with one record per published item (key: its run id), which outlives the window."""
    dedup_days: float = Field(default=0, ge=0)
    """How long a dedup record is kept; 0 keeps it forever (about 200 bytes an item)."""
    drain_consumer: str = Field(default="spine-drain", pattern=NAME)
    """The durable pull consumer mailroom.drain reads with (one per spine host)."""
    agent_groups: list[str] = Field(default_factory=list)
    """Agent groups that read the stream where they run (`mailroom.drain --group NAME` on their hosts): one
    durable pull consumer each, named as the group and made with the stream. Every group receives every
    item; the members of one group share its items (each goes to one member)."""
    ack_wait_seconds: float = Field(default=30.0, gt=0, le=3600)
    """A message the drain took but did not acknowledge within this is delivered again."""
    checkpoints: Literal["files", "kv"] = "files"
    """files: checkpoints in the poller's state directory (one polling host); kv: in the KV bucket
    checkpoint_bucket, saved by compare-and-set, with a lease per mailbox (pollers on several hosts)."""
    checkpoint_bucket: str = Field(default="spine_mailroom_checkpoints", pattern=NAME)
    """The KV bucket of checkpoints (checkpoints: kv)."""
    lease_bucket: str = Field(default="spine_mailroom_leases", pattern=NAME)
    """The KV bucket of mailbox leases (checkpoints: kv); its max age is lease_seconds."""
    lease_seconds: float = Field(default=120.0, ge=5, le=3600)
    """A poller renews its mailbox's lease at every folder and batch, and within a batch every third of this;
    one silent this long is taken over. Keep it well above the timeouts (one slow call cannot renew)."""
    poller_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    """Who holds a lease; default: this host's name (one poller per mailbox per host: the local poll lock)."""
    user: str | None = None
    """The NATS user; with password_ref."""
    password_ref: str | None = None
    """A secret reference for the user's password (env:, file:, cmd:); NATS_MAILROOM_PASSWORD overrides."""
    token_ref: str | None = None
    """A secret reference for a token, instead of a user and password."""
    ca_file: str | None = None
    """A PEM file of CA certificates for tls:// servers; default: the system's."""
    server_name: str | None = None
    """The name the servers' certificate must carry; default: the host of each URL."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """How long a connection or a publish acknowledgement may take."""

    @field_validator("servers")
    @classmethod
    def _urls(cls, servers: list[str]) -> list[str]:
        for url in servers:
            parts = urlsplit(url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname or not parts.port:
                raise ValueError(f"{url!r}: use tls://host:port (or nats://host:port on loopback)")
            if parts.username or parts.password:
                raise ValueError(f"{url!r}: no credentials in a URL; use user and password_ref")
            if parts.scheme == "nats" and not _loopback(parts.hostname):
                raise ValueError(
                    f"{url!r}: plain nats:// only on loopback; use tls:// (credentials would travel clear)"
                )
        return servers

    @field_validator("agent_groups")
    @classmethod
    def _groups(cls, groups: list[str]) -> list[str]:
        for group in groups:
            if not re.match(NAME, group):
                raise ValueError(f"agent group {group!r}: letters, digits, '-' and '_' only (it names a consumer)")
        repeated = sorted({g for g in groups if groups.count(g) > 1})
        if repeated:
            raise ValueError(f"agent group(s) named twice: {', '.join(repeated)}")
        return groups

    @model_validator(mode="after")
    def _credentials(self) -> JetStream:
        if self.drain_consumer in self.agent_groups:
            raise ValueError(f"agent group {self.drain_consumer!r} is the drain consumer's name; name it otherwise")
        if self.token_ref and (self.user or self.password_ref):
            raise ValueError("token_ref or user/password_ref, not both")
        if bool(self.user) != bool(self.password_ref):
            raise ValueError("user and password_ref go together")
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
