"""ManageSieve for a routing-contract mailbox: host, port, login, CA and timeout from the routing contract,
each defaulting to the stack contract; the password from the secret store or $STALWART_<ID>_PASSWORD."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spine_comms.contracts.sieve import SieveMailbox
from spine_comms.contracts.stack import connection_timeout, mailbox_env
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError
from spine_comms.core.outcomes import FailureKind, could_not_evaluate
from spine_comms.endpoints.stack import stack_contract

if TYPE_CHECKING:
    from spine_comms.protocols.managesieve import ManageSieve


@dataclass
class SieveTarget:
    """Where a mailbox's scripts live; the password is resolved separately and registered for redaction."""

    host: str
    port: int
    server_name: str | None
    ca_file: str | None
    timeout: float
    login: str
    password_ref: str | None
    override_env: str

    def where(self) -> str:
        return f"{self.host}:{self.port}"


def target(ctx: RunContext, box: SieveMailbox, timeout: float | None) -> SieveTarget:
    """The mailbox's ManageSieve endpoint and login, each defaulting to the stack contract."""
    stack = stack_contract(ctx)
    stack_box = stack.mailbox(box.id) if stack else None
    end = box.managesieve
    port = end.port
    if port is None and stack:
        port = next((p.host for p in stack.pilot.ports if p.protocol.value == "ManageSieve"), None)
    host = end.host or (stack.connect_host() if stack else None)
    if not host or not port:
        raise ContractError(
            f"mailbox {box.id}: no ManageSieve host and port",
            hint="give managesieve.host/port in the routing contract, or a ManageSieve port in the stack contract",
        )
    login = box.login or (stack_box.login or stack_box.address if stack_box else None)
    if not login:
        raise ContractError(f"mailbox {box.id} is not a stack mailbox and names no login")
    ca_file = end.ca_file or (stack.endpoints.ca_file if stack and stack.endpoints else None)
    if ca_file and not Path(ca_file).is_absolute():
        ca_file = str(ctx.root.path / ca_file)
    return SieveTarget(
        host=host, port=port, server_name=end.server_name or (stack.server_name() if stack else None),
        ca_file=ca_file, timeout=timeout or connection_timeout(stack, end), login=login,
        password_ref=box.password_ref or (stack_box.password_ref if stack_box else None),
        override_env=mailbox_env(box.id),
    )  # fmt: skip


@contextmanager
def session(ctx: RunContext, box: SieveMailbox, where: SieveTarget) -> Iterator[ManageSieve]:
    """A logged-in session; refusals and network trouble become CouldNotEvaluate (exit 3)."""
    from spine_comms.protocols.managesieve import SieveError, connect

    password = ctx.secrets.resolve(where.password_ref, override_env=where.override_env,
                                   what=f"password of mailbox {box.id}")  # fmt: skip
    ctx.log(f"{box.id}: ManageSieve {where.where()} as {where.login}")
    debug = (lambda line: ctx.log(line, level="debug")) if ctx.options.debug else None
    try:
        client = connect(where.host, where.port, login=where.login, password=password.value,
                         server_name=where.server_name, ca_file=where.ca_file, timeout=where.timeout,
                         transcript=debug)  # fmt: skip
    except SieveError as exc:
        hint = f"check the password ({where.password_ref or 'no password_ref'} or ${where.override_env})"
        refused = exc.failure_kind is FailureKind.CREDENTIALS_REFUSED
        raise could_not_evaluate(exc, f"{box.id}: ManageSieve {where.where()}: {exc.message}",
                                 hint=hint if refused else None) from None  # fmt: skip
    try:
        yield client
    except SieveError as exc:
        raise could_not_evaluate(exc, f"{box.id}: ManageSieve {where.where()}: {exc.message}") from None
    finally:
        client.close()
