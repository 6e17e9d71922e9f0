"""HTTP to Stalwart: one niquests session with TLS verified, a timeout on every request, auth kept.

When the URL names an address and the certificate names a host (`server_name`), the
request goes to https://<server_name>/ and an in-memory resolver maps that name to the
address: SNI, certificate check and Host header all use the name, the socket the address.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import urllib.parse

from spine_comms.protocols.stalwart.model import StalwartError


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    """The innermost cause of a niquests/urllib3 error: 'certificate verify failed: ...', not a pool dump."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    if getattr(seen, "verify_message", None):
        return f"certificate verify failed: {seen.verify_message}"
    text = getattr(seen, "reason", None) or getattr(seen, "strerror", None) or str(seen) or seen.__class__.__name__
    text = str(text)
    if "] " in text and text.startswith("["):  # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed..."
        text = text.split("] ", 1)[1]
    return text.split(" (_ssl.c")[0]


class Transport:
    def __init__(
        self,
        url: str,
        *,
        username: str | None,
        secret: str | None,
        ca_file: str | None = None,
        server_name: str | None = None,
        timeout: float = 10.0,
    ):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StalwartError("unsupported", f"not an http(s) URL: {url!r}")
        if parts.username or parts.password:
            # The URL would end up in messages and receipts; the secret belongs in secret_ref.
            raise StalwartError("unsupported", "the Stalwart URL must not carry credentials; use secret_ref")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.verify: str | bool = ca_file or True
        self.username = username
        self.account = f"account {username}" if username else "the API key (Bearer)"
        resolver = None
        connect_host = host
        if server_name and server_name.lower() != host.lower():
            address = host if _is_address(host) else self._address_of(host, port)
            resolver = f"in-memory://default/?hosts={server_name}:{address}"
            connect_host = server_name
        shown_host = f"[{connect_host}]" if ":" in connect_host else connect_host
        self.base = f"{parts.scheme}://{shown_host}:{port}{self.prefix}"
        self._headers = {"Accept": "application/json", "User-Agent": "spine-comms"}
        if secret:
            if username:
                token = base64.b64encode(f"{username}:{secret}".encode()).decode()
                self._headers["Authorization"] = f"Basic {token}"
            else:
                self._headers["Authorization"] = f"Bearer {secret}"
        import niquests

        self._niquests = niquests
        self._session = niquests.Session(resolver=resolver, retries=0)

    def _address_of(self, host: str, port: int) -> str:
        try:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as exc:
            raise StalwartError("unreachable", f"cannot resolve {host}: {exc.strerror or exc}") from None

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs):
        """One request; network, TLS and timeout failures become StalwartError('unreachable')."""
        headers = dict(self._headers) if auth else {k: v for k, v in self._headers.items() if k != "Authorization"}
        headers.update(kwargs.pop("headers", None) or {})
        target = f"{self.base}{path}"
        exceptions = self._niquests.exceptions
        try:
            return self._session.request(
                method, target, headers=headers, timeout=self.timeout, verify=self.verify, **kwargs
            )
        except exceptions.Timeout:
            raise StalwartError("unreachable", f"{self.url}: no answer within {self.timeout:g} s") from None
        except exceptions.SSLError as exc:
            raise StalwartError("unreachable", f"{self.url}: TLS failed: {_reason(exc)}") from None
        except exceptions.RequestException as exc:
            raise StalwartError("unreachable", f"{self.url}: {_reason(exc)}") from None

    def refuse(self, response) -> None:
        """Raise for the statuses that mean 'not you' or 'not now', whichever form answered."""
        status = response.status_code
        if status == 401:
            raise StalwartError("auth", f"{self.url} refused the credentials of {self.account} (HTTP 401)", status=401)
        if status == 403:
            raise StalwartError(
                "auth", f"{self.url}: {self.account} lacks the permission for this (HTTP 403)", status=403
            )
        if status == 429:
            raise StalwartError("api", f"{self.url}: too many requests (HTTP 429); try again later", status=429)

    def json(self, response, what: str):
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "?")
            raise StalwartError(
                "api", f"{what}: expected JSON, got HTTP {response.status_code} {kind}", status=response.status_code
            ) from None

    def close(self) -> None:
        self._session.close()
