"""A plain WebDAV/CalDAV/CardDAV client: one niquests session, one origin, bounded bodies.

Redirects are never followed here: a 3xx is an answer the caller sees (discovery
follows same-origin ones itself). Every request goes to the base URL's origin, so
the Authorization header never leaves it; an href or Location on another host is
refused with DavError("redirect"). The session (TLS verification, timeouts, a
`server_name` for a base URL that names an address) is protocols.http's.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
import urllib.parse

from spine_comms.protocols.dav import xmlwire
from spine_comms.protocols.dav.model import DavError, DavResource, DavResponse
from spine_comms.protocols.http import HttpFailure, HttpSession, bracketed, split_base_url

_STATUS_KINDS = {401: "auth", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "precondition",
                 413: "too_large", 507: "too_large"}  # fmt: skip
_ERROR_BODY_KEPT = 64 * 1024


class DavClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None,
        password: str | None,
        ca_file: str | None = None,
        server_name: str | None = None,
        timeout: float = 10.0,
        max_body: int = 25 * 1024 * 1024,
    ):
        try:
            url = split_base_url(base_url, secret_field="password_ref")
        except HttpFailure as exc:
            raise DavError("protocol", f"DAV base_url: {exc.reason}") from None
        self.scheme = url.scheme
        self.host = url.host
        self.port = url.port
        self.server_name = server_name.lower() if server_name else None
        self.origin = f"{self.scheme}://{bracketed(self.host)}" + ("" if url.default_port else f":{self.port}")
        self.base_path = url.path if url.path.endswith("/") else (url.path or "") + "/"
        self.base_url = self.origin + self.base_path
        self.username = username
        self.timeout = timeout
        self.max_body = max_body
        self.requests = 0
        self._headers = {"User-Agent": "spine-comms"}
        if username and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        try:
            self._http = HttpSession(url, ca_file=ca_file, server_name=server_name, timeout=timeout)
        except HttpFailure as exc:
            raise DavError("unreachable", exc.reason, url=self.base_url, failure=exc.failure_kind) from None

    # ---- where a path may go ------------------------------------------------------------------------------

    def same_origin(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        if not parts.scheme:
            return True
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        host = (parts.hostname or "").lower()
        return parts.scheme == self.scheme and port == self.port and host in (self.host, self.server_name)

    def path_of(self, target: str, relative_to: str | None = None) -> str:
        """An absolute path on this origin for `target` (absolute URL, absolute path or relative path)."""
        if re.search(r"[\x00-\x20\x7f]", target):
            raise DavError("protocol", f"refusing a path with spaces or control characters: {target[:80]!r}")
        parts = urllib.parse.urlsplit(target)
        if parts.scheme or parts.netloc:
            if not (parts.scheme and parts.netloc and self.same_origin(target)):
                raise DavError("redirect", f"refusing {target[:200]}: not on {self.origin}", url=target[:200])
            path = parts.path or "/"
        else:
            path = target if target.startswith("/") else urllib.parse.urljoin(relative_to or self.base_path, target)
        return path.split("#", 1)[0]

    def localize(self, href: str, relative_to: str | None = None) -> str:
        """An href from the server as a path on this origin; one on another host stays a full URL."""
        try:
            return self.path_of(href, relative_to)
        except DavError:
            return href

    def url_of(self, path: str) -> str:
        return self.origin + self.path_of(path)

    # ---- requests -----------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict | None = None,
        depth: str | None = None,
        ok: tuple[int, ...] | None = (200, 201, 204, 207),
    ) -> DavResponse:
        """One request. A status outside `ok` raises DavError (ok=None: every status is returned)."""
        target = self.path_of(path)
        shown = self.origin + target
        if body is not None and len(body) > self.max_body:
            raise DavError("too_large", f"{method} {shown}: body of {len(body)} bytes over the cap of "
                                        f"{self.max_body}", url=shown)  # fmt: skip
        sent = dict(self._headers)
        if body is not None:
            sent["Content-Type"] = "application/xml; charset=utf-8"
        sent.update(headers or {})
        if depth is not None:
            sent["Depth"] = str(depth)
        started = time.monotonic()
        self.requests += 1
        try:
            raw = self._http.request(method, target, data=body, headers=sent, allow_redirects=False, stream=True)
            with self._http.failures():  # the body streams in after the headers
                data = self._read(raw, method, shown)
        except HttpFailure as exc:
            kind = "timeout" if exc.kind == "timeout" else "unreachable"
            where = f"{method} {shown}" if kind == "timeout" else shown
            raise DavError(kind, f"{where}: {exc.reason}", url=shown, failure=exc.failure_kind) from None
        response = DavResponse(raw.status_code, {k.lower(): v for k, v in raw.headers.items()}, data, shown,
                               int((time.monotonic() - started) * 1000))  # fmt: skip
        if ok is not None and response.status not in ok:
            raise self.error_for(method, response)
        return response

    def _read(self, raw, method: str, shown: str) -> bytes:
        """The body, refused as soon as it passes max_body (declared or actual)."""
        declared = raw.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raw.close()
            raise DavError("too_large", f"{method} {shown}: the server announced {declared} bytes, over the cap "
                                        f"of {self.max_body}", url=shown)  # fmt: skip
        chunks, size = [], 0
        for chunk in raw.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_body:
                raw.close()
                raise DavError("too_large", f"{method} {shown}: body over the cap of {self.max_body} bytes", url=shown)
            chunks.append(chunk)
        return b"".join(chunks)

    def error_for(self, method: str, response: DavResponse) -> DavError:
        status = response.status
        where = f"{method} {response.url}"
        kind = _STATUS_KINDS.get(status) or ("redirect" if 300 <= status < 400 else "protocol")
        if status == 401:
            who = f"the login {self.username!r}" if self.username else "an anonymous request (no login configured)"
            message = f"{response.url} refused {who} (HTTP 401)"
        elif kind == "redirect":
            message = f"{where}: HTTP {status} to {response.headers.get('location', '?')[:200]} (not followed)"
        else:
            message = f"{where}: HTTP {status}"
        error = DavError(kind, message, status=status, url=response.url)
        error.body = response.body[:_ERROR_BODY_KEPT]
        if status == 412 and response.etag and response.body:
            # Prefer: return=representation (RFC 7240) honoured: the body is the current resource.
            error.current, error.current_etag = response.body, response.etag
        return error

    # ---- the DAV verbs ------------------------------------------------------------------------------------

    def multistatus(self, response: DavResponse) -> tuple[list[DavResource], str | None]:
        if not response.body.strip():
            return [], None
        relative_to = urllib.parse.urlsplit(response.url).path
        return xmlwire.parse_multistatus(response.body, lambda href: self.localize(href, relative_to))

    def propfind_response(self, path: str, props: list[str], depth: int = 0) -> tuple[DavResponse, list[DavResource]]:
        response = self.request("PROPFIND", path, body=xmlwire.propfind_body(props), depth=str(depth), ok=(200, 207))
        resources = self.multistatus(response)[0]
        if depth == 0 and resources and all(r.status == 404 for r in resources):
            # Xandikos answers a missing resource with 207 holding a 404; Radicale with a plain 404.
            raise DavError("not_found", f"PROPFIND {response.url}: HTTP 404 (in a multistatus)", status=404,
                           url=response.url)  # fmt: skip
        return response, resources

    def propfind(self, path: str, props: list[str], depth: int = 0) -> list[DavResource]:
        return self.propfind_response(path, props, depth)[1]

    def report(self, path: str, body: bytes, depth: int = 1) -> list[DavResource]:
        response = self.request("REPORT", path, body=body, depth=str(depth), ok=(200, 207))
        return self.multistatus(response)[0]

    def get(self, path: str) -> tuple[bytes, str | None]:
        response = self.request("GET", path, ok=(200,))
        return response.body, response.etag

    def etag_of(self, path: str) -> str | None:
        """The resource's current ETag: HEAD, then PROPFIND getetag for servers that omit it on HEAD."""
        response = self.request("HEAD", path, ok=(200, 204))
        if response.etag:
            return response.etag
        for resource in self.propfind(path, ["{DAV:}getetag"], 0):
            if resource.etag:
                return resource.etag
        return None

    def put(self, path: str, body: bytes, content_type: str, *, etag: str | None = None,
            create_only: bool = False) -> str | None:  # fmt: skip
        headers = {"Content-Type": content_type, "Prefer": "return=representation"}
        if create_only:
            headers["If-None-Match"] = "*"
        elif etag:
            headers["If-Match"] = etag
        try:
            response = self.request("PUT", path, body=body, headers=headers, ok=(200, 201, 204))
        except DavError as exc:
            if exc.kind == "precondition" and exc.current is None:
                self._fill_current(exc, path)
            raise
        return response.etag or self.etag_of(path)

    def delete(self, path: str, *, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else {}
        try:
            self.request("DELETE", path, headers=headers, ok=(200, 202, 204))
        except DavError as exc:
            if exc.kind == "precondition" and exc.current is None:
                self._fill_current(exc, path)
            raise

    def _fill_current(self, error: DavError, path: str) -> None:
        """A 412 without the representation: read what is there now, best effort."""
        with contextlib.suppress(DavError):
            error.current, error.current_etag = self.get(path)

    def mkcalendar(self, path: str, *, display_name: str | None, color: str | None, components: list[str],
                   description: str | None = None) -> None:  # fmt: skip
        body = xmlwire.mkcalendar_body(display_name, color, components, description)
        self.request("MKCALENDAR", path, body=body, ok=(200, 201))

    def mkcol_addressbook(self, path: str, *, display_name: str | None, description: str | None = None) -> None:
        body = xmlwire.mkcol_addressbook_body(display_name, description)
        self.request("MKCOL", path, body=body, ok=(200, 201))

    def sync_collection(self, path: str, token: str | None, props: list[str] | None = None
                        ) -> tuple[list[DavResource], list[str], str | None]:  # fmt: skip
        """RFC 6578: (changed, deleted hrefs, new token). An invalid token is DavError('precondition')."""
        body = xmlwire.sync_collection_body(token, props or ["{DAV:}getetag"])
        try:
            # RFC 6578 3.2: sync-collection is defined for Depth 0; sync-level carries the scope.
            response = self.request("REPORT", path, body=body, depth="0", ok=(200, 207))
        except DavError as exc:
            conditions = xmlwire.error_conditions(getattr(exc, "body", b""))
            # Radicale answers 403, Xandikos 0.2 a bare 500; either way a full listing is the remedy.
            if token and (exc.status in (400, 403, 409, 412, 500) or "{DAV:}valid-sync-token" in conditions):
                raise DavError("precondition", f"{exc.url}: the sync token is no longer valid (HTTP {exc.status})",
                               status=exc.status, url=exc.url) from None  # fmt: skip
            raise
        resources, new_token = self.multistatus(response)
        collection = self.path_of(path).rstrip("/")
        changed, deleted = [], []
        for resource in resources:
            if resource.href.rstrip("/") == collection:
                continue
            (deleted.append(resource.href) if resource.status == 404 else changed.append(resource))
        return changed, deleted, new_token

    def options(self, path: str) -> tuple[list[str], list[str]]:
        response = self.request("OPTIONS", path, ok=(200, 204))
        split = lambda value: [v.strip() for v in (value or "").split(",") if v.strip()]  # noqa: E731
        return split(response.headers.get("dav")), [m.upper() for m in split(response.headers.get("allow"))]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DavClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
