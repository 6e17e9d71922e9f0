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
        VERIFY_CONTRACT: VerifyContract,
        LOOP_EVIDENCE_CONTRACT: LoopEvidenceContract,
    }


def introduced_models() -> dict[str, type]:
    """The contracts spine-comms introduces: each ships a generated JSON Schema."""
    return {name: model for name, model in contract_models().items() if name not in SPINE_OWNED}
