"""The safety layer python-caldav's DAVClient sends through: it replaces the client's HTTP session.

python-caldav (caldav.DAVClient) does the DAV work: auth, its compatibility hints, rate-limit
handling, request methods. Everything it sends goes through `session.request(...)`, so the rules
a server we do not trust must not bend are kept here, once, for CalDAV and CardDAV alike:

- one origin: a URL on another scheme, host or port is refused before anything is sent, so the
  Authorization header (added by the auth object on the way out) never leaves the account's
  origin; redirects are never followed (a 3xx is an answer the caller sees);
- the contract's CA file and timeout on every request, whatever the caller passed
  (protocols.http's session: TLS verified, the certificate name mapped to the address);
- bodies capped: a request body over the cap never leaves, an answer over it (declared or
  streamed) is refused as soon as it passes;
- server XML with a DOCTYPE is refused before any parser (python-caldav's lxml or ours) sees it,
  and characters XML 1.0 forbids, which servers copy from event and card text, are removed.
"""

from __future__ import annotations

import re
import urllib.parse

from spine_comms.protocols.dav.model import DavError
from spine_comms.protocols.dav.xmlwire import without_forbidden_characters
from spine_comms.protocols.http import HttpSession

# The prolog of an XML document: a BOM, the declaration, comments and processing instructions,
# then either a DOCTYPE (refused) or the root element.
_XML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--.*?-->\s*)*<", re.S)
_DOCTYPE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.S | re.I)
_UTF16 = (b"\xff\xfe", b"\xfe\xff")


class GuardedSession:
    """What caldav.DAVClient calls `session`: request() and close(), guarded as the module says."""

    def __init__(self, http: HttpSession, *, scheme: str, hosts: tuple[str, ...], port: int, max_body: int):
        self.http = http
        self.scheme = scheme
        self.hosts = hosts
        self.port = port
        self.max_body = max_body
        self.last_response = None  # the answer python-caldav turned into an exception (401, 403, 429 ...)

    def on_origin(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        return parts.scheme == self.scheme and port == self.port and (parts.hostname or "").lower() in self.hosts

    def request(self, method: str, url: str, *, data=None, headers=None, auth=None, **_ignored):
        """One request, with `_ignored` (timeout, verify, cert, proxies from caldav) replaced by ours."""
        self.last_response = None
        if not self.on_origin(url):
            raise DavError("redirect", f"refusing {url[:200]}: not on the account's origin", url=url[:200])
        if data is not None and len(data) > self.max_body:
            raise DavError("too_large", f"{method} {url}: body of {len(data)} bytes over the cap of {self.max_body}",
                           url=url)  # fmt: skip
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        raw = self.http.request(method, target, data=data or None, headers=dict(headers or {}), auth=auth,
                                allow_redirects=False, stream=True)  # fmt: skip
        with self.http.failures():  # the body streams in after the headers
            body = self._read(raw, method, url)
        raw._content, raw._content_consumed = self._checked_xml(body), True
        self.last_response = raw
        return raw

    def _read(self, raw, method: str, url: str) -> bytes:
        declared = raw.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raw.close()
            raise DavError("too_large", f"{method} {url}: the server announced {declared} bytes, over the cap "
                                        f"of {self.max_body}", url=url)  # fmt: skip
        chunks, size = [], 0
        for chunk in raw.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_body:
                raw.close()
                raise DavError("too_large", f"{method} {url}: body over the cap of {self.max_body} bytes", url=url)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _checked_xml(body: bytes) -> bytes:
        """An XML answer without forbidden characters; one with a DOCTYPE refused. Other bodies
        (iCalendar, vCard, HTML) are left as they came."""
        if body.startswith(_UTF16):
            try:
                head = body[:4096].decode("utf-16", errors="ignore").encode()
            except UnicodeError:
                head = b""
            if _DOCTYPE.match(head):
                raise DavError("protocol", "refused the server's XML: XML with a DOCTYPE (DTDs and entities are "
                                           "refused)")  # fmt: skip
            return body
        if _DOCTYPE.match(body):
            raise DavError("protocol", "refused the server's XML: XML with a DOCTYPE (DTDs and entities are refused)")
        return without_forbidden_characters(body) if _XML_START.match(body) else body

    def close(self) -> None:
        self.http.close()
