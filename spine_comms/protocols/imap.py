"""IMAP, read side: connect over verified TLS, log in, look at a folder without changing it.

Implicit TLS (IMAPS, 993) or STARTTLS (143); STARTTLS that the server does not
offer is an error, never plain text. Certificates are verified against a CA file
(or the system store) and a `server_name` that may differ from the host dialled.
Folders are opened read-only (EXAMINE) unless the caller means to change them,
and bodies are always fetched with BODY.PEEK, so reading never sets \\Seen:
the inbox pipeline flags or moves a message only after its item is durably
written (DESIGN.md §7), through the explicit write calls at the end of ImapSession.

Protocol only: what to look for and what a missing message means is the caller's.
Every failure is an ImapError naming its stage; no message ever holds the password.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from spine_comms.core.outcomes import FailureKind, ProtocolFailure
from spine_comms.protocols.tls import verified_context

Security = Literal["tls", "starttls"]


# What a failure at each stage means when no socket error says otherwise.
_STAGE_KINDS = {
    "connect": FailureKind.UNREACHABLE,
    "tls": FailureKind.TLS_UNTRUSTED,
    "starttls": FailureKind.TLS_UNTRUSTED,
    "auth": FailureKind.CREDENTIALS_REFUSED,
}


class ImapError(ProtocolFailure):
    """IMAP failed at `stage`: connect, tls, starttls, auth, select, search, fetch or store.

    `failure_kind` says what happened: a timeout or a lost connection (from `cause`, the socket
    error behind it) at any stage, else what a failure at that stage means (a refused login:
    credentials_refused; a NO to SELECT: protocol_error).
    """

    UNUSABLE = ("connect", "tls", "starttls", "auth")

    def __init__(self, stage: str, message: str, *, cause: BaseException | None = None,
                 kind: FailureKind | None = None):  # fmt: skip
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message
        self.failure_kind = kind or _kind_of(cause) or _STAGE_KINDS.get(stage, FailureKind.PROTOCOL_ERROR)


def _kind_of(cause: BaseException | None) -> FailureKind | None:
    if isinstance(cause, TimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(cause, ssl.SSLError):
        return FailureKind.TLS_UNTRUSTED
    if isinstance(cause, OSError):  # reset, broken pipe, no route: the server went away
        return FailureKind.UNREACHABLE
    return None


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


@dataclass(frozen=True)
class FolderState:
    """What SELECT/EXAMINE (or STATUS) says about a folder: the checkpoint's counterpart."""

    folder: str
    uidvalidity: int
    uidnext: int | None
    exists: int
    highestmodseq: int | None = None
    writable: bool = False


@dataclass(frozen=True)
class MessageMeta:
    """RFC822.SIZE and INTERNALDATE of one UID: fetched before any body, so size caps hold before buffering."""

    uid: int
    size: int
    internaldate: datetime | None


FETCH_BATCH = 500  # UIDs per FETCH/STORE command: keeps command lines short on any server


