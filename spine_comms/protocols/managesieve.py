"""ManageSieve (RFC 5804): manage a user's Sieve scripts over STARTTLS and SASL PLAIN.

Just the wire: the greeting's capabilities, STARTTLS (required: PLAIN is never
sent in clear text, whatever the server offers), AUTHENTICATE "PLAIN" with an
initial response, and the script commands. Strings from the server may be quoted
or literals ({n} and {n+}); the client sends names quoted and scripts as
non-synchronizing literals {n+}, as RFC 5804 §4 lets a client always do.

Every failure is a SieveError with a `kind` (network, timeout, tls, protocol,
auth, no, bye) and, for NO/BYE, the server's Response: its code such as
QUOTA/MAXSIZE and its human text, which for CHECKSCRIPT carries the line of a
syntax error. No message, repr or transcript ever holds the password.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from spine_comms.core.outcomes import FailureKind, ProtocolFailure
from spine_comms.protocols.tls import verified_context

MAX_LINE = 64 * 1024
MAX_LITERAL = 4 * 1024 * 1024  # above any server's script limit (Stalwart: 1 MiB on 0.15, 100 KiB on 0.16)
MAX_LINES = 10_000
_LITERAL = re.compile(rb"\{(\d{1,10})\+?\}$")
_ATOM_END = b' ()"{\r\n'


# The outcome vocabulary's name for each of this module's kinds.
_FAILURE_KINDS = {
    "network": FailureKind.UNREACHABLE,
    "timeout": FailureKind.TIMEOUT,
    "tls": FailureKind.TLS_UNTRUSTED,
    "auth": FailureKind.CREDENTIALS_REFUSED,
}


class SieveError(ProtocolFailure):
    """`kind` is this module's detail (network, timeout, tls, protocol, auth, no, bye); `failure_kind`
    the outcome vocabulary's (a BYE or NO to a command is a protocol_error, unless `failure` says)."""

    def __init__(self, kind: str, message: str, response: Response | None = None, *,
                 failure: FailureKind | None = None):  # fmt: skip
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.response = response
        self.failure_kind = failure or _FAILURE_KINDS.get(kind, FailureKind.PROTOCOL_ERROR)


@dataclass(frozen=True)
class Token:
    kind: str  # atom | string | open | close
    value: str


@dataclass(frozen=True)
class Response:
    """OK, NO or BYE, with an optional response code (`QUOTA/MAXSIZE`, `NONEXISTENT`, ...) and text."""

    status: str
    code: str | None = None
    code_args: tuple[str, ...] = ()
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def __str__(self) -> str:
        code = f" ({' '.join((self.code, *self.code_args))})" if self.code else ""
        return f"{self.status}{code} {self.text}".rstrip()

    def to_dict(self) -> dict:
        return {"status": self.status, "code": self.code, "code_args": list(self.code_args), "text": self.text}


@dataclass
class Capabilities:
    implementation: str | None = None
    version: str | None = None
    sasl: list[str] = field(default_factory=list)
    sieve: list[str] = field(default_factory=list)
    starttls: bool = False
    max_redirects: int | None = None
    notify: list[str] = field(default_factory=list)
    raw: dict[str, str | None] = field(default_factory=dict)

    @property
    def checkscript(self) -> bool:
        # RFC 5804 §1.7: a server that sends VERSION "1.0" implements CHECKSCRIPT (and RENAMESCRIPT, NOOP).
        return self.version is not None

    def to_dict(self) -> dict:
        return {
            "implementation": self.implementation, "version": self.version, "sasl": self.sasl,
            "sieve": self.sieve, "starttls": self.starttls, "max_redirects": self.max_redirects,
            "notify": self.notify, "raw": self.raw,
        }  # fmt: skip


