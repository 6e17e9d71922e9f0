"""IMAP, read side: connect over verified TLS, log in, look at a folder without changing it.

Implicit TLS (IMAPS, 993) or STARTTLS (143); STARTTLS that the server does not
offer is an error, never plain text. Certificates are verified against a CA file
(or the system store) and a `server_name` that may differ from the host dialled.
Folders are opened read-only (EXAMINE) and bodies fetched with BODY.PEEK, so
reading never sets \\Seen or changes anything else.

Protocol only: what to look for and what a missing message means is the caller's.
Every failure is an ImapError naming its stage; no message ever holds the password.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal

from spine_comms.protocols.tls import verified_context

Security = Literal["tls", "starttls"]


class ImapError(Exception):
    """IMAP failed at `stage`: connect, tls, starttls, auth, select, search or fetch."""

    UNUSABLE = ("connect", "tls", "starttls", "auth")

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


@dataclass(frozen=True)
class ImapTarget:
    """Where a mailbox lives and how to log in to it."""

    host: str
    port: int
    security: Security
    server_name: str | None
    ca_file: str | None
    login: str
    password: str
    timeout: float = 10.0

    def __repr__(self) -> str:  # the password stays out of reprs, logs and tracebacks
        return f"ImapTarget({self.login}@{self.host}:{self.port} {self.security})"


@dataclass(frozen=True)
class FoundMessage:
    uid: int
    raw: bytes
    folder: str
    polls: int
    waited_ms: int


class ImapSession:
    """A logged-in IMAP connection; use through `session()`."""

    def __init__(self, client) -> None:
        self.client = client
        self.folder: str | None = None

    def select(self, folder: str = "INBOX") -> int:
        """Open `folder` read-only (EXAMINE); returns its message count."""
        try:
            info = self.client.select_folder(folder, readonly=True)
        except self._errors() as exc:
            raise ImapError("select", f"cannot open {folder}: {_text(exc)}") from None
        self.folder = folder
        return int(info.get(b"EXISTS", 0))

    def refresh(self) -> None:
        """NOOP: lets the server report messages that arrived since the last command."""
        try:
            self.client.noop()
        except self._errors() as exc:
            raise ImapError("search", f"NOOP failed: {_text(exc)}") from None

    def search_header(self, header: str, value: str) -> list[int]:
        """UIDs of messages whose `header` contains `value` (SEARCH HEADER, substring match)."""
        try:
            return sorted(int(uid) for uid in self.client.search(["HEADER", header, value]))
        except self._errors() as exc:
            raise ImapError("search", f"SEARCH HEADER {header} failed: {_text(exc)}") from None

    def fetch_raw(self, uids: list[int], max_bytes: int | None = None) -> dict[int, bytes]:
        """The raw RFC 822 bytes of each UID, with BODY.PEEK (no \\Seen); at most max_bytes each."""
        if not uids:
            return {}
        item = f"BODY.PEEK[]<0.{max_bytes}>" if max_bytes else "BODY.PEEK[]"
        try:
            fetched = self.client.fetch(uids, [item])
        except self._errors() as exc:
            raise ImapError("fetch", f"FETCH failed: {_text(exc)}") from None
        out = {}
        for uid, parts in fetched.items():
            body = next((v for k, v in parts.items() if k.startswith(b"BODY[")), None)
            if isinstance(body, bytes):
                out[int(uid)] = body
        return out

    @staticmethod
    def _errors():
        from imapclient.exceptions import IMAPClientError

        return (IMAPClientError, OSError, ssl.SSLError)


def _text(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    return " ".join(text.split())[:300]


@contextmanager
def session(target: ImapTarget) -> Iterator[ImapSession]:
    """Connect, secure, log in; logs out (or just closes) on the way out."""
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError, LoginError

    context = verified_context(target.server_name, target.ca_file)
    where = f"{target.host}:{target.port}"
    try:
        client = IMAPClient(
            target.host, port=target.port, ssl=target.security == "tls", ssl_context=context, timeout=target.timeout
        )
    except ssl.SSLCertVerificationError as exc:
        raise ImapError("tls", f"{where} certificate not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise ImapError("tls", f"{where} TLS handshake failed: {exc.reason or exc}") from None
    except ConnectionRefusedError:
        raise ImapError("connect", f"{where} connection refused") from None
    except TimeoutError:
        raise ImapError("connect", f"{where} timed out after {target.timeout:g} s") from None
    except (OSError, IMAPClientError) as exc:
        raise ImapError("connect", f"{where} {_text(exc)}") from None
    try:
        if target.security == "starttls":
            try:
                offered = client.has_capability("STARTTLS")
            except (IMAPClientError, OSError) as exc:
                raise ImapError("starttls", f"CAPABILITY failed: {_text(exc)}") from None
            if not offered:
                raise ImapError("starttls", "STARTTLS not offered (refusing to log in in plain text)")
            try:
                client.starttls(context)
            except ssl.SSLCertVerificationError as exc:
                raise ImapError("tls", f"{where} certificate not trusted: {exc.verify_message}") from None
            except (ssl.SSLError, IMAPClientError, OSError) as exc:
                raise ImapError("starttls", f"STARTTLS failed: {_text(exc)}") from None
        try:
            client.login(target.login, target.password)
        except LoginError as exc:
            raise ImapError("auth", f"login refused for {target.login}: {_text(exc)}") from None
        except (IMAPClientError, OSError) as exc:
            raise ImapError("auth", f"login failed for {target.login}: {_text(exc)}") from None
        yield ImapSession(client)
    finally:
        try:
            client.logout()
        except Exception:  # best effort: the server may already have closed the connection
            with suppress(Exception):
                client.shutdown()


def wait_for_header(
    target: ImapTarget,
    *,
    folder: str,
    header: str,
    value: str,
    deadline: float,
    poll_interval: float = 1.0,
    max_bytes: int | None = None,
    on_poll: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FoundMessage | None:
    """Poll `folder` until a message whose `header` contains `value` arrives, or `deadline` (a clock() value).

    One connection for the whole wait; the first match (lowest UID) is fetched
    and returned. None when the deadline passes first.
    """
    started = clock()
    polls = 0
    with session(target) as imap:
        imap.select(folder)
        while True:
            polls += 1
            uids = imap.search_header(header, value)
            if on_poll:
                on_poll(polls)
            if uids:
                raw = imap.fetch_raw(uids[:1], max_bytes).get(uids[0])
                if raw is not None:
                    waited = int((clock() - started) * 1000)
                    return FoundMessage(uids[0], raw, folder, polls, waited)
            remaining = deadline - clock()
            if remaining <= 0:
                return None
            # Quick first polls (local delivery takes well under a second), then every poll_interval;
            # the last poll lands on the deadline, not after it.
            sleep(min(poll_interval, 0.2 * 1.5 ** (polls - 1), remaining))
            imap.refresh()
