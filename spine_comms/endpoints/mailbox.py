"""How to reach a mailbox, for every reader: an inbox-contract mailbox filled in from the stack contract
(the poll, the watch, health, search), and a stack mailbox over one protocol (the probe, the outbox).

An inbox-contract mailbox names a stack mailbox by id; whatever it does not say
(address, login, password reference, host, port, certificate name, CA file) comes
from the stack contract, as mail.auth.probe reads it. The spine's variables win
over both, so the spine's own wrapper keeps working:

    STALWART_IMAP_HOST, STALWART_IMAP_PORT     where to connect (every mailbox)
    STALWART_<ID>_USER, STALWART_<ID>_PASSWORD the login of mailbox <id> (ops: STALWART_OPS_*)

Unlike the spine's script, alerts@ is never read with the ops password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spine_comms.contracts.inbox import INBOX_CONTRACT, AfterEnqueue, InboxContract
from spine_comms.contracts.inbox import Mailbox as InboxMailbox
from spine_comms.contracts.stack import Mailbox, StackContract, connection_timeout, mailbox_env
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError, CouldNotEvaluate, UsageError
from spine_comms.endpoints.stack import stack_contract


@dataclass
class MailboxTarget:
    """A mailbox ready to poll: where, as whom (password resolved and registered for redaction), what."""

    id: str
    address: str
    login: str
    imap: object  # spine_comms.protocols.imap.ImapTarget (imported lazily: imapclient is heavy)
    folders: list[str]
    after_enqueue: AfterEnqueue
    password_source: str  # "env:STALWART_OPS_PASSWORD", "file:..."; never the value

    def where(self) -> str:
        return f"{self.imap.host}:{self.imap.port} ({self.imap.security})"

    def endpoint(self) -> dict:
        """The IMAP endpoint as resolved (contract, stack, environment): what a receipt records so that
        contract.endpoints.sync can copy it into the stack contract (governance/endpoints_sync.py: _imap)."""
        return {"host": self.imap.host, "port": self.imap.port, "security": self.imap.security}


def load_inbox_contract(ctx: RunContext, *, required: bool) -> InboxContract:
    """The inbox contract; without one (and when not required) a default that reads the stack's ops@."""
    if required or ctx.contracts.exists(INBOX_CONTRACT):
        return ctx.contracts.load(INBOX_CONTRACT, InboxContract)
    return InboxContract(version=1, mailboxes=[InboxMailbox(id="ops")])


def pick_mailbox(ctx: RunContext, contract: InboxContract, wanted: str) -> InboxMailbox:
    """A contract mailbox by id or address; else a stack mailbox (read with the defaults)."""
    wanted_l = wanted.strip().lower()
    for box in contract.mailboxes:
        if box.id == wanted_l or (box.address or "").lower() == wanted_l:
            return box
    stack = stack_contract(ctx)
    if stack is not None:
        for sbox in stack.pilot.mailboxes:
            if sbox.id == wanted_l or sbox.address.lower() == wanted_l:
                contracted = contract.mailbox(sbox.id)
                return contracted or InboxMailbox(id=sbox.id)
    known = [b.id for b in contract.mailboxes] + ([b.id for b in stack.pilot.mailboxes] if stack else [])
    raise UsageError(
        f"--mailbox {wanted!r} is neither a mailbox of the inbox contract nor of the stack contract",
        hint=f"known: {', '.join(dict.fromkeys(known)) or 'none'}",
    )


def open_mailbox(ctx: RunContext, contract: InboxContract, mailbox_id: str) -> MailboxTarget:
    """Resolve mailbox `mailbox_id` (an id or address) into a MailboxTarget: stack defaults filled in,
    the spine's env overrides applied, the password resolved (exit 2 when it cannot be)."""
    from spine_comms.protocols.imap import ImapTarget

    box = pick_mailbox(ctx, contract, mailbox_id)
    stack = stack_contract(ctx)
    sbox = stack.mailbox(box.id) if stack else None
    address = box.address or (sbox.address if sbox else None)
    if not address:
        raise ContractError(f"mailbox {box.id}: no address in the inbox contract, and none in the stack contract")
    login = ctx.env.get(mailbox_env(box.id, "USER")) or box.login or (sbox.login if sbox else None) or address
    password_ref = box.password_ref or (sbox.password_ref if sbox else None)
    override = mailbox_env(box.id, "PASSWORD")
    password = ctx.secrets.resolve(password_ref, override_env=override, what=f"password of mailbox {box.id}")

    imap = box.imap
    host = ctx.env.get("STALWART_IMAP_HOST") or imap.host or (stack.connect_host() if stack else None)
    if not host:
        raise ContractError(
            f"mailbox {box.id}: no IMAP host (imap.host, the stack's endpoints.host, or STALWART_IMAP_HOST)"
        )
    port, security = imap.port, imap.security
    if port is None and stack is not None:
        ports = {p.protocol.value: p.host for p in stack.pilot.ports}
        if "IMAPS" in ports:
            port, security = ports["IMAPS"], "tls"
        elif "IMAP" in ports:
            port, security = ports["IMAP"], "starttls"
    env_port = ctx.env.get("STALWART_IMAP_PORT")
    if env_port:
        if not env_port.isdigit() or not 0 < int(env_port) < 65536:
            raise UsageError(f"STALWART_IMAP_PORT={env_port!r} is not a port number")
        port = int(env_port)
    if port is None:
        raise ContractError(f"mailbox {box.id}: no IMAP port (imap.port, or an IMAPS/IMAP port in the stack contract)")
    endpoints = stack.endpoints if stack else None
    server_name = imap.server_name or (stack.server_name() if stack else None) or host
    ca_file = imap.ca_file or (endpoints.ca_file if endpoints else None)
    if ca_file and not Path(ca_file).expanduser().is_absolute():
        ca_file = str(ctx.root.path / ca_file)
    target = ImapTarget(
        host, port, security, server_name, str(Path(ca_file).expanduser()) if ca_file else None,
        login, password.value, connection_timeout(stack, imap),
    )  # fmt: skip
    return MailboxTarget(box.id, address, login, target, list(box.folders), box.after_enqueue, password.source)


def could_not_evaluate(target: MailboxTarget, exc) -> CouldNotEvaluate:
    """An IMAP failure to connect or log in (`exc`: protocols.imap.ImapError) as exit 3, naming the account
    and where (the kind from the outcome map); the password never appears."""
    from spine_comms.core.outcomes import FailureKind
    from spine_comms.core.outcomes import could_not_evaluate as outcome_error

    hint = None
    if exc.failure_kind is FailureKind.CREDENTIALS_REFUSED:
        hint = f"check the password of mailbox {target.id} ({target.password_source})"
    elif exc.failure_kind in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT, FailureKind.TLS_UNTRUSTED):
        hint = "check the host and port (the stack contract, STALWART_IMAP_HOST/STALWART_IMAP_PORT) and the CA file"
    return outcome_error(exc, f"IMAP {target.where()} as {target.login}: {exc.stage}: {exc.message}", hint=hint)


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


def mailbox_password(ctx: RunContext, endpoint: MailboxEndpoint, mailbox: str):
    """The endpoint's password (a Secret, registered for redaction): the spine's override variable
    (STALWART_<ID>_PASSWORD) first, then the mailbox's password_ref."""
    return ctx.secrets.resolve(endpoint.password_ref, override_env=endpoint.override_env,
                               what=f"password of mailbox {mailbox}")  # fmt: skip
