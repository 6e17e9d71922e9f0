"""The email-authentication contract: `communications.mailauth.contract.yaml`.

What phase 1 expects of the operator's domains (MX, SPF, DKIM selectors,
DMARC policy, MTA-STS, TLS-RPT), where generated DKIM keys go, how to reach
Stalwart's management API, and how the probe mail travels. The spine has no
such file yet (its D221 gate hard-codes the names); this one is new, so it is
modelled whole. Where to resolve (the DNS server) stays in the stack
contract's `endpoints.dns`, next to every other "where to connect" fact.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from spine_comms.core.contract_files import CaFile
from spine_comms.core.contracts import ContractModel
from spine_comms.core.secrets import check_secret_reference

MAILAUTH_CONTRACT = "communications.mailauth.contract.yaml"

HOSTNAME = r"^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$"
SELECTOR = r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,62})$"


def _host_name(value: str) -> str:
    if len(value) > 253 or not re.match(HOSTNAME, value):
        raise ValueError(f"{value!r} is not a DNS host name (letters, digits, '-', '_' and dots)")
    return value


HostName = Annotated[str, AfterValidator(_host_name)]


class Presence(StrEnum):
    REQUIRED = "required"  # missing is a failure
    OPTIONAL = "optional"  # checked when present, missing is fine
    ABSENT = "absent"  # not looked up


class DmarcPolicy(StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class SpfExpectation(ContractModel):
    """What the domain's SPF record must be."""

    all: list[Literal["-all", "~all", "?all", "+all"]] = Field(default_factory=lambda: ["-all"])
    """The `all` qualifiers accepted at the end of the record: -all (hard fail) by default."""
    required: bool = True
    """A missing SPF record is a failure."""


class DmarcExpectation(ContractModel):
    """What the domain's DMARC record must be."""

    min_policy: DmarcPolicy = DmarcPolicy.NONE
    """The weakest policy accepted: weaker fails; p=none, where accepted, still warns (spoofed mail is
    delivered)."""
    rua_required: bool = False
    """Aggregate reports (rua=) must be asked for."""


class Domain(ContractModel):
    """A mail domain and what its DNS must say."""

    domain: HostName
    """The domain."""
    receives_mail: bool = Field(
        default=True,
        description="The domain receives mail: a null MX (RFC 7505) fails. false: a null MX is what is expected.",
    )
    mail_host: HostName | None = None
    """The host that must be among the MX targets, whose A/AAAA and PTR are checked."""
    mail_host_addresses: list[str] = Field(default_factory=list)
    """The addresses mail_host must resolve to (each with a forward-confirmed PTR)."""
    dkim_selectors: list[str] = Field(default_factory=list)
    """The DKIM selectors that must publish a key."""
    spf: SpfExpectation = Field(default_factory=SpfExpectation)
    """What the SPF record must be."""
    dmarc: DmarcExpectation = Field(default_factory=DmarcExpectation)
    """What the DMARC record must be."""
    mta_sts: Presence = Presence.OPTIONAL
    """MTA-STS: required (missing fails), optional (checked when present) or absent (not looked up)."""
    tls_rpt: Presence = Presence.OPTIONAL
    """TLS-RPT: required, optional or absent."""

    @model_validator(mode="after")
    def _selectors_valid(self) -> Domain:
        bad = [s for s in self.dkim_selectors if not re.match(SELECTOR, s)]
        if bad:
            raise ValueError(f"not a DKIM selector: {', '.join(bad)}")
        return self


