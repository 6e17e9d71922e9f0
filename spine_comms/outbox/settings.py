"""What a send needs from the contracts: the stack (mailboxes, ports, host, TLS), the outbox
contract (optional: defaults when absent), the allowed domains, and where things are written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spine_comms.contracts.outbox import OUTBOX_CONTRACT, OutboxContract
from spine_comms.contracts.stack import STACK_CONTRACT, Mailbox, StackContract, mailbox_env
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError, UsageError

_SECURITY = {"SMTPS": "tls", "STARTTLS": "starttls"}


@dataclass(frozen=True)
class Endpoint:
    """A server to dial for a mailbox; the password is resolved only when a connection is made."""

    host: str
    port: int
    security: str
    server_name: str | None
    ca_file: str | None
    timeout: float
    login: str
    password_ref: str | None
    override_env: str

    def where(self) -> str:
        return f"{self.host}:{self.port} ({'implicit TLS' if self.security == 'tls' else 'STARTTLS'})"


@dataclass(frozen=True)
class Settings:
    stack: StackContract
    outbox: OutboxContract
    outbox_contract_found: bool
    state: Path
    delivery_log: Path
    mailroom_inbox: Path

    @property
    def allowed_domains(self) -> list[str]:
        from_stack = self.stack.pilot.send_test.allowed_recipient_domains if self.stack.pilot.send_test else []
        return [d.lower().lstrip("@") for d in (from_stack or self.outbox.allowed_recipient_domains)]

    def mailbox(self, mailbox_id: str) -> Mailbox:
        box = self.stack.mailbox(mailbox_id)
        if box is None:
            known = ", ".join(m.id for m in self.stack.pilot.mailboxes) or "none"
            raise UsageError(f"--from {mailbox_id!r} is not a mailbox of the stack contract (known: {known})")
        return box

    def submission(self, box: Mailbox, env: dict[str, str]) -> Endpoint:
        form = self.outbox.submission.form
        return self._endpoint(box, env, [form], self.outbox.submission.timeout_seconds, f"submission.form {form}")

    def imap(self, box: Mailbox, env: dict[str, str]) -> Endpoint:
        return self._endpoint(box, env, ["IMAPS", "IMAP"], 30.0, "reading the sender's Sent folder")

    def _endpoint(self, box: Mailbox, env: dict[str, str], protocols: list[str], timeout: float, why: str):
        port = next((p for proto in protocols for p in self.stack.pilot.ports if p.protocol.value == proto), None)
        if port is None:
            raise ContractError(f"the stack contract has no {' or '.join(protocols)} port (pilot.ports) for {why}")
        host = self.stack.connect_host()
        if not host:
            raise ContractError("the stack contract gives no host (endpoints.host or pilot.vm_target.lan_ip)")
        ends = self.stack.endpoints
        security = _SECURITY.get(port.protocol.value) or ("tls" if port.protocol.value == "IMAPS" else "starttls")
        login = env.get(mailbox_env(box.id, "USER")) or box.login or box.address
        return Endpoint(host, port.host, security, self.stack.server_name(), ends.ca_file if ends else None,
                        timeout, login, box.password_ref, mailbox_env(box.id))  # fmt: skip


def load_settings(ctx: RunContext) -> Settings:
    stack = ctx.contracts.load(STACK_CONTRACT, StackContract)
    found = ctx.contracts.exists(OUTBOX_CONTRACT)
    outbox = ctx.contracts.load(OUTBOX_CONTRACT, OutboxContract) if found else OutboxContract()
    from spine_comms.outbox.delivery_log import log_path

    rooms = ctx.mailroom
    return Settings(stack, outbox, found, rooms.state, log_path(rooms.outbox), rooms.inbox)