class ImapSession:
    """A logged-in IMAP connection; use through `session()`."""

    def __init__(self, client) -> None:
        self.client = client
        self.folder: str | None = None
        self.state: FolderState | None = None

    def select(self, folder: str = "INBOX") -> int:
        """Open `folder` read-only (EXAMINE); returns its message count."""
        try:
            info = self.client.select_folder(folder, readonly=True)
        except self._errors() as exc:
            raise ImapError("select", f"cannot open {folder}: {_text(exc)}", cause=exc) from None
        self.folder = folder
        return int(info.get(b"EXISTS", 0))

    def refresh(self) -> None:
        """NOOP: lets the server report messages that arrived since the last command."""
        try:
            self.client.noop()
        except self._errors() as exc:
            raise ImapError("search", f"NOOP failed: {_text(exc)}", cause=exc) from None

    def search_header(self, header: str, value: str) -> list[int]:
        """UIDs of messages whose `header` contains `value` (SEARCH HEADER, substring match)."""
        try:
            return sorted(int(uid) for uid in self.client.search(["HEADER", header, value]))
        except self._errors() as exc:
            raise ImapError("search", f"SEARCH HEADER {header} failed: {_text(exc)}", cause=exc) from None

    def fetch_raw(self, uids: list[int], max_bytes: int | None = None) -> dict[int, bytes]:
        """The raw RFC 822 bytes of each UID, with BODY.PEEK (no \\Seen); at most max_bytes each."""
        if not uids:
            return {}
        item = f"BODY.PEEK[]<0.{max_bytes}>" if max_bytes else "BODY.PEEK[]"
        try:
            fetched = self.client.fetch(uids, [item])
        except self._errors() as exc:
            raise ImapError("fetch", f"FETCH failed: {_text(exc)}", cause=exc) from None
        out = {}
        for uid, parts in fetched.items():
            body = next((v for k, v in parts.items() if k.startswith(b"BODY[")), None)
            if isinstance(body, bytes):
                out[int(uid)] = body
        return out

    # The inbox pipeline's read side ------------------------------------------------------------

    def has(self, capability: str) -> bool:
        try:
            return bool(self.client.has_capability(capability))
        except self._errors():
            return False

    def open(self, folder: str = "INBOX", *, writable: bool = False) -> FolderState:
        """SELECT (writable) or EXAMINE `folder`, with CONDSTORE enabled where offered (HIGHESTMODSEQ)."""
        if self.has("CONDSTORE") and not getattr(self, "_condstore", False):
            with suppress(*self._errors()):  # an ENABLE refused only costs us HIGHESTMODSEQ
                self.client.enable("CONDSTORE")
                self._condstore = True
        try:
            info = self.client.select_folder(folder, readonly=not writable)
        except self._errors() as exc:
            raise ImapError("select", f"cannot open {folder}: {_text(exc)}", cause=exc) from None
        self.folder = folder
        self.state = FolderState(
            folder,
            int(info.get(b"UIDVALIDITY", 0) or 0),
            _int_or_none(info.get(b"UIDNEXT")),
            int(info.get(b"EXISTS", 0) or 0),
            _int_or_none(info.get(b"HIGHESTMODSEQ")),
            writable and b"READ-WRITE" in info,
        )
        return self.state

    def status(self, folder: str = "INBOX") -> FolderState:
        """STATUS without selecting: UIDVALIDITY, UIDNEXT, MESSAGES (health reads this)."""
        try:
            info = self.client.folder_status(folder, [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"])
        except self._errors() as exc:
            raise ImapError("select", f"STATUS {folder} failed: {_text(exc)}", cause=exc) from None
        return FolderState(
            folder, int(info.get(b"UIDVALIDITY", 0) or 0), _int_or_none(info.get(b"UIDNEXT")),
            int(info.get(b"MESSAGES", 0) or 0),
        )  # fmt: skip

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid`, ascending. `n:*` always matches the highest message, so filter."""
        try:
            found = self.client.search(["UID", f"{last_uid + 1}:*"])
        except self._errors() as exc:
            raise ImapError("search", f"UID SEARCH {last_uid + 1}:* failed: {_text(exc)}", cause=exc) from None
        return sorted(int(u) for u in found if int(u) > last_uid)

    def search_unseen(self) -> list[int]:
        try:
            return sorted(int(u) for u in self.client.search(["UNSEEN"]))
        except self._errors() as exc:
            raise ImapError("search", f"SEARCH UNSEEN failed: {_text(exc)}", cause=exc) from None

    def fetch_meta(self, uids: list[int]) -> dict[int, MessageMeta]:
        """RFC822.SIZE and INTERNALDATE, in batches: cheap, and no body is buffered."""
        out: dict[int, MessageMeta] = {}
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start : start + FETCH_BATCH]
            try:
                fetched = self.client.fetch(chunk, ["RFC822.SIZE", "INTERNALDATE"])
            except self._errors() as exc:
                raise ImapError("fetch", f"FETCH RFC822.SIZE failed: {_text(exc)}", cause=exc) from None
            for uid, parts in fetched.items():
                size = parts.get(b"RFC822.SIZE")
                if size is not None:
                    out[int(uid)] = MessageMeta(int(uid), int(size), _utc(parts.get(b"INTERNALDATE")))
        return out

    def fetch_headers(self, uids: list[int], max_bytes: int = 65536) -> dict[int, bytes]:
        """At most `max_bytes` of each header (BODY.PEEK[HEADER]): enough to name an oversized message."""
        if not uids:
            return {}
        try:
            fetched = self.client.fetch(uids, [f"BODY.PEEK[HEADER]<0.{max_bytes}>"])
        except self._errors() as exc:
            raise ImapError("fetch", f"FETCH HEADER failed: {_text(exc)}", cause=exc) from None
        out = {}
        for uid, parts in fetched.items():
            body = next((v for k, v in parts.items() if k.startswith(b"BODY[")), None)
            if isinstance(body, bytes):
                out[int(uid)] = body
        return out

    # The post-commit write side: called only after the items are durably written ------------------

    def add_seen(self, uids: list[int]) -> None:
        """UID STORE +FLAGS.SILENT (\\Seen), in batches."""
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start : start + FETCH_BATCH]
            try:
                self.client.add_flags(chunk, [b"\\Seen"], silent=True)
            except self._errors() as exc:
                raise ImapError("store", f"STORE +FLAGS \\Seen failed: {_text(exc)}", cause=exc) from None

    def move(self, uids: list[int], folder: str) -> str:
        """MOVE where offered; else COPY + \\Deleted + UID EXPUNGE (UIDPLUS), which expunges only these
        UIDs. Without UIDPLUS the copies are flagged \\Deleted and left for the owner's next expunge:
        a plain EXPUNGE would also remove what someone else marked. Returns the method used."""
        method = "move" if self.has("MOVE") else ("copy+uid-expunge" if self.has("UIDPLUS") else "copy+deleted")
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start : start + FETCH_BATCH]
            try:
                if method == "move":
                    self.client.move(chunk, folder)
                    continue
                self.client.copy(chunk, folder)
                self.client.add_flags(chunk, [b"\\Deleted"], silent=True)
                if method == "copy+uid-expunge":
                    self.client.uid_expunge(chunk)
            except self._errors() as exc:
                raise ImapError("store", f"moving to {folder} failed: {_text(exc)}", cause=exc) from None
        return method

    @staticmethod
    def _errors():
        from imapclient.exceptions import IMAPClientError

        return (IMAPClientError, OSError, ssl.SSLError)


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _utc(value) -> datetime | None:
    """INTERNALDATE in UTC; imapclient hands naive local times when normalise_times is on."""
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC)


def _text(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    return " ".join(text.split())[:300]


def quiet_protocol_log(client) -> None:
    """imapclient turns imaplib's protocol log fully on (debug level 5) and hands it to the logger
    "imapclient.imaplib". imaplib then formats every response with %r, message bodies included,
    before that logger drops the text: about a tenth of a bulk fetch's CPU, measured with perf.
    Left on only when the logger would print it (someone debugging the protocol)."""
    imaplib_client = getattr(client, "_imap", None)
    if imaplib_client is not None and not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        imaplib_client.debug = 0


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
        quiet_protocol_log(client)
    except ssl.SSLCertVerificationError as exc:
        raise ImapError("tls", f"{where} certificate not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise ImapError("tls", f"{where} TLS handshake failed: {exc.reason or exc}") from None
    except ConnectionRefusedError:
        raise ImapError("connect", f"{where} connection refused") from None
    except TimeoutError:
        raise ImapError("connect", f"{where} timed out after {target.timeout:g} s",
                        kind=FailureKind.TIMEOUT) from None  # fmt: skip
    except (OSError, IMAPClientError) as exc:
        raise ImapError("connect", f"{where} {_text(exc)}", cause=exc) from None
    try:
        if target.security == "starttls":
            try:
                offered = client.has_capability("STARTTLS")
            except (IMAPClientError, OSError) as exc:
                raise ImapError("starttls", f"CAPABILITY failed: {_text(exc)}", cause=exc) from None
            if not offered:
                raise ImapError("starttls", "STARTTLS not offered (refusing to log in in plain text)")
            try:
                client.starttls(context)
            except ssl.SSLCertVerificationError as exc:
                raise ImapError("tls", f"{where} certificate not trusted: {exc.verify_message}") from None
            except (ssl.SSLError, IMAPClientError, OSError) as exc:
                raise ImapError("starttls", f"STARTTLS failed: {_text(exc)}", cause=exc) from None
        try:
            client.login(target.login, target.password)
        except LoginError as exc:
            raise ImapError("auth", f"login refused for {target.login}: {_text(exc)}") from None
        except (IMAPClientError, OSError) as exc:
            raise ImapError("auth", f"login failed for {target.login}: {_text(exc)}",
                            kind=_kind_of(exc) or FailureKind.PROTOCOL_ERROR) from None  # fmt: skip
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
