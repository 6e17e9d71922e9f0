"""A WebDAV/CalDAV/CardDAV client over python-caldav's DAVClient: one session, one origin, bounded bodies.

python-caldav (caldav.DAVClient) sends every request: its auth, its compatibility hints for the
contract's `server_kind` (e.g. Stalwart's 429/503 Retry-After handling), its PROPFIND, REPORT,
PUT, DELETE, MKCALENDAR and MKCOL. Its HTTP session is replaced by protocols.dav.guarded_session,
which keeps the rules a hostile server must not bend (one origin, no redirect followed, capped
bodies, no DOCTYPE, TLS with the contract's CA, the contract's timeout). What this class adds is
what callers branch on: DavError kinds, ETags, 412 with the current representation, multistatus
read by our own parser (xmlwire), so paths and properties come back as they always did.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.parse

from spine_comms.protocols.dav import xmlwire
from spine_comms.protocols.dav.guarded_session import GuardedSession
from spine_comms.protocols.dav.model import DavError, DavResource, DavResponse
from spine_comms.protocols.dav.server_kinds import features_for, kind_from_server_header
from spine_comms.protocols.http import HttpFailure, HttpSession, bracketed, split_base_url

_STATUS_KINDS = {401: "auth", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "precondition",
                 413: "too_large", 507: "too_large"}  # fmt: skip
_ERROR_BODY_KEPT = 64 * 1024
# Preconditions of a CalDAV/CardDAV PUT (RFC 4791 5.3.2.1, RFC 6352 6.3.2.1) that servers answer
# with 403 or 412 (Stalwart: 412) in a DAV:error body (RFC 4918 16). A 412 carrying one of these
# is not an ETag mismatch (RFC 7232 4.2), so it must not be taken for a conflict.
_CONDITION_KINDS = {"max-resource-size": "too_large", "no-uid-conflict": "conflict"}
_DAV_DATA_NAMESPACES = ("{urn:ietf:params:xml:ns:caldav}", "{urn:ietf:params:xml:ns:carddav}")


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
        server_kind: str = "auto",
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
        self.requests = 0
        self.server_kind = server_kind
        try:
            http = HttpSession(url, ca_file=ca_file, server_name=server_name, timeout=timeout)
        except HttpFailure as exc:
            raise DavError("unreachable", exc.reason, url=self.base_url, failure=exc.failure_kind) from None
        self._dav = self._caldav_client(http, username, password, ca_file, max_body)

    def _caldav_client(self, http: HttpSession, username, password, ca_file, max_body):
        """python-caldav's DAVClient on `http`'s origin (the certificate name, when one is given)."""
        import logging

        import caldav

        # python-caldav warns about odd answers through its logger; with nobody listening, Python would
        # print those on stderr by itself. The answers are judged here, and a run's logging shows them.
        logging.getLogger("caldav").addHandler(logging.NullHandler())
        connect = urllib.parse.urlsplit(http.origin)
        login = username if username and password is not None else None
        dav = caldav.DAVClient(
            url=http.origin + self.base_path,
            username=login,
            password=password if login else None,
            auth_type="basic" if login else None,
            timeout=self.timeout,
            ssl_verify_cert=ca_file or True,
            headers={"User-Agent": "spine-comms", "Accept": "*/*"},
            features=features_for(self.server_kind),
            enable_rfc6764=False,  # discovery is ours (discovery.py): every step reported, one origin
        )
        dav.session.close()
        hosts = tuple(h for h in (self.host, self.server_name, (connect.hostname or "").lower()) if h)
        dav.session = GuardedSession(http, scheme=self.scheme, hosts=hosts, port=self.port, max_body=max_body)
        self._connect_origin = http.origin
        self._bound_rate_limit_sleep(dav)
        return dav

    def _bound_rate_limit_sleep(self, dav) -> None:
        # A server the hints say rate-limits (Stalwart) is waited for as its Retry-After asks, but never
        # longer than the contract's timeout in all: a run must not hang on a server that keeps refusing.
        if dav.rate_limit_handle:
            dav.rate_limit_max_sleep = min(dav.rate_limit_max_sleep or self.timeout, self.timeout)

    @property
    def max_body(self) -> int:
        """The cap on a body either way, kept by the safety layer."""
        return self._dav.session.max_body

    @max_body.setter
    def max_body(self, value: int) -> None:
        self._dav.session.max_body = value

    @property
    def features(self):
        """python-caldav's FeatureSet for this server (its compatibility hints)."""
        return self._dav.features

    def _detect_server_kind(self, headers: dict[str, str]) -> None:
        """`auto`: the first answer's Server header picks the hints (generic when it names no known server)."""
        if self.server_kind != "auto":
            return
        self.server_kind = kind_from_server_header(headers.get("server"))
        self._dav.features = features_for(self.server_kind)
        self._dav._init_rate_limit_config(None, None, None)
        self._bound_rate_limit_sleep(self._dav)

    # ---- where a path may go ------------------------------------------------------------------------------

    def same_origin(self, url: str) -> bool:
        """A relative reference, or a URL on this account's origin (the safety layer's rule)."""
        return not urllib.parse.urlsplit(url).scheme or self._dav.session.on_origin(url)

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
        sent = {}
        if body is not None:
            sent["Content-Type"] = "application/xml; charset=utf-8"
        sent.update(headers or {})
        if depth is not None:
            sent["Depth"] = str(depth)
        started = time.monotonic()
        self.requests += 1
        try:
            answer = self._send(method, target, body, sent)
        except HttpFailure as exc:
            kind = "timeout" if exc.kind == "timeout" else "unreachable"
            where = f"{method} {shown}" if kind == "timeout" else shown
            raise DavError(kind, f"{where}: {exc.reason}", url=shown, failure=exc.failure_kind) from None
        except DavError as exc:  # the guarded session's refusals name the URL as it was sent; say it as ours
            if exc.kind in ("too_large", "redirect") and exc.url:
                raise DavError(exc.kind, exc.message.replace(exc.url, shown), url=shown) from None
            raise
        status, headers, data = answer
        response = DavResponse(status, headers, data, shown, int((time.monotonic() - started) * 1000))
        self._detect_server_kind(headers)
        if ok is not None and response.status not in ok:
            raise self.error_for(method, response)
        return response

    def _send(self, method: str, target: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
        """(status, lower-case headers, body) of one request through python-caldav's DAVClient."""
        from caldav.lib import error as caldav_error
        from caldav.lib.python_utilities import WireBytes

        url = self._connect_origin + target
        wire = WireBytes(body) if body is not None else ""  # sent as given: no CRLF rewriting
        try:
            answer = self._dav.request(url, method, wire, headers)
        except Exception as exc:
            # python-caldav raises for 401/403 (AuthorizationError), 429/503 (RateLimitError, once its hints'
            # waiting is over) and an answer labelled XML that does not parse (lxml): the answer is the one
            # the guarded session read last, judged below like any other (our parser names bad XML).
            last = self._dav.session.last_response
            if last is None or not (isinstance(exc, caldav_error.DAVError) or type(exc).__module__.startswith("lxml")):
                raise
            return last.status_code, {k.lower(): v for k, v in last.headers.items()}, last.content or b""
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}, _body_of(answer)

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
        if status in (403, 412):
            conditions = [c for c in xmlwire.error_conditions(response.body[:_ERROR_BODY_KEPT])
                          if c.startswith(_DAV_DATA_NAMESPACES)]  # fmt: skip
            if conditions:
                name = conditions[0].split("}", 1)[1]
                kind = _CONDITION_KINDS.get(name, "protocol")
                message += f" (precondition {name}" + (": the server's size limit)" if kind == "too_large" else ")")
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

    def report_in_batches(self, path: str, hrefs: list[str], body_for, batch: int = 100
                          ) -> tuple[list[DavResource], list[str]]:  # fmt: skip
        """A multiget REPORT (RFC 4791 7.9, RFC 6352 8.7) over `hrefs`, `batch` at a time, with
        `body_for(hrefs)` the request body. An answer over the body cap is asked again in halves,
        down to one href: returns (resources, the hrefs whose own answer is over the cap), so a
        resource too large to read is named by the caller, never silently missing."""
        resources: list[DavResource] = []
        over: list[str] = []
        pending = [hrefs[start : start + batch] for start in range(0, len(hrefs), batch)]
        while pending:
            chunk = pending.pop(0)
            try:
                resources += self.report(path, body_for(chunk), 1)
            except DavError as exc:
                if exc.kind != "too_large":
                    raise
                if len(chunk) == 1:
                    over.append(chunk[0])
                else:
                    pending[:0] = [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
        return resources, over

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
        self._dav.close()

    def __enter__(self) -> DavClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _body_of(answer) -> bytes:
    """The body python-caldav received: as it came for iCalendar/vCard (`_raw_body`); for XML, the
    text it parsed (line ends normalised, which XML parsing does anyway)."""
    if answer._raw_body:
        return bytes(answer._raw_body)
    raw = answer._raw
    return raw.encode() if isinstance(raw, str) else bytes(raw or b"")
