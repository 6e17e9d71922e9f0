"""Reach TLS on a mail or web endpoint and describe what it presents.

Speaks just enough of each protocol to get to TLS: implicit TLS (SMTPS, IMAPS,
HTTPS) or STARTTLS (SMTP, submission, IMAP, ManageSieve). STARTTLS that the
server does not offer is an error, never a fall back to plain text.

The certificate is verified (system store or the given CA, and the given server
name, so a host can be reached by IP). When verification fails, the dialogue is
repeated without verification only to read the certificate for the report.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from spine_comms.core.outcomes import FailureKind, ProtocolFailure

X509_V_ERR_HOSTNAME_MISMATCH = 62
MAX_LINE = 8192
MAX_LINES = 200
CLIENT_NAME = "spine-comms.invalid"

IMPLICIT = {"SMTPS", "IMAPS", "HTTPS"}
STARTTLS = {"SMTP", "STARTTLS", "IMAP", "ManageSieve"}
PLAIN = {"HTTP"}


class ProtocolError(ProtocolFailure):
    """The server did not say what the protocol requires (or refused STARTTLS)."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.PROTOCOL_ERROR):
        super().__init__(message)
        self.failure_kind = kind


@dataclass
class Certificate:
    subject: str
    issuer: str
    san: list[str]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def to_dict(self) -> dict:
        out = asdict(self)
        out["not_before"] = self.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")
        out["not_after"] = self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out


@dataclass
class Probe:
    host: str
    port: int
    protocol: str
    server_name: str | None
    reachable: bool = False
    greeting: str | None = None
    tls: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool | None = None
    verify_error: str | None = None
    name_match: bool | None = None
    certificate: Certificate | None = None
    error: str | None = None  # the connection or protocol failure, if any
    error_kind: FailureKind | None = None  # why the dialogue did not end well, in the outcome vocabulary
    connect_ms: float | None = None
    total_ms: float | None = None
    notes: list[str] = field(default_factory=list)


