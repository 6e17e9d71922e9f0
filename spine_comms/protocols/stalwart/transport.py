"""HTTP to Stalwart: one session (protocols.http: TLS verified, a timeout on every request,
server_name for URLs that name an address), with Stalwart's credentials and error words."""

from __future__ import annotations

import base64
import urllib.parse

from spine_comms.protocols.http import HttpFailure, HttpSession, split_base_url
from spine_comms.protocols.stalwart.model import StalwartError


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
        try:
            base = split_base_url(url, secret_field="secret_ref")
        except HttpFailure as exc:
            raise StalwartError("unsupported", f"Stalwart: {exc.reason}") from None
        parts = urllib.parse.urlsplit(url)
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")
        self.prefix = base.path.rstrip("/")
        self.timeout = timeout
        self.username = username
        self.account = f"account {username}" if username else "the API key (Bearer)"
        self._headers = {"Accept": "application/json", "User-Agent": "spine-comms"}
        if secret:
            if username:
                token = base64.b64encode(f"{username}:{secret}".encode()).decode()
                self._headers["Authorization"] = f"Basic {token}"
            else:
                # 0.16 API keys (API_...), 0.15's api_<base64(name:secret)> form and OAuth tokens all go as
                # Bearer. A bare 0.15 key secret cannot: the server needs the key's name with it
                # (crates/http/src/auth/authenticate.rs 162-171), given as the username (Basic).
                self._headers["Authorization"] = f"Bearer {secret}"
        try:
            self._http = HttpSession(base, ca_file=ca_file, server_name=server_name, timeout=timeout)
        except HttpFailure as exc:
            raise StalwartError("unreachable", exc.reason, failure=exc.failure_kind) from None

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs):
        """One request; network, TLS and timeout failures become StalwartError('unreachable')."""
        headers = dict(self._headers) if auth else {k: v for k, v in self._headers.items() if k != "Authorization"}
        headers.update(kwargs.pop("headers", None) or {})
        try:
            return self._http.request(method, f"{self.prefix}{path}", headers=headers, **kwargs)
        except HttpFailure as exc:
            raise StalwartError("unreachable", f"{self.url}: {exc.reason}", failure=exc.failure_kind) from None

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
        self._http.close()
