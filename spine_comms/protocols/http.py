"""HTTP(S) to the servers we manage: one niquests session, TLS verified, a timeout on every request.

Shared by the DAV client and the Stalwart transport, which differ only in what they send and
how they name a failure. Three things are decided here once:

- the base URL: http(s) only, no credentials in it (it ends up in messages and receipts);
- where the socket goes: when the URL names an address and the certificate a host
  (`server_name`), requests go to https://<server_name>:<port>/ and niquests' in-memory
  resolver maps that name to the address, so SNI, the certificate check and the Host header
  use the name while the socket uses the address;
- failures: niquests' exceptions become one HttpFailure whose kind (timeout, tls,
  unreachable) callers map to their own error, with the innermost reason
  ('Connection refused', 'certificate verify failed: ...') instead of a pool dump.

niquests is imported only when a session is built, so `spine-comms --help` stays fast.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass

from spine_comms.core.outcomes import FailureKind, ProtocolFailure

_FAILURE_KINDS = {
    "timeout": FailureKind.TIMEOUT,
    "tls": FailureKind.TLS_UNTRUSTED,
    "unreachable": FailureKind.UNREACHABLE,
    "url": FailureKind.UNSUPPORTED,
}


class HttpFailure(ProtocolFailure):
    """No HTTP answer. kind: timeout | tls | unreachable | url (a base URL we refuse); failure_kind:
    the same in the outcome vocabulary, which DAV and Stalwart errors carry on."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.failure_kind = _FAILURE_KINDS[kind]


@dataclass(frozen=True)
class BaseUrl:
    scheme: str
    host: str  # lower case, no brackets
    port: int
    path: str

    @property
    def default_port(self) -> bool:
        return self.port == (443 if self.scheme == "https" else 80)


def split_base_url(url: str, *, secret_field: str) -> BaseUrl:
    """The parts of a server's base URL; HttpFailure('url') for one we refuse. `secret_field`
    names where the password belongs instead (password_ref, secret_ref)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise HttpFailure("url", f"not a valid port in {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailure("url", f"not an http(s) URL: {url!r}")
    if parts.username or parts.password:
        raise HttpFailure("url", f"the URL must not carry credentials; use {secret_field}")
    return BaseUrl(parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80), parts.path)


def bracketed(host: str) -> str:
    """A host as it stands in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def innermost_reason(exc: BaseException) -> str:
    """The root cause of a niquests error ('Connection refused'), not the pool's wrapper text."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    if getattr(seen, "verify_message", None):
        return f"certificate verify failed: {seen.verify_message}"
    text = str(getattr(seen, "strerror", None) or getattr(seen, "reason", None) or seen or type(seen).__name__)
    if text.startswith("[") and "] " in text:  # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed..."
        text = text.split("] ", 1)[1]
    return text.split(" (_ssl.c")[0][:300]


class HttpSession:
    """A niquests session for one server. `origin` is where requests go (scheme://name:port)."""

    def __init__(
        self, url: BaseUrl, *, ca_file: str | None = None, server_name: str | None = None, timeout: float = 10.0
    ):
        self.timeout = timeout
        self.verify: str | bool = ca_file or True
        resolver = None
        connect_host = url.host
        if server_name and server_name.lower() != url.host:
            address = url.host if is_address(url.host) else self._address_of(url.host, url.port)
            resolver = f"in-memory://default/?hosts={server_name.lower()}:{address}"
            connect_host = server_name.lower()
        self.origin = f"{url.scheme}://{bracketed(connect_host)}:{url.port}"
        import niquests

        self._exceptions = niquests.exceptions
        self._session = niquests.Session(resolver=resolver, retries=0)  # a retry is the caller's decision

    @staticmethod
    def _address_of(host: str, port: int) -> str:
        try:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as exc:
            raise HttpFailure("unreachable", f"cannot resolve {host}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def failures(self):
        """niquests errors inside the block (sending, or reading a streamed body) become HttpFailure."""
        try:
            yield
        except self._exceptions.Timeout:
            raise HttpFailure("timeout", f"no answer within {self.timeout:g} s") from None
        except self._exceptions.SSLError as exc:
            raise HttpFailure("tls", f"TLS failed: {innermost_reason(exc)}") from None
        except self._exceptions.RequestException as exc:
            raise HttpFailure("unreachable", innermost_reason(exc)) from None

    def request(self, method: str, path: str, **kwargs):
        """One request to `origin + path`, with the session's timeout and TLS verification."""
        with self.failures():
            return self._session.request(method, self.origin + path, timeout=self.timeout, verify=self.verify, **kwargs)

    def close(self) -> None:
        self._session.close()
