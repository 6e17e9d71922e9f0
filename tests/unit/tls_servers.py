"""Small TLS listeners on 127.0.0.1 for probing the probe, before (and beside) the lab.

Each speaks only the plain-text part of its protocol that leads to TLS (a greeting,
EHLO/STARTTLS, CAPABILITY) and then a greeting over TLS. They are test peers for the
TLS probe, not stand-ins for mail servers: the lab's real servers cover that.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from contextlib import contextmanager


def _line(conn) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _serve_one(conn: socket.socket, protocol: str, context: ssl.SSLContext, offer_starttls: bool) -> None:
    try:
        if protocol in ("SMTP", "STARTTLS"):
            conn.sendall(b"220 mx.test ESMTP\r\n")
            _line(conn)
            ext = (
                b"250-mx.test\r\n250-PIPELINING\r\n"
                + (b"250-STARTTLS\r\n" if offer_starttls else b"")
                + b"250 8BITMIME\r\n"
            )
            conn.sendall(ext)
            if not offer_starttls:
                return
            _line(conn)
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
        elif protocol == "IMAP":
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
            _line(conn)
            conn.sendall(b"a1 OK Begin TLS negotiation now\r\n" if offer_starttls else b"a1 BAD unknown command\r\n")
            if not offer_starttls:
                return
        elif protocol == "ManageSieve":
            caps = b'"IMPLEMENTATION" "test sieve"\r\n"SASL" ""\r\n' + (b'"STARTTLS"\r\n' if offer_starttls else b"")
            conn.sendall(caps + b'OK "ready"\r\n')
            if not offer_starttls:
                return
            _line(conn)
            conn.sendall(b'OK "Begin TLS negotiation now"\r\n')
        tls = context.wrap_socket(conn, server_side=True)
        if protocol == "SMTPS":
            tls.sendall(b"220 mail.test ESMTP\r\n")
        elif protocol == "IMAPS":
            tls.sendall(b"* OK ready\r\n")
        elif protocol == "HTTPS":
            _line(tls)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(OSError, ssl.SSLError):
            tls.recv(1024)
        tls.close()
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


@contextmanager
def tls_listener(protocol: str, cert, *, offer_starttls: bool = True):
    """Yield the port of a listener on 127.0.0.1 presenting `cert` (a trustme LeafCert)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            threading.Thread(target=_serve_one, args=(conn, protocol, context, offer_starttls), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()
