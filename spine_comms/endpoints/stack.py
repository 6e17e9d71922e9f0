"""The stack contract, when the root has one: the defaults every endpoint builder falls back to."""

from __future__ import annotations

from spine_comms.contracts.stack import STACK_CONTRACT, StackContract
from spine_comms.core.context import RunContext


def stack_contract(ctx: RunContext) -> StackContract | None:
    return ctx.contracts.load(STACK_CONTRACT, StackContract) if ctx.contracts.exists(STACK_CONTRACT) else None


def stack_ca_file(ctx: RunContext) -> str | None:
    """The stack contract's CA file, which the other contracts defer to when they name none."""
    stack = stack_contract(ctx)
    return stack.endpoints.ca_file if stack is not None and stack.endpoints else None
