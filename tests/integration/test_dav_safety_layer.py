"""The safety layer around python-caldav (protocols/dav/guarded_session.py), each rule held against a
hostile server on 127.0.0.1: what python-caldav's DAVClient sends goes through it, whoever built the URL.

No lab needed: every peer here is a small HTTP(S) server in the test, answering as a server we must
not trust would (redirects to another host, DTDs, control characters, silence, a certificate we do
not trust, 429 with Retry-After, a Server header that names Stalwart).
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from contextlib import contextmanager

import pytest

from spine_comms.core.outcomes import FailureKind
from spine_comms.protocols.dav import DavClient, DavError
from tests.silent_server import silent_listener

MULTISTATUS = (
    b'<?xml version="1.0"?><multistatus xmlns="DAV:"><response><href>/c/</href><propstat><prop>'
    b"<displayname>ok</displayname></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"
)


class _Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        status, headers, body = self.server.answer(self.command, self.path, len(self.server.seen))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PROPFIND = do_OPTIONS = do_REPORT = do_PUT = do_DELETE = do_HEAD = _answer


@contextmanager
def hostile(answer, *, address: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
    server = http.server.ThreadingHTTPServer((address, 0), _Hostile)
    server.daemon_threads = True
    server.seen, server.answer = [], answer
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def xml(body: bytes, status: int = 207, **headers):
    return status, {"Content-Type": "application/xml; charset=utf-8", **headers}, body


def test_python_caldav_itself_cannot_send_the_login_to_another_host():
    """The guard is on python-caldav's session: a URL on another host, however python-caldav came by it
    (a principal, a calendar URL, a redirect it might follow), is refused before a byte is sent."""
    with hostile(lambda *_: xml(MULTISTATUS), address="127.0.0.2") as elsewhere, \
            hostile(lambda *_: xml(MULTISTATUS)) as here:  # fmt: skip
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username="ops", password="Sentinel-pw-1")
        for url in (f"http://127.0.0.2:{elsewhere.server_port}/evil/", f"https://127.0.0.1:{here.server_port}/x",
                    f"http://127.0.0.1:{elsewhere.server_port}/x"):  # fmt: skip
            with pytest.raises(DavError) as caught:
                client._dav.request(url, "PROPFIND", "", {"Depth": "0"})
            assert caught.value.kind == "redirect", url
        client.propfind("/c/", ["{DAV:}displayname"])
    assert elsewhere.seen == []
    assert [(m, p) for m, p, _ in here.seen] == [("PROPFIND", "/c/")] and here.seen[0][2].startswith("Basic ")


def test_a_redirect_to_another_host_is_an_answer_not_followed():
    with hostile(lambda *_: xml(MULTISTATUS), address="127.0.0.2") as elsewhere:
        other = f"http://127.0.0.2:{elsewhere.server_port}/c/"
        with hostile(lambda *_: (307, {"Location": other}, b"")) as here:
            client = DavClient(f"http://127.0.0.1:{here.server_port}/", username="ops", password="pw")
            with pytest.raises(DavError) as caught:
                client.propfind("/c/", ["{DAV:}displayname"])
            assert caught.value.kind == "redirect" and "not followed" in caught.value.message
            assert client.request("GET", "/c/", ok=None).status == 307
    assert elsewhere.seen == [] and len(here.seen) == 2


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
                  b'<multistatus xmlns="DAV:"><response><href>&lol2;</href></response></multistatus>')  # fmt: skip
EXTERNAL = (b'<!-- hi --><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<multistatus xmlns="DAV:"><response><href>&x;</href></response></multistatus>')  # fmt: skip


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL, BILLION_LAUGHS.decode().encode("utf-16")])
def test_xml_with_a_doctype_is_refused_before_any_parser_sees_it(body):
    with hostile(lambda *_: xml(body)) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None)
        for call in (lambda: client.propfind("/c/", ["{DAV:}displayname"], 1), lambda: client.report("/c/", b"<x/>")):
            with pytest.raises(DavError) as caught:
                call()
            assert caught.value.kind == "protocol" and "DOCTYPE" in caught.value.message
        # python-caldav's own path (its lxml parser) is behind the same refusal
        with pytest.raises(DavError, match="DOCTYPE"):
            client._dav.request(f"http://127.0.0.1:{here.server_port}/c/", "PROPFIND", "", {"Depth": "0"})


def test_control_characters_servers_copy_into_xml_are_cleaned_on_the_way_in():
    card = b"BEGIN:VCARD\r\nFN:bell\x07 &#27;[31m esc\x1b tab\tok\r\nEND:VCARD"
    body = (b'<multistatus xmlns="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav"><response><href>/b/x.vcf</href>'
            b'<propstat><prop><getetag>"1"</getetag><card:address-data>' + card + b"</card:address-data></prop>"
            b"<status>HTTP/1.1 200 OK</status></propstat></response></multistatus>")  # fmt: skip
    with hostile(lambda *_: xml(body)) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None)
        (resource,) = client.report("/b/", b"<x/>")
        # what python-caldav parses itself (lxml, which refuses these characters) is cleaned too
        answer = client._dav.request(f"http://127.0.0.1:{here.server_port}/b/", "REPORT", "<x/>", {"Depth": "1"})
        assert answer.tree is not None and b"\x07" not in answer._raw
    data = resource.props["{urn:ietf:params:xml:ns:carddav}address-data"]
    assert data == "BEGIN:VCARD\nFN:bell [31m esc tab\tok\nEND:VCARD" and resource.etag == '"1"'


def test_an_icalendar_body_comes_back_byte_for_byte():
    """python-caldav rewrites line ends of what it sends and receives; the layer keeps both exact."""
    event = b"BEGIN:VCALENDAR\r\nX-ODD:a\nb\r\nEND:VCALENDAR\r\n"
    sent = []

    def answer(method, path, count):
        return (200, {"Content-Type": "text/calendar", "ETag": '"e"'}, event) if method == "GET" else (
            201, {"ETag": '"e2"'}, b"")  # fmt: skip

    with hostile(answer) as here:
        original = _Hostile._answer

        def recording(handler):
            if handler.command == "PUT":
                sent.append(handler.rfile.read(int(handler.headers["Content-Length"])))
                handler.headers.replace_header("Content-Length", "0")
            original(handler)

        _Hostile.do_PUT = recording
        try:
            client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None)
            assert client.get("/c/e.ics") == (event, '"e"')
            assert client.put("/c/e.ics", event, "text/calendar") == '"e2"'
        finally:
            _Hostile.do_PUT = original
    assert sent == [event]


def test_the_contracts_timeout_bounds_a_server_that_never_answers():
    with silent_listener() as port:
        client = DavClient(f"http://127.0.0.1:{port}/", username=None, password=None, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(DavError) as caught:
            client.propfind("/", ["{DAV:}displayname"])
    assert caught.value.kind == "timeout" and caught.value.failure_kind == FailureKind.TIMEOUT
    assert time.monotonic() - started < 5


def test_tls_is_verified_with_the_contracts_ca_file(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("dav.spine.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with hostile(lambda *_: xml(MULTISTATUS), tls=context) as here:
        base = f"https://127.0.0.1:{here.server_port}/"
        trusted = DavClient(base, username=None, password=None, ca_file=str(ca_file), server_name="dav.spine.test")
        assert trusted.propfind("/c/", ["{DAV:}displayname"])[0].props["{DAV:}displayname"] == "ok"
        untrusted = DavClient(base, username=None, password=None, server_name="dav.spine.test")  # system CAs only
        with pytest.raises(DavError) as caught:
            untrusted.propfind("/c/", ["{DAV:}displayname"])
        assert caught.value.kind == "unreachable" and caught.value.failure_kind == FailureKind.TLS_UNTRUSTED
        wrong_name = DavClient(base, username=None, password=None, ca_file=str(ca_file), server_name="other.test")
        with pytest.raises(DavError) as caught:
            wrong_name.propfind("/c/", ["{DAV:}displayname"])
        assert caught.value.failure_kind == FailureKind.TLS_UNTRUSTED
    assert len(here.seen) == 1  # only the trusted client's request was ever answered


# ---- python-caldav's compatibility hints, chosen by server_kind ----------------------------------------------


def rate_limited_once(method, path, count):
    return (429, {"Retry-After": "1"}, b"slow down") if count == 1 else xml(MULTISTATUS)


def test_stalwart_rate_limiting_is_waited_out_as_python_caldavs_hints_say():
    """Stalwart rate-limits with 429 + Retry-After (caldav.compatibility_hints.stalwart 'rate-limit'):
    with server_kind stalwart the request is sent again after the wait; with generic it is an error."""
    with hostile(rate_limited_once) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None,
                           server_kind="stalwart")  # fmt: skip
        assert client.propfind("/c/", ["{DAV:}displayname"])[0].props["{DAV:}displayname"] == "ok"
    assert len(here.seen) == 2
    with hostile(rate_limited_once) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None,
                           server_kind="generic")  # fmt: skip
        with pytest.raises(DavError) as caught:
            client.propfind("/c/", ["{DAV:}displayname"])
        assert caught.value.status == 429 and caught.value.kind == "protocol"
    assert len(here.seen) == 1


def test_a_rate_limit_longer_than_the_timeout_is_not_waited_for():
    with hostile(lambda *_: (503, {"Retry-After": "30"}, b"")) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None, timeout=2,
                           server_kind="stalwart")  # fmt: skip
        started = time.monotonic()
        with pytest.raises(DavError) as caught:
            client.propfind("/c/", ["{DAV:}displayname"])
    assert caught.value.status == 503 and time.monotonic() - started < 10


@pytest.mark.parametrize(("server", "kind"), [("Stalwart", "stalwart"), ("Radicale/3.5.4", "radicale"),
                                             ("Xandikos/0.2.10", "xandikos"), ("nginx", "generic")])  # fmt: skip
def test_auto_takes_the_server_kind_from_the_first_answer(server, kind):
    with hostile(lambda *_: xml(MULTISTATUS, Server=server)) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username=None, password=None)
        assert client.server_kind == "auto"
        client.propfind("/c/", ["{DAV:}displayname"])
    assert client.server_kind == kind
    # Stalwart and Xandikos do not answer an expired token with valid-sync-token (python-caldav's hints).
    assert client.features.is_supported("sync-token.invalid-token") == (kind in ("radicale", "generic"))


def test_a_refused_login_and_a_403_precondition_keep_their_meaning_through_python_caldav():
    """python-caldav raises on 401/403; the answer it raised on is still what callers judge."""
    refusal = (b'<?xml version="1.0"?><D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
               b"<C:no-uid-conflict/></D:error>")  # fmt: skip

    def answer(method, path, count):
        if path == "/locked/":
            return 401, {"WWW-Authenticate": 'Basic realm="x"'}, b""
        return xml(refusal, 403)

    with hostile(answer) as here:
        client = DavClient(f"http://127.0.0.1:{here.server_port}/", username="ops@spine.test", password="pw")
        with pytest.raises(DavError) as caught:
            client.propfind("/locked/", ["{DAV:}displayname"])
        assert caught.value.kind == "auth" and "'ops@spine.test'" in caught.value.message
        with pytest.raises(DavError) as caught:
            client.put("/c/x.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar", create_only=True)
        assert caught.value.kind == "conflict" and "no-uid-conflict" in caught.value.message
    assert [m for m, _, _ in here.seen] == ["PROPFIND", "PUT"]  # a refused login is not retried
