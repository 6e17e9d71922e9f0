"""A DAV front on 127.0.0.1 that makes the lab's Radicale answer RFC 6578 sync-collection as Stalwart does.

Stalwart never answers `valid-sync-token` (RFC 6578 section 3.2): a token it cannot parse gets a full
listing with 207 (crates/dav/src/common/mod.rs 261-267), and a token older than the change log it
keeps gets a silently partial delta, its truncation flag ignored (crates/dav/src/common/propfind.rs
1215-1352). Radicale does what the RFC says. This front forwards everything to Radicale's plain-HTTP
port unchanged, except:

- a sync-collection REPORT whose token Radicale refuses is sent again without the token, and that
  full listing is the answer (207), as Stalwart gives it;
- with `truncate_deltas` set, the deletions (404 responses) are dropped from every delta: what a
  client sees from a token older than the retained log;
- with `rate_limit_puts` set to n, the next n PUTs are answered 429 with `Retry-After: 1` and not
  forwarded: Stalwart's rate limiting, which python-caldav's hints for Stalwart (`rate-limit`)
  expect a client to wait out.

    with StalwartDavFront(lab_radicale_http_url) as front:
        front.url   # http://127.0.0.1:<port>/, in place of Radicale's base URL
"""

from __future__ import annotations

import http.client
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TOKEN = re.compile(rb"(<(?:\w+:)?sync-token>)([^<]*)(</(?:\w+:)?sync-token>)")
_RESPONSE = re.compile(rb"<(\w+:)?response>.*?</(\w+:)?response>", re.S)
_NOT_FOUND = re.compile(rb"<(\w+:)?status>\s*HTTP/1\.[01] 404")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


class StalwartDavFront:
    def __init__(self, upstream: str, *, truncate_deltas: bool = False):
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the front forwards to a plain-HTTP server on loopback")
        self.upstream = (parts.hostname, parts.port or 80)
        self.truncate_deltas = truncate_deltas
        self.full_listings_for_refused_tokens = 0
        self.deletions_dropped = 0
        self.rate_limit_puts = 0
        self.rate_limited = 0
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> StalwartDavFront:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.front = self
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="stalwart-dav-front", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _relay(self) -> None:
        front: StalwartDavFront = self.server.front
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # Without Accept-Encoding, so the bodies this rewrites come back uncompressed.
        dropped = _HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        if self.command == "PUT" and front.rate_limit_puts > 0:
            front.rate_limit_puts -= 1
            front.rate_limited += 1
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, answer_headers, answer = front.forward(self.command, self.path, headers, body)
        token = _TOKEN.search(body) if self.command == "REPORT" and b"sync-collection" in body else None
        if token and token.group(2).strip():
            if status in (403, 409):  # Radicale refuses the token; Stalwart lists everything instead
                front.full_listings_for_refused_tokens += 1
                status, answer_headers, answer = front.forward(
                    self.command, self.path, headers, _TOKEN.sub(rb"\1\3", body, count=1)
                )
                # Stalwart lists what exists; Radicale's initial listing also names what it deleted.
                answer = _RESPONSE.sub(lambda m: b"" if _NOT_FOUND.search(m.group(0)) else m.group(0), answer)
            elif status == 207 and front.truncate_deltas:
                answer = _RESPONSE.sub(lambda m: _drop_deletion(front, m.group(0)), answer)
        self.send_response(status)
        for name, value in answer_headers:
            if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_MKCALENDAR = do_MKCOL = do_OPTIONS = _relay
    do_PROPPATCH = do_HEAD = do_POST = do_MOVE = do_COPY = _relay


def _drop_deletion(front: StalwartDavFront, response: bytes) -> bytes:
    if _NOT_FOUND.search(response):
        front.deletions_dropped += 1
        return b""
    return response