class MtaStsFetch(ContractModel):
    """How dns.mail.status reaches https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 3.3).

    The policy host's name is resolved with the same DNS as every other check. The defaults are
    what senders do (port 443, the system's CA store); the lab, whose policy host is a loopback
    port with a certificate from the lab's CA, overrides port and ca_file.
    """

    port: int = Field(
        default=443, ge=1, le=65535, description="Port of the policy host (senders use 443; change it only for a lab)"
    )
    ca_file: str | None = Field(
        default=None,
        description="CA bundle that verifies the policy host's certificate; default: the system store, as senders do",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Seconds for the whole HTTPS fetch")


class DkimKeys(ContractModel):
    """Where dkim.keygen writes keys and how it names selectors."""

    directory: str = "secrets/dkim"
    """Where private keys are written (a relative path is under the root)."""
    rsa_selector: str = "{yyyymm}r"
    """The RSA selector's template: {yyyy} {mm} {dd} {yyyymm} {yyyymmdd} {algorithm}."""
    ed25519_selector: str = "{yyyymm}e"
    """The Ed25519 selector's template."""


class Stalwart(ContractModel):
    """Stalwart's management API."""

    url: str = Field(pattern=r"^https?://")
    """The API's base URL."""
    server_name: str | None = None
    """The certificate name when url names an address."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates (relative to the root); default: the stack contract's."""
    username: str | None = None
    """The user for Basic authentication; none: secret_ref is an API key (Bearer)."""
    secret_ref: str | None = None
    """A secret reference: a password or app password (with username), or an API key (alone)."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """How long a request may take."""
    compare_dns: bool = True
    """Compare DNS with what the server signs with and recommends (dns.mail.status)."""

    @field_validator("secret_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return check_secret_reference(value)


class ProbeTarget(ContractModel):
    """Where the probe mail is read back: a stack mailbox, or an external mailbox."""

    mailbox: str | None = None
    """A mailbox id of the stack contract (the same server)."""
    address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    """An external mailbox's address (with imap_host)."""
    imap_host: str | None = None
    """The external mailbox's IMAP server."""
    imap_port: int = Field(default=993, ge=1, le=65535)
    """Its port."""
    imap_security: Literal["tls", "starttls"] = "tls"
    """tls (implicit) or starttls."""
    server_name: str | None = None
    """The certificate name when imap_host is an address."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates (relative to the root); default: the system's (not the stack's)."""
    login: str | None = None
    """The IMAP login."""
    password_ref: str | None = None
    """A secret reference for the password."""
    folder: str = "INBOX"
    """The folder the probe arrives in."""

    @field_validator("password_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return check_secret_reference(value)

    @model_validator(mode="after")
    def _one_kind(self) -> ProbeTarget:
        if bool(self.mailbox) == bool(self.address):
            raise ValueError("give either mailbox (a stack mailbox id) or address with imap_host")
        if self.address and not self.imap_host:
            raise ValueError("an external target needs imap_host")
        return self


class Probe(ContractModel):
    """The probe mail that proves dkim=pass and dmarc=pass."""

    sender: str = Field(min_length=1)
    """The stack mailbox id it is sent from."""
    target: ProbeTarget
    """Where it is read back."""
    submission: Literal["SMTPS", "STARTTLS"] = "SMTPS"
    """SMTPS (implicit TLS, 465) or STARTTLS (587); the port comes from the stack contract."""
    timeout_seconds: float = Field(default=60.0, gt=0, le=900)
    """How long to wait for it to arrive."""
    trusted_authserv_id: str | None = None
    """Authentication-Results are believed only from this authserv-id."""


class MailAuthContract(ContractModel):
    """communications.mailauth.contract.yaml: what the operator's domains must publish, and the probe."""

    version: int | str
    """The contract's version."""
    domains: list[Domain] = Field(min_length=1)
    """The mail domains."""
    dkim_keys: DkimKeys = Field(default_factory=DkimKeys)
    """Where generated DKIM keys go."""
    mta_sts_fetch: MtaStsFetch = Field(
        default_factory=MtaStsFetch, description="Where and how the MTA-STS policy files are fetched"
    )
    stalwart: Stalwart | None = None
    """Stalwart's management API, when it is asked."""
    probe: Probe | None = None
    """The probe mail."""

    @model_validator(mode="after")
    def _domains_once(self) -> MailAuthContract:
        names = [d.domain.rstrip(".").lower() for d in self.domains]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            # Each domain gets one verdict per check; two entries would give two, possibly contradictory.
            raise ValueError(f"domains: {', '.join(twice)} listed more than once")
        return self

    def domain(self, name: str) -> Domain | None:
        name = name.rstrip(".").lower()
        return next((d for d in self.domains if d.domain.lower() == name), None)
