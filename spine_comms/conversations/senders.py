"""communications.inbox.senders: the inbox policy's sender lists, for agents. Read-only, no network.

Shows policy.senders.allow and .deny of the inbox contract and, for each --check address,
what the inbox does with mail from it, decided by the same rule the pipeline applies
(inbox/policy.py sender_rule): dropped (denied), parked (not on a non-empty allow list) or
admitted (then still subject to the DMARC and size rules, which need the message itself; an
allow-listed From must also be authenticated when the receiving server judged it).
An agent learns whom it may hear from; it cannot change the lists: they are the operator's.

Exit codes: 0; 2 for an invalid inbox contract or a --check that is not an address.
"""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status


@capability("communications.inbox.senders", safety="read-only", approval="auto")
def inbox_senders(
    ctx: RunContext,
    check: Annotated[
        list[str] | None,
        typer.Option(help="What the inbox does with mail from this address (repeatable)."),
    ] = None,
) -> Result:
    """The inbox policy's sender allow and deny lists, and what the inbox does with mail from given addresses."""
    from spine_comms.contracts.inbox import INBOX_CONTRACT
    from spine_comms.endpoints.mailbox import load_inbox_contract
    from spine_comms.inbox.policy import sender_rule

    contract = load_inbox_contract(ctx, required=False)
    senders = contract.policy.senders
    verdicts = []
    for address in check or []:
        shown = address.strip()
        local, at, domain = shown.rpartition("@")
        if not (local and at and domain) or any(c in shown for c in " \r\n\t<>,;"):
            raise UsageError(f"--check {address!r}: not an e-mail address (local@domain)")
        rule = sender_rule([shown], senders)
        if rule:
            lane, reason = rule
        elif senders.allow and not senders.allow_unauthenticated:
            lane = "admitted"
            reason = ("on policy.senders.allow, when the receiving server authenticates its From (dmarc=pass) "
                      "or did not judge the message; judged without dmarc=pass, it is parked")  # fmt: skip
        else:
            lane, reason = "admitted", "no sender rule applies (DMARC and size rules still do)"
        verdicts.append({"address": shown, "lane": lane, "reason": reason})
    source = INBOX_CONTRACT if ctx.contracts.exists(INBOX_CONTRACT) else None
    data = {
        "contract": source,
        "allow": list(senders.allow),
        "deny": list(senders.deny),
        "allow_unauthenticated": senders.allow_unauthenticated,
        "rule": "deny wins; a non-empty allow list admits only its senders (others are parked), and only with "
        "their From authenticated (dmarc=pass) when the receiving server judged it, unless allow_unauthenticated; "
        "entries are addresses or @domains",
        "checks": verdicts,
    }
    detail = (f"{len(senders.allow)} allowed, {len(senders.deny)} denied"
              + ("" if source else f" (no {INBOX_CONTRACT}: no sender rules)"))  # fmt: skip
    return Result(
        data=data,
        checks=[Check(id="inbox.senders", status=Status.OK, detail=detail, subject=source or "policy")],
        summary=[detail] + [f"{v['address']}: {v['lane']} ({v['reason']})" for v in verdicts],
    )
