"""What a send needs from the contracts: the stack (mailboxes, ports, host, TLS), the outbox
contract (optional: defaults when absent), the allowed domains, and where things are written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spine_comms.contracts.outbox import OUTBOX_CONTRACT, OutboxContract
from spine_comms.contracts.stack import (
    STACK_CONTRACT,
    Mailbox,
    MailboxEndpoint,
    StackContract,
    connection_timeout,
    mailbox_endpoint,
    mailbox_env,
)
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError


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

    def submission(self, box: Mailbox, env: dict[str, str]) -> MailboxEndpoint:
        form = self.outbox.submission.form
        timeout = connection_timeout(self.stack, self.outbox.submission)
        return self._endpoint(box, env, [form], timeout, f"submission.form {form}")

    def imap(self, box: Mailbox, env: dict[str, str]) -> MailboxEndpoint:
        timeout = connection_timeout(self.stack)
        return self._endpoint(box, env, ["IMAPS", "IMAP"], timeout, "reading the sender's Sent folder")

    def _endpoint(self, box: Mailbox, env: dict[str, str], protocols: list[str], timeout: float, why: str):
        login = env.get(mailbox_env(box.id, "USER"))
        return mailbox_endpoint(self.stack, box, protocols, timeout=timeout, why=why, login=login)


def load_settings(ctx: RunContext) -> Settings:
    stack = ctx.contracts.load(STACK_CONTRACT, StackContract)
    found = ctx.contracts.exists(OUTBOX_CONTRACT)
    outbox = ctx.contracts.load(OUTBOX_CONTRACT, OutboxContract) if found else OutboxContract()
    from spine_comms.outbox.delivery_log import log_path

    rooms = ctx.mailroom
    return Settings(stack, outbox, found, rooms.state, log_path(rooms.outbox), rooms.inbox)
