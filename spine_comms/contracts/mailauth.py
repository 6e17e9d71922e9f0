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

from pydantic import AfterValidator, Field, model_validator

from spine_comms.core.contracts import ContractModel

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
    # The `all` qualifiers accepted at the end of the record: "-all" (hard fail) by default.
    all: list[Literal["-all", "~all", "?all", "+all"]] = Field(default_factory=lambda: ["-all"])
    required: bool = True


class DmarcExpectation(ContractModel):
    # The weakest policy accepted: weaker fails. p=none, where accepted, still warns
    # (monitoring only: spoofed mail is delivered).
    min_policy: DmarcPolicy = DmarcPolicy.NONE
    rua_required: bool = False


class Domain(ContractModel):
    domain: HostName
    receives_mail: bool = Field(
        default=True,
        description="The domain receives mail: a null MX (RFC 7505) fails. false: a null MX is what is expected.",
    )
    # The host that must be among the MX targets, whose A/AAAA and PTR are checked.
    mail_host: HostName | None = None
    # The addresses mail_host must resolve to (and that must have forward-confirmed PTR).
    mail_host_addresses: list[str] = Field(default_factory=list)
    dkim_selectors: list[str] = Field(default_factory=list)
    spf: SpfExpectation = Field(default_factory=SpfExpectation)
    dmarc: DmarcExpectation = Field(default_factory=DmarcExpectation)
    mta_sts: Presence = Presence.OPTIONAL
    tls_rpt: Presence = Presence.OPTIONAL

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
    # Where dkim.keygen writes private keys (relative paths are under the root).
    directory: str = "secrets/dkim"
    # Selector templates: {yyyy} {mm} {dd} {yyyymm} {yyyymmdd} {algorithm}.
    rsa_selector: str = "{yyyymm}r"
    ed25519_selector: str = "{yyyymm}e"


class Stalwart(ContractModel):
    url: str = Field(pattern=r"^https?://")
    # Certificate name when url names an address; the stack contract's CA file is used.
    server_name: str | None = None
    ca_file: str | None = None
    username: str | None = None
    # A password or app password (Basic, with username), or an API key (Bearer, alone).
    secret_ref: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Compare DNS with what the server signs with and recommends (dns.mail.status).
    compare_dns: bool = True


class ProbeTarget(ContractModel):
    # A mailbox id from the stack contract (same server), or an external mailbox.
    mailbox: str | None = None
    address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    imap_host: str | None = None
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls"] = "tls"
    server_name: str | None = None
    ca_file: str | None = None  # default: the system store (not the stack's CA)
    login: str | None = None
    password_ref: str | None = None
    folder: str = "INBOX"

    @model_validator(mode="after")
    def _one_kind(self) -> ProbeTarget:
        if bool(self.mailbox) == bool(self.address):
            raise ValueError("give either mailbox (a stack mailbox id) or address with imap_host")
        if self.address and not self.imap_host:
            raise ValueError("an external target needs imap_host")
        return self


class Probe(ContractModel):
    sender: str = Field(min_length=1)  # a stack mailbox id
    target: ProbeTarget
    # Submission: "SMTPS" (implicit TLS, 465) or "STARTTLS" (587), the port from the stack contract.
    submission: Literal["SMTPS", "STARTTLS"] = "SMTPS"
    timeout_seconds: float = Field(default=60.0, gt=0, le=900)
    # Authentication-Results are believed only from this authserv-id.
    trusted_authserv_id: str | None = None


class MailAuthContract(ContractModel):
    version: int | str
    domains: list[Domain] = Field(min_length=1)
    dkim_keys: DkimKeys = Field(default_factory=DkimKeys)
    mta_sts_fetch: MtaStsFetch = Field(
        default_factory=MtaStsFetch, description="Where and how the MTA-STS policy files are fetched"
    )
    stalwart: Stalwart | None = None
    probe: Probe | None = None

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
