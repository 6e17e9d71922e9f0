"""Every contract file the toolkit reads, with the model that validates it.

One list, read by the schema generator (scripts/contract_schemas.py) and by the
contracts gate of verify (verify/builtin.py), so a new contract added here is
both documented by a schema and checked by the gate.
"""

from __future__ import annotations

# The spine's own files keep the spine's schemas; spine-comms ships JSON Schemas only for the
# contracts it introduces.
SPINE_OWNED = ("communications.stack.contract.yaml", "calendar.global.yaml")


def contract_models() -> dict[str, type]:
    """Contract file name -> its pydantic model (imported here, not at module load: --help stays fast)."""
    from spine_comms.calendar.layers import CalendarSource
    from spine_comms.contracts.dav import DAV_CONTRACT, DavContract
    from spine_comms.contracts.inbox import INBOX_CONTRACT, InboxContract
    from spine_comms.contracts.loop_evidence import LOOP_EVIDENCE_CONTRACT, LoopEvidenceContract
    from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, MailAuthContract
    from spine_comms.contracts.mcp import MCP_CONTRACT, McpContract
    from spine_comms.contracts.outbox import OUTBOX_CONTRACT, OutboxContract
    from spine_comms.contracts.sieve import SIEVE_CONTRACT, SieveContract
    from spine_comms.contracts.stack import STACK_CONTRACT, StackContract
    from spine_comms.contracts.verify import VERIFY_CONTRACT, VerifyContract

    return {
        STACK_CONTRACT: StackContract,
        "calendar.global.yaml": CalendarSource,
        MAILAUTH_CONTRACT: MailAuthContract,
        DAV_CONTRACT: DavContract,
        INBOX_CONTRACT: InboxContract,
        SIEVE_CONTRACT: SieveContract,
        OUTBOX_CONTRACT: OutboxContract,
        MCP_CONTRACT: McpContract,
        VERIFY_CONTRACT: VerifyContract,
        LOOP_EVIDENCE_CONTRACT: LoopEvidenceContract,
    }


def introduced_models() -> dict[str, type]:
    """The contracts spine-comms introduces: each ships a generated JSON Schema."""
    return {name: model for name, model in contract_models().items() if name not in SPINE_OWNED}


# Which capabilities read each contract: what `contracts.check` and `cap show` tell an operator, so a
# problem in a file names the commands it stops. tests/unit/test_contract_readers.py holds it to the code.
READERS: dict[str, tuple[str, ...]] = {
    "communications.stack.contract.yaml": (
        "communications.stack.status", "dns.mail.status", "dkim.check", "dmarc.check", "mail.auth.probe",
        "communications.inbox.poll", "communications.inbox.watch", "communications.inbox.health",
        "communications.mail.send", "communications.outbox.flush", "sieve.status", "sieve.apply",
        "contract.endpoints.sync", "stalwart.status", "calendar.caldav.status", "contacts.carddav.status",
        "communications.mail.search", "communications.thread.show", "communications.doctor",
        "communications.mail.draft", "communications.draft.send",
    ),
    "communications.mailauth.contract.yaml": (
        "dns.mail.status", "dkim.check", "dmarc.check", "dkim.keygen", "mail.auth.probe", "stalwart.status",
        "stalwart.dkim.status", "stalwart.dkim.ensure", "stalwart.dns.expected",
    ),
    "communications.dav.contract.yaml": (
        "calendar.caldav.status", "calendar.caldav.ensure", "contacts.carddav.status", "contacts.carddav.ensure",
        "calendar.event.create", "calendar.event.list", "calendar.event.get", "calendar.event.update",
        "calendar.event.delete", "contacts.card.create", "contacts.card.list", "contacts.card.get",
        "contacts.card.update", "contacts.card.delete", "calendar.sync.plan", "calendar.sync.execute",
    ),
    "calendar.global.yaml": ("calendar.sync.plan", "calendar.sync.execute"),
    "communications.inbox.contract.yaml": (
        "communications.inbox.poll", "communications.inbox.watch", "communications.inbox.health",
        "mailroom.enqueue", "mailroom.status", "communications.mail.search", "communications.thread.show",
        "communications.inbox.senders", "communications.doctor", "communications.mail.draft",
    ),
    "mailroom.runtime.contract.yaml": (
        "communications.inbox.poll", "communications.inbox.watch", "communications.inbox.health",
        "mailroom.enqueue", "mailroom.status", "communications.mail.send", "communications.outbox.flush",
        "communications.outbox.status", "calendar.sync.execute", "communications.mail.draft",
        "communications.draft.send",
    ),
    "communications.sieve.contract.yaml": ("sieve.status", "sieve.apply"),
    "communications.outbox.contract.yaml": (
        "communications.mail.send", "communications.outbox.flush", "communications.outbox.status",
        "communications.mail.draft", "communications.draft.send",
    ),
    "verify.gates.yaml": ("verify.core.run", "verify.pack.run"),
    "loop.evidence.contract.yaml": ("loop.evidence",),
}  # fmt: skip


# Contracts whose absence is not a gap: the capabilities that read them fall back to a shipped default.
DEFAULTED: dict[str, str] = {
    "verify.gates.yaml": "the gates spine-comms ships (verify/default_gates.yaml)",
    "loop.evidence.contract.yaml": "the loop mapping spine-comms ships (governance/loops/)",
    "communications.outbox.contract.yaml": "the outbox defaults (SMTPS, 8 attempts over 48 h)",
}


def contracts_read_by(capability: str) -> list[str]:
    """The contract files a capability reads (for `cap show`)."""
    return [name for name, readers in READERS.items() if capability in readers]
