"""The stack contract: `communications.stack.contract.yaml`, the spine's file as it is.

Only what spine-comms reads is modelled; every other key (mail_archiver,
transactional, ...) is kept untouched. The new `endpoints` section says how to
reach and verify the servers (address, certificate name, CA file, DNS server).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field

from spine_comms.core.contracts import ContractModel

STACK_CONTRACT = "communications.stack.contract.yaml"


class Protocol(StrEnum):
    SMTP = "SMTP"  # port-25 style: plain greeting, STARTTLS offered
    SMTPS = "SMTPS"  # implicit TLS submission (465)
    STARTTLS = "STARTTLS"  # submission with STARTTLS (587)
    IMAPS = "IMAPS"
    IMAP = "IMAP"  # IMAP with STARTTLS
    MANAGESIEVE = "ManageSieve"  # always STARTTLS
    HTTPS = "HTTPS"
    HTTP = "HTTP"  # plain; reachability only


class Port(ContractModel):
    container: int | None = Field(default=None, ge=1, le=65535)
    host: int = Field(ge=1, le=65535)
    protocol: Protocol
    description: str = ""


class Mailbox(ContractModel):
    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    role: str = ""
    status: str = "active"
    routing_mode: str = ""
    login: str | None = None
    password_ref: str | None = None


class VmTarget(ContractModel):
    hostname: str | None = None
    lan_ip: str | None = None
    tailscale_ip: str | None = None


class SendTest(ContractModel):
    mode: str | None = None
    default_sender: str | None = None
    default_recipient: str | None = None
    allowed_recipient_domains: list[str] = Field(default_factory=list)


class Pilot(ContractModel):
    stage: str | None = None
    provider: str | None = None
    vm_target: VmTarget | None = None
    ports: list[Port] = Field(default_factory=list)
    send_test: SendTest | None = None
    mailboxes: list[Mailbox] = Field(default_factory=list)


class DnsServer(ContractModel):
    server: str
    port: int = Field(default=53, ge=1, le=65535)
    timeout_seconds: float = Field(default=3.0, gt=0, le=60)


class Endpoints(ContractModel):
    host: str | None = None
    server_name: str | None = None
    ca_file: str | None = None
    # Every connection to the stack's servers waits this long for each answer (contracts.stack.connection_timeout).
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    expiry_warn_days: int = Field(default=14, ge=0)
    expiry_fail_days: int = Field(default=7, ge=0)
    dns: DnsServer | None = None


class Surface(StrEnum):
    """The parts of the stack a verify gate proves; each can be declared not deployed (surfaces:)."""

    MAIL_AUTH = "mail_auth"  # DNS records (DKIM, DMARC, SPF ...) and the probe mail
    CALDAV = "caldav"
    CARDDAV = "carddav"
    CALENDAR_SYNC = "calendar_sync"  # the operator's calendar layers synced to a CalDAV calendar
    INBOX = "inbox"  # mailboxes polled into the mailroom
    SIEVE = "sieve"  # routing rules applied with ManageSieve
    OUTBOX = "outbox"  # mail sent through the durable outbox


class SurfaceSwitch(ContractModel):
    """`surfaces.<surface>: {deployed: false, reason: ...}`: the one thing that makes a verify gate SKIP.
    Without it a gate whose contract or server is missing FAILs: silence never reads as green."""

    deployed: bool
    reason: str = ""


DEFAULT_TIMEOUT_SECONDS = 5.0


def connection_timeout(stack: StackContract | None, section=None) -> float:
    """Seconds a connection to a stack server waits for each answer, for every protocol (IMAP, SMTP,
    ManageSieve, DAV, HTTP): the section's own `timeout_seconds` when its contract sets one, else the
    stack contract's `endpoints.timeout_seconds`. One knob, so that a hung server costs every gate the
    same bounded wait and a verify run keeps its ring budget."""
    if section is not None and "timeout_seconds" in section.model_fields_set:
        return float(section.timeout_seconds)
    if stack is not None and stack.endpoints is not None:
        return float(stack.endpoints.timeout_seconds)
    return DEFAULT_TIMEOUT_SECONDS


def mailbox_env(mailbox_id: str, what: str = "PASSWORD") -> str:
    """The spine's override variable for a stack mailbox: STALWART_OPS_PASSWORD, STALWART_OPS_USER ..."""
    return f"STALWART_{mailbox_id.upper().replace('-', '_')}_{what}"