def parse_capabilities(lines: list[list[Token]]) -> Capabilities:
    """Capability lines (`"NAME" ["value"]`) into fields; names are case-insensitive (sievelib#7)."""
    caps = Capabilities()
    for tokens in lines:
        if not tokens or tokens[0].kind not in ("string", "atom"):
            continue
        name = tokens[0].value.upper()
        value = tokens[1].value if len(tokens) > 1 and tokens[1].kind == "string" else None
        caps.raw[name] = value
        if name == "IMPLEMENTATION":
            caps.implementation = value
        elif name == "VERSION":
            caps.version = value
        elif name == "SASL":
            caps.sasl = (value or "").upper().split()
        elif name == "SIEVE":
            caps.sieve = (value or "").lower().split()
        elif name == "STARTTLS":
            caps.starttls = True
        elif name == "MAXREDIRECTS" and value and value.strip().isdigit():
            caps.max_redirects = int(value.strip())
        elif name == "NOTIFY":
            caps.notify = (value or "").lower().split()
    return caps


class Wire:
    """Reads lines, literals and whole token lines from a `recv` callable, with bounds."""

    def __init__(self, recv: Callable[[int], bytes]):
        self.recv = recv
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.recv(65536)
        if not chunk:
            raise SieveError("protocol", "connection closed by the server")
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise SieveError("protocol", "line from the server too long")
            self._fill()
        raw, self.buffer = self.buffer.split(b"\r\n", 1)
        return raw

    def exact(self, size: int) -> bytes:
        if size > MAX_LITERAL:
            raise SieveError("protocol", f"literal of {size} bytes from the server is too large")
        while len(self.buffer) < size:
            self._fill()
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def tokens(self) -> list[Token]:
        """One response line as tokens; literals are read whole and become strings."""
        out: list[Token] = []
        while True:
            line = self.line()
            literal = _tokenize(line, out)
            if literal is None:
                return out
            out.append(Token("string", self.exact(literal).decode("utf-8", errors="replace")))
            # The rest of the logical line follows the literal's octets, up to the next CRLF.

    def response(self) -> tuple[list[list[Token]], Response]:
        """Data lines up to the closing OK / NO / BYE."""
        data = []
        for _ in range(MAX_LINES):
            tokens = self.tokens()
            if tokens and tokens[0].kind == "atom" and tokens[0].value.upper() in ("OK", "NO", "BYE"):
                return data, parse_response(tokens)
            data.append(tokens)
        raise SieveError("protocol", "no end to the server's response")


def _tokenize(line: bytes, out: list[Token]) -> int | None:
    """Append the tokens of `line`; return the size of a literal that ends it, if any."""
    pos, end = 0, len(line)
    while pos < end:
        char = line[pos : pos + 1]
        if char == b" ":
            pos += 1
        elif char == b"(":
            out.append(Token("open", "("))
            pos += 1
        elif char == b")":
            out.append(Token("close", ")"))
            pos += 1
        elif char == b'"':
            value, pos = _quoted(line, pos + 1)
            out.append(Token("string", value))
        elif char == b"{":
            match = _LITERAL.match(line, pos)
            if not match:
                raise SieveError("protocol", f"bad literal in {line[:80]!r}")
            return int(match.group(1))
        else:
            start = pos
            while pos < end and line[pos : pos + 1] not in (b" ", b"(", b")", b'"', b"{"):
                pos += 1
            out.append(Token("atom", line[start:pos].decode("utf-8", errors="replace")))
    return None


def _quoted(line: bytes, pos: int) -> tuple[str, int]:
    value = bytearray()
    while pos < len(line):
        char = line[pos]
        if char == 0x5C and pos + 1 < len(line):  # backslash: the next octet as is
            value.append(line[pos + 1])
            pos += 2
        elif char == 0x22:
            return value.decode("utf-8", errors="replace"), pos + 1
        else:
            value.append(char)
            pos += 1
    raise SieveError("protocol", f"unterminated string in {line[:80]!r}")


def parse_response(tokens: list[Token]) -> Response:
    status = tokens[0].value.upper()
    rest = tokens[1:]
    code, args = None, ()
    if rest and rest[0].kind == "open":
        close = next((i for i, t in enumerate(rest) if t.kind == "close"), None)
        if close is None:
            raise SieveError("protocol", "response code without a closing parenthesis")
        inner = rest[1:close]
        if inner:
            code, args = inner[0].value.upper(), tuple(t.value for t in inner[1:])
        rest = rest[close + 1 :]
    text = " ".join(t.value for t in rest if t.kind == "string")
    return Response(status, code, args, text)


