"""The stack contract: `communications.stack.contract.yaml`, the spine's file as it is.

The file is the spine's: the keys it carries that spine-comms does not read
(mail_archiver, transactional, pilot.microsoft, vm_target.vm_id ...) are listed
here by name and kept as they are; any other key is refused as a typo. The new
`endpoints` section says how to reach and verify the servers (address,
certificate name, CA file, DNS server).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator

from spine_comms.core.contract_files import CaFile
from spine_comms.core.contracts import ContractModel
from spine_comms.core.secrets import check_secret_reference

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
    """One published port of the mail server (pilot.ports)."""

    container: int | None = Field(default=None, ge=1, le=65535)
    """The port inside the container."""
    host: int = Field(ge=1, le=65535)
    """The port reached from outside: the one spine-comms connects to."""
    protocol: Protocol
    """What speaks on it: SMTP, SMTPS, STARTTLS, IMAPS, IMAP, ManageSieve, HTTPS or HTTP."""
    description: str = ""
    """What the port is for, in the operator's words."""


class Mailbox(ContractModel):
    """A mailbox of the mail server (pilot.mailboxes)."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """Its id (ops, alerts ...); the spine's variable STALWART_<ID>_PASSWORD overrides its password."""
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    """Its e-mail address."""
    role: str = ""
    """What it is for (the spine's field; not read by spine-comms)."""
    status: str = "active"
    """The spine's lifecycle status of the mailbox."""
    routing_mode: str = ""
    """The spine's routing mode (stalwart-direct ...); not read by spine-comms."""
    login: str | None = None
    """The login name, when it is not the address (Stalwart logs in with the local part)."""
    password_ref: str | None = None
    """A secret reference for its password: env:NAME, file:PATH, cmd:COMMAND or infisical://spine/<path>/<KEY>."""

    @field_validator("password_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return check_secret_reference(value)


class VmTarget(ContractModel):
    """The machine the mail server runs on (the spine's pilot.vm_target)."""

    hostname: str | None = None
    """Its host name."""
    lan_ip: str | None = None
    """Its LAN address: where spine-comms connects when endpoints.host is not given."""
    tailscale_ip: str | None = None
    """Its tailnet address: used when there is no LAN address."""
    vm_id: str | int | None = None
    """The spine's VM id (not read by spine-comms)."""
    profile: str | None = None
    """The spine's VM profile (not read by spine-comms)."""
    proxmox_host: str | None = None
    """The spine's hypervisor host (not read by spine-comms)."""


class SendTest(ContractModel):
    """Who test mail may go to (the spine's pilot.send_test)."""

    mode: str | None = None
    """The spine's send-test mode (live-pilot ...)."""
    manual_approval_required: bool | None = None
    """The spine's flag that sending needs manual approval."""
    default_sender: str | None = None
    """The address test mail is sent from by default."""
    default_recipient: str | None = None
    """The address test mail is sent to by default."""
    allowed_recipient_domains: list[str] = Field(default_factory=list)
    """Domains mail may be sent to; communications.mail.send and Sieve redirects refuse others."""


class Pilot(ContractModel):
    """The spine's pilot section: the mail server, its ports and mailboxes."""

    stage: str | None = None
    """The spine's rollout stage."""
    provider: str | None = None
    """The mail server product (stalwart)."""
    execution_backend: str | None = None
    """The spine's execution backend (not read by spine-comms)."""
    microsoft: dict[str, Any] | None = None
    """The spine's Microsoft Graph settings (not read by spine-comms)."""
    graph: dict[str, Any] | None = None
    """The spine's older name of the Microsoft Graph settings (not read by spine-comms)."""
    vm_target: VmTarget | None = None
    """The machine the mail server runs on."""
    ports: list[Port] = Field(default_factory=list)
    """The server's published ports."""
    send_test: SendTest | None = None
    """Who test mail may go to."""
    mailboxes: list[Mailbox] = Field(default_factory=list)
    """The server's mailboxes."""


class DnsServer(ContractModel):
    """The DNS server to ask instead of the system resolver."""

    server: str
    """Its address (an IP address)."""
    port: int = Field(default=53, ge=1, le=65535)
    """Its port."""
    timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    """How long one DNS query may take."""


class Endpoints(ContractModel):
    """How to reach and verify the servers (spine-comms' section)."""

    host: str | None = None
    """Where to connect; default: pilot.vm_target.lan_ip, then its tailscale_ip."""
    server_name: str | None = None
    """The certificate name (and TLS SNI), so a host can be reached by address; default mail.<mail domain>."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates to verify servers with (relative to the root); default: the system's."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    """How long a connection or an answer may take."""
    expiry_warn_days: int = Field(default=14, ge=0)
    """A certificate expiring within this many days is a warn."""
    expiry_fail_days: int = Field(default=7, ge=0)
    """A certificate expiring within this many days is a fail."""
    dns: DnsServer | None = None
    """The DNS server to ask; default: the system resolver."""


class ServiceEndpoints(ContractModel):
    """Endpoints the status capabilities reached, written by contract.endpoints.sync (do not edit by hand)."""

    caldav: dict[str, dict[str, Any]] | None = None
    """CalDAV per account: url, principal, home_set, verified_by."""
    carddav: dict[str, dict[str, Any]] | None = None
    """CardDAV per account: url, principal, home_set, verified_by."""
    managesieve: dict[str, dict[str, Any]] | None = None
    """ManageSieve per mailbox: host, port, implementation, script, verified_by."""
    imap_poll: dict[str, dict[str, Any]] | None = None
    """IMAP per polled mailbox: address, folders, host, port, security, verified_by."""
    admin_api: dict[str, Any] | None = None
    """The management API: url, api form, version, jmap_session, verified_by."""


def stack_mailbox_ids(contracts) -> list[str] | None:
    """The mailbox ids of the root's stack contract, for other contracts' load checks; None without one (a
    capability that needs no mailbox, like mailroom.enqueue, may run on such a root)."""
    if not contracts.exists(STACK_CONTRACT):
        return None
    return [box.id for box in contracts.load(STACK_CONTRACT, StackContract).pilot.mailboxes]


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
    """false: this site does not run the surface, and its gates SKIP saying so."""
    reason: str = ""
    """Why not, shown in the SKIP line."""


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
    """The spine's communications.stack.contract.yaml, with spine-comms' endpoints sections."""

    spine_owned: ClassVar[bool] = True

    version: int | str
    """The contract's version."""
    updated_at: dt.date | str | None = None
    """When it was last changed (YYYY-MM-DD)."""
    owner: str | None = None
    """Who owns it."""
    scope: str | None = None
    """The spine's scope name."""
    pilot: Pilot
    """The mail server, its ports and mailboxes."""
    endpoints: Endpoints | None = None
    """How to reach and verify the servers."""
    service_endpoints: ServiceEndpoints | None = None
    """What the status capabilities reached (written by contract.endpoints.sync)."""
    mail_archiver: dict[str, Any] | None = None
    """The spine's mail-archiver section (not read by spine-comms)."""
    transactional: dict[str, Any] | None = None
    """The spine's transactional-mail section (not read by spine-comms)."""
    surfaces: dict[Surface, SurfaceSwitch] = Field(default_factory=dict)
    """Parts of the stack this site does not run: their verify gates SKIP, saying so (docs/verify.md)."""

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
