"""A DavClient for a contract account: its password from the secret store (or the spine's
CALENDAR_HOME_PASSWORD), its CA file and timeout from the contracts."""

from __future__ import annotations

from pathlib import Path

from spine_comms.endpoints.stack import stack_ca_file, stack_contract
from spine_comms.protocols.dav.client import DavClient
from spine_comms.protocols.dav.model import DavError

# The spine's calendar scripts read this variable; it overrides the first account's password_ref.
PASSWORD_ENV = "CALENDAR_HOME_PASSWORD"


def connect(ctx, account, *, first: bool = False) -> DavClient:
    """Build the client for `account` (a contracts.dav.Account).

    `first`: this is the contract's first account, so CALENDAR_HOME_PASSWORD may override
    its password_ref, as the spine's calendar scripts expect. Raises UsageError (exit 2)
    for a CA file that does not exist or a malformed base_url.
    """
    from spine_comms.contracts.stack import connection_timeout
    from spine_comms.core.errors import UsageError

    password = None
    if account.login:  # a login without a password is a contract problem (exit 2), not a 401 later
        password = ctx.secrets.resolve(account.password_ref, override_env=PASSWORD_ENV if first else None,
                                       what=f"the password of DAV account {account.id}").value  # fmt: skip
    ca_file = account.ca_file or stack_ca_file(ctx)
    if ca_file and not Path(ca_file).is_absolute():
        ca_file = str(ctx.root.path / ca_file)
    if ca_file and not Path(ca_file).is_file():
        raise UsageError(f"account {account.id}: ca_file {ca_file} does not exist")
    try:
        return DavClient(account.base_url, username=account.login, password=password, ca_file=ca_file,
                         server_name=account.server_name, server_kind=account.server_kind,
                         timeout=connection_timeout(stack_contract(ctx), account))  # fmt: skip
    except DavError as exc:
        if exc.kind in ("unreachable", "timeout"):
            from spine_comms.core.outcomes import could_not_evaluate

            raise could_not_evaluate(exc, f"account {account.id}: {exc.message}") from None
        raise UsageError(f"account {account.id}: {exc.message}") from None