class _Lines:
    """Bounded line reader over a socket (a hostile server cannot make us buffer without end)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def line(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise ProtocolError("line too long")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ProtocolError("connection closed by the server", FailureKind.UNREACHABLE)
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\n", 1)
        return raw.rstrip(b"\r").decode("utf-8", errors="replace")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("ascii") + b"\r\n")


def _smtp_reply(lines: _Lines) -> tuple[int, list[str]]:
    out = []
    for _ in range(MAX_LINES):
        text = lines.line()
        out.append(text)
        if len(text) < 4 or text[3] != "-":
            break
    code = out[-1][:3]
    if not code.isdigit():
        raise ProtocolError(f"not an SMTP reply: {out[-1][:80]!r}")
    return int(code), out


def _smtp_starttls(lines: _Lines) -> str:
    code, greeting = _smtp_reply(lines)
    if code != 220:
        raise ProtocolError(f"SMTP greeting {code}: {greeting[-1][:120]}")
    lines.send(f"EHLO {CLIENT_NAME}")
    code, ehlo = _smtp_reply(lines)
    if code != 250:
        raise ProtocolError(f"EHLO refused: {ehlo[-1][:120]}")
    if not any(line[4:].upper().startswith("STARTTLS") for line in ehlo):
        raise ProtocolError("STARTTLS not offered")
    lines.send("STARTTLS")
    code, reply = _smtp_reply(lines)
    if code != 220:
        raise ProtocolError(f"STARTTLS refused: {reply[-1][:120]}")
    return greeting[0]


def _imap_starttls(lines: _Lines) -> str:
    greeting = lines.line()
    if not greeting.startswith("* OK"):
        raise ProtocolError(f"not an IMAP greeting: {greeting[:120]!r}")
    lines.send("a1 STARTTLS")
    for _ in range(MAX_LINES):
        reply = lines.line()
        if reply.startswith("a1 "):
            if reply.startswith("a1 OK"):
                return greeting
            raise ProtocolError(f"STARTTLS refused: {reply[:120]}")
    raise ProtocolError("no answer to STARTTLS")


def _sieve_starttls(lines: _Lines) -> str:
    capabilities = []
    for _ in range(MAX_LINES):
        reply = lines.line()
        if reply.startswith(("OK", "NO", "BYE")):
            break
        capabilities.append(reply)
    else:
        raise ProtocolError("no end to the ManageSieve greeting")
    if not reply.startswith("OK"):
        raise ProtocolError(f"ManageSieve greeting: {reply[:120]}")
    implementation = next((c for c in capabilities if c.upper().startswith('"IMPLEMENTATION"')), reply)
    if not any(c.upper().startswith('"STARTTLS"') for c in capabilities):
        raise ProtocolError("STARTTLS not offered")
    lines.send("STARTTLS")
    answer = lines.line()
    if not answer.startswith("OK"):
        raise ProtocolError(f"STARTTLS refused: {answer[:120]}")
    return implementation


def _after_tls(protocol: str, lines: _Lines, server_name: str | None, host: str) -> str | None:
    """The greeting or first answer once TLS is up, for implicit-TLS and plain protocols."""
    if protocol == "SMTPS":
        code, greeting = _smtp_reply(lines)
        if code != 220:
            raise ProtocolError(f"SMTP greeting {code}: {greeting[-1][:120]}")
        lines.send("QUIT")
        return greeting[0]
    if protocol == "IMAPS":
        greeting = lines.line()
        if not greeting.startswith("* OK"):
            raise ProtocolError(f"not an IMAP greeting: {greeting[:120]!r}")
        lines.send("a1 LOGOUT")
        return greeting
    if protocol in ("HTTPS", "HTTP"):
        lines.send(
            f"HEAD / HTTP/1.1\r\nHost: {server_name or host}\r\nUser-Agent: spine-comms\r\nConnection: close\r\n"
        )
        status = lines.line()
        if not status.startswith("HTTP/"):
            raise ProtocolError(f"not an HTTP answer: {status[:120]!r}")
        return status
    return None


class NamedContext(ssl.SSLContext):
    """An SSL context that checks the certificate for one fixed name, whatever host was dialled.

    smtplib and imaplib pass the host they connect to as server_hostname; pinning
    the name here lets them connect by IP and still verify mail.example.org.
    """

    server_name: str | None = None

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        return super().wrap_socket(sock, *args, server_hostname=self.server_name or server_hostname, **kwargs)


def verified_context(server_name: str | None, ca_file: str | None) -> NamedContext:
    """Verification on: the CA file when given, else the system store; the name checked is server_name."""
    context = NamedContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    context.server_name = server_name
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    return context


def _context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    return context


def _dialogue(probe: Probe, timeout: float, ca_file: str | None, verify: bool) -> ssl.SSLSocket | socket.socket:
    start = time.monotonic()
    sock = socket.create_connection((probe.host, probe.port), timeout=timeout)
    probe.reachable = True
    probe.connect_ms = round((time.monotonic() - start) * 1000, 1)
    sock.settimeout(timeout)
    lines = _Lines(sock)
    try:
        if probe.protocol in PLAIN:
            probe.greeting = _after_tls(probe.protocol, lines, probe.server_name, probe.host)
            return sock
        if probe.protocol in STARTTLS:
            dialogue = {
                "SMTP": _smtp_starttls,
                "STARTTLS": _smtp_starttls,
                "IMAP": _imap_starttls,
                "ManageSieve": _sieve_starttls,
            }
            probe.greeting = dialogue[probe.protocol](lines)
            if lines.buffer:  # anything sent before the handshake is an injection attempt (CVE-2011-0411 class)
                raise ProtocolError("server sent data before the TLS handshake")
        name = probe.server_name or probe.host
        tls_sock = _context(ca_file, verify).wrap_socket(sock, server_hostname=name)
        probe.tls = True
        probe.tls_version = tls_sock.version()
        probe.cipher = (tls_sock.cipher() or (None,))[0]
        der = tls_sock.getpeercert(binary_form=True)
        if der:
            probe.certificate = parse_certificate(der)
        if probe.protocol in IMPLICIT:
            probe.greeting = _after_tls(probe.protocol, _Lines(tls_sock), probe.server_name, probe.host)
        return tls_sock
    except BaseException:
        sock.close()
        raise


def probe_endpoint(
    host: str, port: int, protocol: str, *, server_name: str | None, ca_file: str | None, timeout: float
) -> Probe:
    probe = Probe(host, port, protocol, server_name)
    start = time.monotonic()
    try:
        _dialogue(probe, timeout, ca_file, verify=True).close()
        probe.verified = True if probe.tls else None
    except ssl.SSLCertVerificationError as exc:
        # OpenSSL checks the name after the chain, so a name mismatch means the chain itself verified.
        probe.verified = exc.verify_code == X509_V_ERR_HOSTNAME_MISMATCH
        probe.verify_error = f"{exc.verify_message} (code {exc.verify_code})"
        retry = Probe(host, port, protocol, server_name)
        try:
            _dialogue(retry, timeout, ca_file, verify=False).close()
            probe.certificate, probe.greeting = retry.certificate, retry.greeting
            probe.tls, probe.tls_version, probe.cipher = retry.tls, retry.tls_version, retry.cipher
        except (OSError, ProtocolError) as again:
            probe.notes.append(f"certificate not read: {again}")
    except ConnectionRefusedError:
        probe.error, probe.error_kind = "connection refused", FailureKind.UNREACHABLE
    except TimeoutError:
        probe.error, probe.error_kind = f"timed out after {timeout:g} s", FailureKind.TIMEOUT
    except ProtocolError as exc:
        probe.error, probe.error_kind = str(exc), exc.failure_kind
    except ssl.SSLError as exc:
        probe.error, probe.error_kind = f"TLS handshake failed: {exc.reason or exc}", FailureKind.TLS_UNTRUSTED
    except OSError as exc:
        probe.error, probe.error_kind = f"{exc.strerror or exc}", FailureKind.UNREACHABLE
    probe.total_ms = round((time.monotonic() - start) * 1000, 1)
    if probe.certificate and probe.server_name:
        probe.name_match = name_matches(probe.server_name, probe.certificate.san)
    return probe


def parse_certificate(der: bytes) -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san = [str(v) for v in ext.get_values_for_type(x509.DNSName)]
        san += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        san = []
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        san=san,
        not_before=cert.not_valid_before_utc.astimezone(UTC),
        not_after=cert.not_valid_after_utc.astimezone(UTC),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def name_matches(name: str, san: list[str]) -> bool:
    """RFC 6125 matching on subjectAltName: exact, or a wildcard for the leftmost label only."""
    try:
        wanted_ip = ipaddress.ip_address(name)
    except ValueError:
        wanted_ip = None
    name = name.lower().rstrip(".")
    for entry in san:
        if wanted_ip is not None:
            try:
                if ipaddress.ip_address(entry) == wanted_ip:
                    return True
            except ValueError:
                continue
            continue
        entry = entry.lower().rstrip(".")
        if entry == name:
            return True
        if entry.startswith("*.") and "." in name and name.split(".", 1)[1] == entry[2:]:
            return True
    return False