class StackContract(ContractModel):
    version: int | str
    updated_at: dt.date | str | None = None
    owner: str | None = None
    scope: str | None = None
    pilot: Pilot
    endpoints: Endpoints | None = None
    # Parts of the stack this site does not run: their verify gates SKIP, saying so (docs/verify.md).
    surfaces: dict[Surface, SurfaceSwitch] = Field(default_factory=dict)

    def not_deployed(self, surface: str) -> SurfaceSwitch | None:
        """The switch that says `surface` is not deployed, or None (deployed, or not declared)."""
        switch = self.surfaces.get(Surface(surface))
        return switch if switch is not None and not switch.deployed else None

    def mailbox(self, mailbox_id: str) -> Mailbox | None:
        return next((m for m in self.pilot.mailboxes if m.id == mailbox_id), None)

    @property
    def mail_domain(self) -> str | None:
        for box in self.pilot.mailboxes:
            return box.address.split("@", 1)[1]
        return None

    def connect_host(self) -> str | None:
        """Where to connect: endpoints.host, else the VM's LAN address, else its tailnet address."""
        if self.endpoints and self.endpoints.host:
            return self.endpoints.host
        target = self.pilot.vm_target
        return (target.lan_ip or target.tailscale_ip) if target else None

    def server_name(self) -> str | None:
        """The certificate name: endpoints.server_name, else mail.<mail domain> as the spine probes."""
        if self.endpoints and self.endpoints.server_name:
            return self.endpoints.server_name
        return f"mail.{self.mail_domain}" if self.mail_domain else None


# How each mail protocol of pilot.ports reaches TLS: at connect, or by STARTTLS.
_TLS_AT_CONNECT = {"SMTPS": "tls", "IMAPS": "tls", "STARTTLS": "starttls", "IMAP": "starttls"}


@dataclass(frozen=True)
class MailboxEndpoint:
    """Where a mailbox is reached over one protocol and how TLS is verified (the password is resolved
    only when a connection is made, from password_ref or the spine's override variable)."""

    host: str
    port: int
    security: str  # tls | starttls
    server_name: str | None
    ca_file: str | None
    timeout: float
    login: str
    password_ref: str | None
    override_env: str | None

    def where(self) -> str:
        return f"{self.host}:{self.port} ({'implicit TLS' if self.security == 'tls' else 'STARTTLS'})"


def mailbox_endpoint(
    stack: StackContract,
    box: Mailbox,
    protocols: Sequence[str],
    *,
    timeout: float,
    why: str,
    login: str | None = None,
    hint: str | None = None,
) -> MailboxEndpoint:
    """A stack mailbox over the first of `protocols` (SMTPS, STARTTLS, IMAPS, IMAP) that pilot.ports has."""
    from spine_comms.core.errors import ContractError

    port = next((p for proto in protocols for p in stack.pilot.ports if p.protocol.value == proto), None)
    if port is None:
        raise ContractError(f"the stack contract has no {' or '.join(protocols)} port (pilot.ports) for {why}",
                            hint=hint)  # fmt: skip
    host = stack.connect_host()
    if not host:
        raise ContractError("the stack contract gives no host (endpoints.host or pilot.vm_target.lan_ip)")
    ca_file = stack.endpoints.ca_file if stack.endpoints else None
    security = _TLS_AT_CONNECT[port.protocol.value]
    login = login or box.login or box.address
    return MailboxEndpoint(host, port.host, security, stack.server_name(), ca_file, timeout, login, box.password_ref,
                           mailbox_env(box.id))  # fmt: skip