def quote(value: str) -> str:
    """A quoted string for a name; names cannot hold CR, LF or NUL (RFC 5804 §1.6)."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a ManageSieve name cannot hold CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"{%d+}\r\n" % len(data) + data


class ManageSieve:
    """One session. Use `connect()`, which does the greeting, STARTTLS and login."""

    def __init__(self, host: str, port: int, *, server_name: str | None, ca_file: str | None, timeout: float,
                 transcript: Callable[[str], None] | None = None):  # fmt: skip
        self.host, self.port, self.server_name, self.ca_file = host, port, server_name, ca_file
        self.timeout = timeout
        self.transcript = transcript
        self.sock: socket.socket | None = None
        self.wire: Wire | None = None
        self.capabilities = Capabilities()
        self.greeting: Response | None = None

    def __repr__(self) -> str:
        return f"ManageSieve({self.host}:{self.port})"

    # ---- the session ------------------------------------------------------------------------------------

    def open(self) -> Capabilities:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            where = f"{self.host}:{self.port}"
            raise SieveError("timeout", f"connect to {where} timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise SieveError("network", f"connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.sock.settimeout(self.timeout)
        self.wire = Wire(self._recv)
        data, self.greeting = self.wire.response()
        if not self.greeting.ok:
            raise SieveError("protocol", f"greeting: {self.greeting}", self.greeting)
        self.capabilities = parse_capabilities(data)
        return self.capabilities

    def starttls(self) -> Capabilities:
        if not self.capabilities.starttls:
            raise SieveError("tls", "the server does not offer STARTTLS; refusing to log in without TLS")
        self._ok("STARTTLS")
        if self.wire.buffer:  # data sent before the handshake would be trusted as if it came over TLS
            raise SieveError("tls", "the server sent data before the TLS handshake")
        context = verified_context(self.server_name, self.ca_file)
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self.server_name or self.host)
        except ssl.SSLCertVerificationError as exc:
            raise SieveError("tls", f"certificate not trusted: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            raise SieveError("tls", f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}") from None
        # RFC 5804 §2.2: after TLS the server sends its capabilities again (SASL may change).
        data, response = self._read()
        if not response.ok:
            raise SieveError("protocol", f"after STARTTLS: {response}", response)
        self.capabilities = parse_capabilities(data)
        return self.capabilities

    def authenticate(self, login: str, password: str) -> Response:
        if not isinstance(self.sock, ssl.SSLSocket):
            raise SieveError("tls", "refusing to send a PLAIN password without TLS")
        if self.capabilities.sasl and "PLAIN" not in self.capabilities.sasl:
            offered = " ".join(self.capabilities.sasl)
            raise SieveError(
                "auth", f"the server does not offer SASL PLAIN (it offers {offered})", failure=FailureKind.UNSUPPORTED
            )
        initial = base64.b64encode(f"\0{login}\0{password}".encode()).decode("ascii")
        self._send(f'AUTHENTICATE "PLAIN" "{initial}"'.encode(), shown='AUTHENTICATE "PLAIN" <redacted>')
        _, response = self._read()
        if not response.ok:
            kind = "bye" if response.status == "BYE" else "auth"
            raise SieveError(
                kind, f"login refused for {login}: {response}", response, failure=FailureKind.CREDENTIALS_REFUSED
            )
        return response

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self._send(b"LOGOUT")
            self._read()
        except (SieveError, OSError):
            pass  # the server may hang up first; we are leaving anyway
        finally:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> ManageSieve:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- commands -----------------------------------------------------------------------------------------

    def capability(self) -> Capabilities:
        data, _ = self._ok("CAPABILITY")
        self.capabilities = parse_capabilities(data)
        return self.capabilities

    def listscripts(self) -> list[tuple[str, bool]]:
        data, _ = self._ok("LISTSCRIPTS")
        out = []
        for tokens in data:
            if tokens and tokens[0].kind == "string":
                active = len(tokens) > 1 and tokens[1].kind == "atom" and tokens[1].value.upper() == "ACTIVE"
                out.append((tokens[0].value, active))
        return out

    def getscript(self, name: str) -> str:
        data, _ = self._ok(f"GETSCRIPT {quote(name)}")
        strings = [t.value for tokens in data for t in tokens if t.kind == "string"]
        if len(strings) != 1:
            raise SieveError("protocol", f"GETSCRIPT answered {len(strings)} strings, not one")
        return strings[0]

    def putscript(self, name: str, script: str) -> Response:
        command = f"PUTSCRIPT {quote(name)} ".encode() + literal(script)
        return self._ok(command, shown=f"PUTSCRIPT {quote(name)} {{…}}")[1]

    def checkscript(self, script: str) -> Response:
        """The server's verdict, OK or NO (with the error text); never raises for NO."""
        self._send(b"CHECKSCRIPT " + literal(script), shown="CHECKSCRIPT {…}")
        _, response = self._read()
        if response.status == "BYE":
            raise SieveError("bye", f"CHECKSCRIPT: {response}", response)
        return response

    def setactive(self, name: str) -> Response:
        return self._ok(f"SETACTIVE {quote(name)}")[1]

    def deletescript(self, name: str) -> Response:
        return self._ok(f"DELETESCRIPT {quote(name)}")[1]

    def renamescript(self, old: str, new: str) -> Response:
        return self._ok(f"RENAMESCRIPT {quote(old)} {quote(new)}")[1]

    def havespace(self, name: str, size: int) -> Response:
        """OK when a script of `size` bytes fits; NO (QUOTA/MAXSIZE ...) otherwise; never raises for NO."""
        self._send(f"HAVESPACE {quote(name)} {int(size)}".encode())
        _, response = self._read()
        if response.status == "BYE":
            raise SieveError("bye", f"HAVESPACE: {response}", response)
        return response

    # ---- the wire -----------------------------------------------------------------------------------------

    def _recv(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise SieveError("timeout", f"no answer from {self.host}:{self.port} within {self.timeout:g} s") from None
        except OSError as exc:
            raise SieveError("network", f"{self.host}:{self.port}: {exc.strerror or exc}") from None

    def _send(self, command: str | bytes, *, shown: str | None = None) -> None:
        data = command.encode() if isinstance(command, str) else command
        if self.transcript:
            self.transcript(f"C: {shown or data.decode('utf-8', errors='replace')}")
        try:
            self.sock.sendall(data + b"\r\n")
        except TimeoutError:
            raise SieveError("timeout", f"sending to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise SieveError("network", f"{self.host}:{self.port}: {exc.strerror or exc}") from None

    def _read(self) -> tuple[list[list[Token]], Response]:
        data, response = self.wire.response()
        if self.transcript:
            self.transcript(f"S: {len(data)} data line(s), {response}")
        return data, response

    def _ok(self, command: str | bytes, *, shown: str | None = None) -> tuple[list[list[Token]], Response]:
        self._send(command, shown=shown)
        data, response = self._read()
        if not response.ok:
            verb = (shown or (command if isinstance(command, str) else command.decode(errors="replace"))).split()[0]
            kind = "bye" if response.status == "BYE" else "no"
            raise SieveError(kind, f"{verb}: {response}", response)
        return data, response


def connect(host: str, port: int, *, login: str, password: str, server_name: str | None, ca_file: str | None,
            timeout: float, transcript: Callable[[str], None] | None = None) -> ManageSieve:  # fmt: skip
    """Greeting, STARTTLS (required), AUTHENTICATE PLAIN: a logged-in session, or a SieveError."""
    session = ManageSieve(host, port, server_name=server_name, ca_file=ca_file, timeout=timeout, transcript=transcript)
    try:
        session.open()
        session.starttls()
        session.authenticate(login, password)
    except BaseException:
        if session.sock is not None:
            session.sock.close()
            session.sock = None
        raise
    return session
