"""Stalwart's management API: the mail-auth contract's `stalwart` section, the options that override it,
$STALWART_ADMIN_SECRET and the stack contract's CA file, turned into one ready target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, MailAuthContract
from spine_comms.contracts.stack import connection_timeout
from spine_comms.core.errors import UsageError
from spine_comms.endpoints.stack import stack_ca_file, stack_contract

SECRET_ENV = "STALWART_ADMIN_SECRET"


@dataclass
class StalwartTarget:
    """Where Stalwart's management API is and how to log in: ready for protocols.stalwart.connect()."""

    url: str
    username: str | None
    secret: str
    ca_file: str | None
    server_name: str | None
    timeout: float

    @property
    def account(self) -> str:
        return f"account {self.username}" if self.username else "an API key (Bearer)"


def stalwart_contract_target(
    ctx, url, username, timeout, *, need_contract=False
) -> tuple[MailAuthContract | None, StalwartTarget]:
    """The mail-auth contract (when there is one, or it is needed) and the target built from it."""
    contract = None
    if need_contract or not url or ctx.contracts.exists(MAILAUTH_CONTRACT):
        contract = ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract)
    return contract, stalwart_target(ctx, contract, url, username, timeout)


def stalwart_target(ctx, contract, url, username, timeout) -> StalwartTarget:
    """Options, then the contract's `stalwart` section, then the stack contract; the secret resolved and
    registered for redaction ($STALWART_ADMIN_SECRET wins)."""
    section = contract.stalwart if contract else None
    if section is None and not url:
        raise UsageError(
            f"{MAILAUTH_CONTRACT} has no `stalwart` section",
            hint="add stalwart.url (and username, secret_ref) to the contract, or pass --url",
        )
    if url and not url.startswith(("http://", "https://")):
        raise UsageError(f"--url {url!r} is not an http(s) URL")
    secret = ctx.secrets.resolve(section.secret_ref if section else None, override_env=SECRET_ENV,
                                 what="Stalwart admin secret")  # fmt: skip
    ca_file = (section.ca_file if section else None) or stack_ca_file(ctx)
    if ca_file and not Path(ca_file).is_absolute():
        ca_file = str(ctx.root.path / ca_file)
    if ca_file and not Path(ca_file).is_file():
        raise UsageError(f"stalwart.ca_file {ca_file} does not exist")
    return StalwartTarget(
        url=(url or section.url).rstrip("/"),
        username=username or (section.username if section else None),
        secret=secret.value,
        ca_file=ca_file,
        server_name=section.server_name if section else None,
        timeout=timeout or connection_timeout(stack_contract(ctx), section),
    )
