"""Where a lab lives: its directory, its ports, its users and the env knobs.

Every other module takes a `Lab` and reads names, ports and paths from here,
so two labs differ only by their directory and port base.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DOMAIN = "spine.test"
MAIL_HOST = f"mail.{DOMAIN}"  # myhostname of submission, authserv-id, certificate name
MX_HOST = f"mx.{DOMAIN}"  # the inbound service must have another name (Postfix loop detection)
AUTHSERV_ID = MAIL_HOST
DKIM_SELECTOR = "lab"
DEFAULT_PORT_BASE = 10000

# Mailboxes with a login; `sink` receives every foreign recipient.
USERS = ("ops", "alerts", "noreply", "sink")
DAV_USERS = ("ops", "alerts", "noreply")
ALIASES = {"postmaster": "ops", "abuse": "ops", "dmarc": "ops", "tlsrpt": "ops"}

# Mail (Dovecot deliveries) and Xandikos run as this uid: no passwd entry is added.
VMAIL_UID = 5000

# Port = base + offset. Chosen so that bases 100 apart never collide (n < 53).
PORT_OFFSETS = {
    "lmtp": 24,
    "smtp": 25,
    "dns": 53,
    "imap": 143,
    "submissions": 465,
    "submission": 587,
    "imaps": 993,
    "sieve": 4190,
    "radicale": 5232,
    "xandikos": 5233,
    "radicale_tls": 5443,
    "opendkim": 8891,
    "opendmarc": 8893,
    "mta_sts": 4443,  # the MTA-STS policy host (HTTPS), lab/mta_sts.py
    # NATS JetStream, three nodes (lab/nats.py): client and route ports, each free modulo 100.
    "nats-1": 522,
    "nats-2": 527,
    "nats-3": 528,
    "nats-1-route": 529,
    "nats-2-route": 531,
    "nats-3-route": 534,
}

# Mail-out tests: flaky@ has its RCPT checked by a policy service on base + this offset, which
# only a test runs (nothing listens otherwise, so Postfix answers 451 4.3.5: a transient failure
# made at will). Kept out of PORT_OFFSETS: the lab waits for those to accept, and nothing
# listens here. 26 is free modulo 100 (see above). gone@ is accepted at RCPT but has no Dovecot
# user: LMTP refuses it after the fact, so Postfix returns a real DSN to the sender.
POLICY_PORT_OFFSET = 6026
FLAKY_USER = "flaky"  # an alias of sink, guarded by the policy service
GONE_USER = "gone"  # accepted by Postfix, unknown to Dovecot: a bounce

# unix socket paths are limited to 108 bytes; the deepest lab socket adds ~45.
MAX_DIR_LEN = 60


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "no", "false", "off")


@dataclass(frozen=True)
class Knobs:
    """Behaviour switches, read from the environment (see docs/lab.md)."""

    password: str | None = None  # LAB_PASSWORD: one password for every user
    sender_check: bool = True  # LAB_SENDER_CHECK=0: allow From/login mismatch
    dmarc_reject: bool = False  # LAB_DMARC_REJECT=1: OpenDMARC rejects failures
    strict_tls: bool = False  # LAB_STRICT_TLS=1: Dovecot refuses auth before TLS
    auth_penalty: bool = False  # LAB_AUTH_PENALTY=1: real Dovecot/Radicale failure delays

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Knobs:
        env = dict(os.environ) if env is None else env
        return cls(
            password=env.get("LAB_PASSWORD") or None,
            sender_check=_flag(env, "LAB_SENDER_CHECK", True),
            dmarc_reject=_flag(env, "LAB_DMARC_REJECT", False),
            strict_tls=_flag(env, "LAB_STRICT_TLS", False),
            auth_penalty=_flag(env, "LAB_AUTH_PENALTY", False),
        )


@dataclass(frozen=True)
class Lab:
    dir: Path
    base: int = DEFAULT_PORT_BASE
    knobs: Knobs = field(default_factory=Knobs)

    def port(self, name: str) -> int:
        return self.base + PORT_OFFSETS[name]

    @property
    def policy_port(self) -> int:
        return self.base + POLICY_PORT_OFFSET

    @property
    def ports(self) -> dict[str, int]:
        return {name: self.port(name) for name in PORT_OFFSETS}

    @property
    def resolver_ip(self) -> str:
        """Knot also answers on <this>:53 for the daemons' glibc resolver (port 53 only).

        Derived from the base so that parallel labs get distinct addresses.
        """
        return f"127.53.{(self.base >> 8) & 255}.{self.base & 255}"

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @property
    def etc(self) -> Path:
        return self.path("etc")

    @property
    def run(self) -> Path:
        return self.path("run")

    @property
    def log(self) -> Path:
        return self.path("log")

    @property
    def tls(self) -> Path:
        return self.path("tls")

    @property
    def dkim(self) -> Path:
        """Bind-mounted over /etc/dkimkeys in the daemons' namespace (OpenDKIM path checks)."""
        return self.path("dkim")

    @property
    def secrets(self) -> Path:
        return self.path("secrets")

    @property
    def root(self) -> Path:
        return self.path("root")

    @property
    def ca_file(self) -> Path:
        return self.tls / "ca.pem"

    def address(self, user: str) -> str:
        return f"{user}@{DOMAIN}"


class LabError(RuntimeError):
    """A lab that cannot start or stop as asked, with the reason and what to do."""


def check_dir(path: Path) -> None:
    """Refuse a lab dir the daemons could not use, with the reason."""
    path = path.absolute()
    if len(str(path)) > MAX_DIR_LEN:
        raise LabError(
            f"lab: {path} is longer than {MAX_DIR_LEN} characters "
            "(unix socket paths are limited to 108 bytes); use a shorter --dir"
        )
    # Daemons drop to their own users, so every parent must be searchable by others.
    for parent in path.parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise LabError(
                f"lab: {parent} is not o+x, so the lab daemons (which drop root) "
                "could not reach the lab dir; use the default /tmp/spine-lab.*"
            )


def new_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="spine-lab.", dir="/tmp"))


def passwords(knobs: Knobs) -> dict[str, str]:
    """One random password per user, or LAB_PASSWORD for all."""
    return {user: knobs.password or secrets.token_urlsafe(18) for user in USERS}
