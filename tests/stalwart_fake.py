"""A fake of Stalwart's management API, in its 0.16 (JMAP registry) and 0.15 (REST) forms.

This is the tested statement of what Stalwart does, taken from reference/stalwart.md
(sections 0, 1A-1E and 2); tests/contract/test_stalwart_fake.py holds it to those facts.

    with FakeStalwart("0.16") as fake:            # or "0.15"
        fake.add_domain("example.test")
        fake.url, fake.admin_login, fake.admin_password

Knobs for the odd corners: `dkim_delay` (how long the asynchronous DKIM Task takes),
`ready` (/healthz/ready), `response_delay` (to provoke timeouts), `public_url` (the
apiUrl the session names), `forbidden` (logins without admin permissions), `tls=True`
(a trustme CA; the certificate names only `hostname`, not 127.0.0.1), `dkim_sign` (0.15: the
`auth.dkim.sign` settings keys; None is the built-in default, which names only rsa-<domain> and
ed25519-<domain>), `add_dkim(..., signature_id=...)` (0.15: a signature under a hand-made id, as
installs upgraded from 0.9 have).
Not modelled: OAuth, JMAP mail objects, the 0.15 JMAP endpoints, paging limits.
"""

from __future__ import annotations

import base64
import json
import secrets as random_secrets
import ssl
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STALWART_URN = "urn:stalwart:jmap"
KNOWN_CAPABILITIES = {
    "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission",
    "urn:ietf:params:jmap:sieve", STALWART_URN,
}  # fmt: skip
MASKED = "****"  # MASKED_PASSWORD in crates/registry/src/schema/prelude.rs
DKIM1 = {"Dkim1RsaSha256": "rsa", "Dkim1Ed25519Sha256": "ed25519"}
DKIM_TYPES = {*DKIM1, "Dkim2RsaSha256", "Dkim2Ed25519Sha256"}
WEAK_PASSWORDS = {"password", "password1", "12345678", "qwertyui", "letmein1", "changeme", "secret123"}


# ---- keys and records -----------------------------------------------------------------------------


def generate_private_pem(kind: str) -> str:
    """As crates/common/src/network/dkim.rs: RSA-2048 as PKCS#1 PEM, Ed25519 as PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def public_key_of(pem: str) -> tuple[str, str]:
    """(kind, p= value): RSA as base64 PKCS#1 DER, Ed25519 as base64 of the raw 32 bytes (section 2)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        return "rsa", base64.b64encode(der).decode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", base64.b64encode(raw).decode()
    raise ValueError("not an RSA or Ed25519 key")


def dkim_txt(kind: str, public: str) -> str:
    return f"v=DKIM1; k={kind}; h=sha256; p={public}"


def bind_line(name: str, rtype: str, value: str) -> str:
    """One record as dns-update's bind.rs writes it: no TTL, TXT over 255 bytes chunked inside ( )."""
    if rtype != "TXT":
        return f"{name} IN {rtype} {value}"
    escaped = [c.replace("\\", "\\\\").replace('"', '\\"') for c in _chunks(value)]
    if len(escaped) == 1:
        return f'{name} IN TXT "{escaped[0]}"'
    body = "\n".join(f'    "{c}"' for c in escaped)
    return f"{name} IN TXT (\n{body}\n)"


def _chunks(value: str, size: int = 255) -> list[str]:
    data = value.encode()
    return [data[i : i + size].decode() for i in range(0, len(data), size)] or [""]


# ---- the fake ----------------------------------------------------------------------------------------


class FakeStalwart:
    def __init__(
        self,
        mode: str = "0.16",
        *,
        hostname: str = "mail.example.test",
        default_domain: str = "example.test",
        admin_password: str = "Corr3ct-Horse-Battery-Staple",
        dkim_delay: float = 0.3,
        tls: bool = False,
    ):
        if mode not in ("0.16", "0.15"):
            raise ValueError("mode is '0.16' or '0.15'")
        self.mode = mode
        self.hostname = hostname
        self.default_domain = default_domain
        # 0.16 accounts are full addresses; 0.15 principals are bare names.
        self.admin_login = f"admin@{default_domain}" if mode == "0.16" else "admin"
        self.admin_password = admin_password
        self.logins: dict[str, str] = {self.admin_login: admin_password}
        self.api_keys: dict[str, str] = {}  # 0.16: token -> login; 0.15: key name -> secret
        self.forbidden: set[str] = set()
        self.dkim_delay = dkim_delay
        self.ready = True
        self.response_delay = 0.0
        self.public_url: str | None = None
        # 0.15 `auth.dkim.sign` as stored settings keys (crates/common/src/config/smtp/auth.rs 108-115);
        # None: not set, so the built-in rule applies.
        self.dkim_sign: dict[str, str] | None = None
        # A reverse proxy serving the server under this path: it strips the prefix from requests but, like
        # most proxies, does not rewrite the server's Location headers.
        self.path_prefix = ""
        self.requests: list[dict] = []
        self.reloads = 0
        self.lock = threading.RLock()
        self.domains: dict[str, dict] = {}  # id -> domain object
        self.signatures: dict[str, dict] = {}  # 0.16: id -> DkimSignature; 0.15: signature id -> settings
        self.accounts: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}
        self._ids = 0
        self._timers: list[threading.Timer] = []
        self.tls = tls
        self.ca_file: str | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle

    def start(self) -> FakeStalwart:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self
        if self.tls:
            import trustme

            authority = trustme.CA()
            self._tmp = tempfile.TemporaryDirectory(prefix="stalwart-fake-")
            self.ca_file = str(Path(self._tmp.name) / "ca.pem")
            authority.cert_pem.write_to_path(self.ca_file)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            authority.issue_cert(self.hostname).configure_cert(context)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="stalwart-fake", daemon=True).start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> FakeStalwart:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- seeding

    def _new_id(self) -> str:
        self._ids += 1
        return f"{'abcdefghijklmnopqrstuvwxyz'[self._ids % 26]}{self._ids}"

    def add_domain(self, name: str, *, dkim_automatic: bool = False) -> str:
        with self.lock:
            domain_id = self._new_id()
            self.domains[domain_id] = _domain_object(domain_id, name, automatic=dkim_automatic)
            if dkim_automatic and self.mode == "0.16":
                self._start_dkim_task(domain_id)
            return domain_id

    def domain_id(self, name: str) -> str | None:
        return next((i for i, d in self.domains.items() if d["name"] == name), None)

    def add_dkim(
        self, domain: str, kind: str, *, selector: str | None = None, stage: str = "active", pem: str | None = None,
        signature_id: str | None = None,
    ) -> dict:  # fmt: skip
        """A key the server already has (kind 'rsa' or 'ed25519'): `pem`, or a new one."""
        with self.lock:
            pem = pem or generate_private_pem(kind)
            if self.mode == "0.15":
                return self._rest_add_signature(domain, kind, selector, pem, signature_id)
            domain_id = self.domain_id(domain) or self.add_domain(domain)
            return self._jmap_add_signature(domain_id, kind, selector or _auto_selector(kind), pem, stage)

    def add_api_key(self, login: str | None = None, name: str = "spine", secret: str | None = None) -> str:
        """An API key; returns what the client sends: 0.16 'API_...' (Bearer), 0.15 the key's secret."""
        if self.mode == "0.16":
            raw = (1).to_bytes(4, "big") + (len(self.api_keys) + 1).to_bytes(4, "big") + random_secrets.token_bytes(20)
            token = "API_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
            self.api_keys[token] = login or self.admin_login
            return token
        secret = secret or random_secrets.token_urlsafe(18)
        self.api_keys[name] = secret
        return secret

    def dkim_public_keys(self, domain: str) -> dict[str, str]:
        """selector -> p= value, as the server holds them."""
        if self.mode == "0.15":
            return {s["selector"]: s["public"] for s in self.signatures.values() if s["domain"] == domain}
        domain_id = self.domain_id(domain)
        return {s["selector"]: s["publicKey"] for s in self.signatures.values() if s["domainId"] == domain_id}

    # -- auth

    def authenticate(self, header: str | None, *, api_path: bool) -> str | None:
        """The login the Authorization header proves, or None."""
        if not header or " " not in header:
            return None
        scheme, value = header.split(" ", 1)
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic":
            try:
                user, secret = base64.b64decode(value).decode().split(":", 1)
            except (ValueError, UnicodeDecodeError):
                return None
            user = user.strip().lower()
            if self.mode == "0.16" and "@" not in user:
                user = f"{user}@{self.default_domain}"  # 0.16 appends the default domain to a bare name
            if self.logins.get(user) == secret:
                return user
            if self.mode == "0.15" and self.api_keys.get(user) == secret:
                return user  # an API-key principal as Basic keyname:secret (#1343)
            return None
        if scheme == "bearer":
            if self.mode == "0.16":
                return self.api_keys.get(value) if value.startswith("API_") else None
            if api_path and value.startswith("api_"):  # 0.15: Bearer api_<base64(keyname:secret)>, /api only
                try:
                    name, secret = base64.b64decode(value[4:]).decode().split(":", 1)
                except (ValueError, UnicodeDecodeError):
                    return None
                return name if self.api_keys.get(name) == secret else None
        return None

    # -- 0.16 objects

    def _jmap_add_signature(self, domain_id: str, kind: str, selector: str, pem: str, stage: str) -> dict:
        _, public = public_key_of(pem)
        sig_id = self._new_id()
        self.signatures[sig_id] = {
            "id": sig_id, "@type": "Dkim1RsaSha256" if kind == "rsa" else "Dkim1Ed25519Sha256",
            "domainId": domain_id, "selector": selector, "privateKey": {"@type": "Text", "secret": pem},
            "publicKey": public, "stage": stage, "nextTransitionAt": None, "canonicalization": "relaxed/relaxed",
            "headers": {"0": "From", "1": "To", "2": "Date", "3": "Subject", "4": "Message-ID"},
            "report": True, "expire": None, "auid": None,  # `report` defaults to true in 0.16
        }  # fmt: skip
        return self.signatures[sig_id]

    def _start_dkim_task(self, domain_id: str) -> str:
        """dkimManagement Automatic: a DkimManagement Task makes both keys a moment later."""
        task_id = self._new_id()
        self.tasks[task_id] = {"id": task_id, "@type": "DkimManagement", "domainId": domain_id,
                               "status": "pending", "failureReason": None}  # fmt: skip

        def run() -> None:
            with self.lock:
                if domain_id not in self.domains:
                    self.tasks[task_id].update(status="failed", failureReason="domain was destroyed")
                    return
                for kind in ("ed25519", "rsa"):
                    # Manual DNS management: new keys are active at once and never rotate (section 2).
                    pem = generate_private_pem(kind)
                    self._jmap_add_signature(domain_id, kind, _auto_selector(kind), pem, "active")
                self.tasks[task_id]["status"] = "completed"

        timer = threading.Timer(self.dkim_delay, run)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return task_id

    def zone_file(self, domain_id: str) -> str:
        """x:Domain.dnsZoneFile: BIND text, absolute names, no TTLs (crates/common/src/network/dns/records.rs)."""
        domain = self.domains[domain_id]
        d, host = domain["name"], self.hostname
        lines = [bind_line(f"{d}.", "MX", f"10 {host}."), bind_line(f"{d}.", "TXT", "v=spf1 mx -all")]
        if host.endswith(f".{d}"):
            lines.append(bind_line(f"{host}.", "TXT", "v=spf1 a -all"))
        for sig in self.signatures.values():
            # Every signature of the domain, retired ones too (records.rs has no stage filter).
            if sig["domainId"] == domain_id and sig["@type"] in DKIM1:
                value = dkim_txt(DKIM1[sig["@type"]], sig["publicKey"])
                lines.append(bind_line(f"{sig['selector']}._domainkey.{d}.", "TXT", value))
        report = domain.get("reportAddressUri")
        if report:  # DMARC and TLS-RPT are emitted only when the domain has a report address
            rua = f"{report}@{d}" if report.startswith("mailto:") and "@" not in report else report
            lines.append(bind_line(f"_dmarc.{d}.", "TXT", f"v=DMARC1; p=reject; rua={rua}"))
            lines.append(bind_line(f"_smtp._tls.{d}.", "TXT", f"v=TLSRPTv1; rua={rua}"))
        lines += [
            bind_line(f"_submissions._tcp.{d}.", "SRV", f"0 1 465 {host}."),
            bind_line(f"_imaps._tcp.{d}.", "SRV", f"0 1 993 {host}."),
            bind_line(f"mta-sts.{d}.", "CNAME", f"{host}."),
        ]
        return "\n".join(lines) + "\n"

    # -- 0.15 settings

    def _rest_add_signature(self, domain: str, kind: str, selector: str | None, pem: str, sig_id: str | None = None):
        now = datetime.now(UTC)
        sig_id = sig_id or f"{kind}-{domain}"
        selector = selector or f"{now.year:04}{now.month:02}{'r' if kind == 'rsa' else 'e'}"
        _, public = public_key_of(pem)
        self.signatures[sig_id] = {"domain": domain, "selector": selector, "algorithm": f"{kind}-sha256",
                                   "private-key": pem, "public": public}  # fmt: skip
        return self.signatures[sig_id]

    def settings_group(self, sig_id: str) -> dict:
        sig = self.signatures[sig_id]
        group = {
            "_id": sig_id, "algorithm": sig["algorithm"], "domain": sig["domain"], "selector": sig["selector"],
            "private-key": sig["private-key"], "canonicalization": "relaxed/relaxed", "report": "false",
        }  # fmt: skip
        group.update({f"headers.{i}": h for i, h in enumerate(["From", "To", "Date", "Subject", "Message-ID"])})
        return group

    def dns_list(self, domain: str) -> list[dict]:
        """GET /api/dns/records/{domain} in 0.15 (crates/http/src/management/dns.rs): FQDNs, unsplit TXT."""
        host, d = self.hostname, domain
        out = [{"type": "MX", "name": f"{d}.", "content": f"10 {host}."}]
        if host != f"mail.{d}":
            out.append({"type": "CNAME", "name": f"mail.{d}.", "content": f"{host}."})
        for sig in self.signatures.values():
            if sig["domain"] == d:
                kind = sig["algorithm"].split("-")[0]
                out.append({"type": "TXT", "name": f"{sig['selector']}._domainkey.{d}.",
                            "content": dkim_txt(kind, sig["public"])})  # fmt: skip
        if host.endswith(f".{d}"):
            out.append({"type": "TXT", "name": f"{host}.", "content": "v=spf1 a ra=postmaster -all"})
        out += [
            {"type": "TXT", "name": f"{d}.", "content": "v=spf1 mx ra=postmaster -all"},
            {"type": "SRV", "name": f"_submissions._tcp.{d}.", "content": f"0 1 465 {host}."},
            {"type": "SRV", "name": f"_imaps._tcp.{d}.", "content": f"0 1 993 {host}."},
            {"type": "CNAME", "name": f"mta-sts.{d}.", "content": f"{host}."},
            {"type": "TXT", "name": f"_mta-sts.{d}.", "content": "v=STSv1; id=1234567890"},
            {"type": "TXT", "name": f"_dmarc.{d}.",
             "content": f"v=DMARC1; p=reject; rua=mailto:postmaster@{d}; ruf=mailto:postmaster@{d}"},
            {"type": "TXT", "name": f"_smtp._tls.{d}.", "content": f"v=TLSRPTv1; rua=mailto:postmaster@{d}"},
        ]  # fmt: skip
        return out


def _auto_selector(kind: str) -> str:
    """0.16's template v{version}-{algorithm}-{date-%Y%m%d}."""
    return f"v1-{kind}-{datetime.now(UTC):%Y%m%d}"


def _domain_object(domain_id: str, name: str, *, automatic: bool = False) -> dict:
    return {
        "id": domain_id, "name": name, "aliases": {}, "isEnabled": True, "description": "", "catchAllAddress": None,
        "subAddressing": {"@type": "Enabled"}, "allowRelaying": False, "reportAddressUri": "mailto:postmaster",
        "certificateManagement": {"@type": "Manual"},
        "dkimManagement": {"@type": "Automatic" if automatic else "Manual"}, "dnsManagement": {"@type": "Manual"},
    }  # fmt: skip


# ---- HTTP -------------------------------------------------------------------------------------------


def problem(status: int, title: str, detail: str | None = None, type_: str = "about:blank") -> dict:
    return {"type": type_, "status": status, "title": title, "detail": detail if detail is not None else title}


CHALLENGES = (
    ("WWW-Authenticate", 'Bearer realm="Stalwart Server", resource_metadata="/.well-known/oauth-protected-resource"'),
    ("WWW-Authenticate", 'Basic realm="Stalwart Server"'),
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Stalwart"
    sys_version = ""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    @property
    def fake(self) -> FakeStalwart:
        return self.server.fake

    def _send(self, status: int, body=None, *, content_type="application/json", headers=()) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if data or content_type != "application/json":
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _problem(self, status: int, title: str, detail: str | None = None, type_="about:blank", headers=()) -> None:
        self._send(status, problem(status, title, detail, type_), content_type="application/problem+json",
                   headers=headers)  # fmt: skip

    def _unauthorized(self) -> None:
        # 0.16 names both schemes; 0.13-0.15 sent no WWW-Authenticate on /api answers (#1795).
        headers = CHALLENGES if self.fake.mode == "0.16" else ()
        self._problem(401, "Unauthorized", "You have to authenticate first.", headers=headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urllib.parse.urlsplit(self.path)
        path, query = parts.path, urllib.parse.parse_qs(parts.query)
        body = self._body()
        full_path = path
        if fake.path_prefix:
            if not path.startswith(fake.path_prefix + "/"):
                return self._send(404, b"not behind this proxy path", content_type="text/plain")
            path = path[len(fake.path_prefix) :]
        fake.requests.append({"method": method, "path": full_path, "query": parts.query,
                              "authorization": self.headers.get("Authorization"),
                              "content_type": self.headers.get("Content-Type")})  # fmt: skip
        if fake.response_delay:
            time.sleep(fake.response_delay)
        if path in ("/healthz/live", "/healthz/ready") and method == "GET":
            ok = path.endswith("live") or fake.ready
            status = 200 if ok else 503
            title = "OK" if ok else "Service Unavailable"
            return self._problem(status, title, title)
        with fake.lock:
            if fake.mode == "0.16":
                return self._v016(method, path, query, body)
            return self._v015(method, path, query, body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- 0.16

    def _v016(self, method, path, query, body) -> None:
        fake = self.fake
        header = self.headers.get("Authorization")
        if path == "/.well-known/jmap" and method == "GET":
            # An absolute path: a reverse proxy's path prefix is not in it (crates/http/src/request.rs).
            return self._send(307, None, headers=(("Location", "/jmap/session"), ("Cache-Control", "no-cache")))
        if path == "/jmap/session" and method == "GET":
            if header is None:
                return self._send(200, self._session(None))
            login = fake.authenticate(header, api_path=False)
            return self._send(200, self._session(login)) if login else self._unauthorized()
        if path in ("/jmap", "/jmap/") and method == "POST":
            login = fake.authenticate(header, api_path=False)
            if not login:
                return self._unauthorized()
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if self.headers.get("Content-Type") is not None and content_type != "application/json":
                return self._problem(400, "Not JSON", "Content-Type must be application/json",
                                     "urn:ietf:params:jmap:error:notJSON")  # fmt: skip
            try:
                request = json.loads(body)
            except ValueError as exc:
                return self._problem(400, "Not JSON", str(exc), "urn:ietf:params:jmap:error:notJSON")
            if (
                not isinstance(request, dict)
                or not isinstance(request.get("using"), list)
                or not isinstance(request.get("methodCalls"), list)
            ):
                return self._problem(400, "Not Request", "expected using and methodCalls",
                                     "urn:ietf:params:jmap:error:notRequest")  # fmt: skip
            unknown = [u for u in request["using"] if u not in KNOWN_CAPABILITIES]
            if unknown:
                return self._problem(400, "Unknown Capability", f"unknown capability {unknown[0]}",
                                     "urn:ietf:params:jmap:error:unknownCapability")  # fmt: skip
            if len(request["methodCalls"]) > 16:
                return self._problem(400, "Limit", "maxCallsInRequest is 16", "urn:ietf:params:jmap:error:limit")
            return self._send(200, JmapRegistry(fake, login).run(request["methodCalls"]))
        if path == "/api/account" and method == "GET":
            login = fake.authenticate(header, api_path=True)
            if not login:
                return self._unauthorized()
            permissions = [] if login in fake.forbidden else ["sys-domain-get", "sys-dkim-signature-create"]
            return self._send(200, {"permissions": permissions, "edition": "community", "locale": "en"})
        # crates/http/src/api/mod.rs: any other /api path (principal, dkim, dns ...) is gone: 404.
        return self._problem(404, "Not Found", "The requested resource does not exist on this server.")

    def _session(self, login: str | None) -> dict:
        fake = self.fake
        base = fake.public_url or fake.url
        session = {
            "capabilities": {
                "urn:ietf:params:jmap:core": {"maxSizeUpload": 50000000, "maxConcurrentUpload": 4,
                                              "maxSizeRequest": 10000000, "maxConcurrentRequests": 4,
                                              "maxCallsInRequest": 16, "maxObjectsInGet": 500,
                                              "maxObjectsInSet": 500, "collationAlgorithms": []},
                "urn:ietf:params:jmap:mail": {}, "urn:ietf:params:jmap:submission": {},
            },
            "accounts": {}, "primaryAccounts": {}, "username": "",
            "apiUrl": f"{base}/jmap/",
            "downloadUrl": f"{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}",
            "uploadUrl": f"{base}/jmap/upload/{{accountId}}/", "eventSourceUrl": f"{base}/jmap/eventsource/",
            "state": "s1",
        }  # fmt: skip
        if login:
            account_id = "d333333"
            # urn:stalwart:jmap is advertised only among the account's capabilities.
            session["accounts"] = {account_id: {"name": login, "isPersonal": True, "isReadOnly": False,
                                                "accountCapabilities": {"urn:ietf:params:jmap:mail": {},
                                                                        STALWART_URN: {}}}}  # fmt: skip
            session["primaryAccounts"] = {"urn:ietf:params:jmap:mail": account_id, STALWART_URN: account_id}
            session["username"] = login
        return session

    # ---- 0.15

    def _v015(self, method, path, query, body) -> None:
        fake = self.fake
        if not path.startswith("/api"):
            return self._problem(404, "Not Found", "The requested resource does not exist on this server.")
        login = fake.authenticate(self.headers.get("Authorization"), api_path=True)
        if not login:
            return self._unauthorized()  # 0.13+: no WWW-Authenticate on /api
        if login in fake.forbidden:
            return self._problem(403, "Forbidden", "You do not have enough permissions to perform this action.")
        try:
            payload = json.loads(body) if body else None
        except ValueError as exc:
            return self._problem(400, "Invalid Parameters", str(exc))
        answer = RestApi(fake).route(method, [urllib.parse.unquote(p) for p in path.split("/")[2:]], query, payload)
        if answer is None:  # trc::ResourceEvent::NotFound -> a real 404 problem document
            return self._problem(404, "Not Found", "The requested resource does not exist on this server.")
        if isinstance(answer, BadParameters):  # trc::ResourceEvent::BadParameters -> 400
            return self._problem(400, "Invalid parameters", answer.reason)
        # Management errors ride on HTTP 200 (crates/http/src/management/mod.rs).
        return self._send(200, answer)


class JmapRegistry:
    """The x:<Object>/<method> calls of 0.16, for one authenticated caller."""

    def __init__(self, fake: FakeStalwart, login: str):
        self.fake = fake
        self.login = login

    def run(self, method_calls: list) -> dict:
        responses: list = []
        for name, args, call_id in method_calls:
            try:
                args = self._resolve(args, responses)
                if self.login in self.fake.forbidden and name.startswith("x:"):
                    perm = "sys" + name[2:].replace("/", "").title().replace("Dkimsignature", "DkimSignature")
                    raise _MethodError("forbidden", f"You do not have the {perm} permission.")
                handler = getattr(self, "m_" + name.replace("x:", "").replace("/", "_"), None)
                if handler is None:
                    raise _MethodError("unknownMethod", f"Unknown method {name}")
                responses.append([name, handler(args), call_id])
            except _MethodError as exc:
                responses.append(["error", {"type": exc.type, "description": exc.description}, call_id])
        return {"methodResponses": responses, "sessionState": "s1"}

    @staticmethod
    def _resolve(args: dict, responses: list) -> dict:
        """RFC 8620 result references: {"#ids": {"resultOf", "name", "path"}}."""
        out = {}
        for key, value in args.items():
            if not key.startswith("#"):
                out[key] = value
                continue
            source = next((r for r in responses if r[2] == value.get("resultOf")), None)
            if source is None or source[0] != value.get("name"):
                raise _MethodError("invalidResultReference", f"no result {value}")
            node = source[1]
            for part in value.get("path", "").strip("/").split("/"):
                node = node.get(part) if isinstance(node, dict) else None
            out[key[1:]] = node
        return out

    # -- x:Domain

    def m_Domain_get(self, args: dict) -> dict:
        fake, ids, props = self.fake, args.get("ids"), args.get("properties")
        ids = list(fake.domains) if ids is None else ids
        found, missing = [], []
        for domain_id in ids:
            domain = fake.domains.get(domain_id)
            if domain is None:
                missing.append(domain_id)
                continue
            item = dict(domain)
            # dnsZoneFile is computed on read, when properties is null or names it (registry/get.rs).
            if props is None or "dnsZoneFile" in props:
                item["dnsZoneFile"] = fake.zone_file(domain_id)
            if props is not None:
                item = {k: v for k, v in item.items() if k in props or k == "id"}
            found.append(item)
        return {"accountId": "d333333", "state": "1", "list": found, "notFound": missing}

    def m_Domain_query(self, args: dict) -> dict:
        wanted = (args.get("filter") or {}).get("name")
        ids = [i for i, d in self.fake.domains.items() if wanted is None or d["name"] == wanted]
        return {"accountId": "d333333", "queryState": "1", "ids": ids, "position": 0, "total": len(ids)}

    def m_Domain_set(self, args: dict) -> dict:
        fake, created, not_created = self.fake, {}, {}
        for temp_id, obj in (args.get("create") or {}).items():
            missing = [k for k in ("name", "certificateManagement", "dkimManagement", "dnsManagement") if k not in obj]
            if missing:
                not_created[temp_id] = {"type": "invalidProperties", "properties": missing}
                continue
            existing = fake.domain_id(obj["name"])
            if existing:
                not_created[temp_id] = {"type": "primaryKeyViolation", "properties": ["name"], "objectId": existing}
                continue
            automatic = obj["dkimManagement"].get("@type") == "Automatic"
            created[temp_id] = {"id": fake.add_domain(obj["name"], dkim_automatic=automatic)}
        updated = {}
        for domain_id, patch in (args.get("update") or {}).items():
            domain = fake.domains.get(domain_id)
            if domain is None:
                continue
            was_manual = domain["dkimManagement"].get("@type") != "Automatic"
            domain.update({k: v for k, v in patch.items() if k in domain and k not in ("id", "dnsZoneFile")})
            if was_manual and domain["dkimManagement"].get("@type") == "Automatic":
                fake._start_dkim_task(domain_id)
            updated[domain_id] = None
        destroyed, not_destroyed = [], {}
        for domain_id in args.get("destroy") or []:
            linked = [s["id"] for s in fake.signatures.values() if s["domainId"] == domain_id]
            if domain_id not in fake.domains:
                not_destroyed[domain_id] = {"type": "notFound"}
            elif linked:
                links = [{"object": "DkimSignature", "id": i} for i in linked]
                not_destroyed[domain_id] = {"type": "objectIsLinked", "linkedObjects": links}
            else:
                del fake.domains[domain_id]
                destroyed.append(domain_id)
        return {"accountId": "d333333", "oldState": "1", "newState": "2", "created": created,
                "notCreated": not_created, "updated": updated, "destroyed": destroyed,
                "notDestroyed": not_destroyed}  # fmt: skip

    # -- x:DkimSignature

    def m_DkimSignature_get(self, args: dict) -> dict:
        ids, props = args.get("ids"), args.get("properties")
        ids = list(self.fake.signatures) if ids is None else ids
        found = []
        for sig_id in ids:
            sig = self.fake.signatures.get(sig_id)
            if sig is None:
                continue
            item = dict(sig, privateKey={"@type": "Text", "secret": MASKED})  # secrets read back masked
            if props is not None:
                item = {k: v for k, v in item.items() if k in props or k == "id"}
            found.append(item)
        missing = [i for i in ids if i not in self.fake.signatures]
        return {"accountId": "d333333", "state": "1", "list": found, "notFound": missing}

    def m_DkimSignature_query(self, args: dict) -> dict:
        wanted = (args.get("filter") or {}).get("domainId")
        ids = [i for i, s in self.fake.signatures.items() if wanted is None or s["domainId"] == wanted]
        return {"accountId": "d333333", "queryState": "1", "ids": ids, "position": 0, "total": len(ids)}

    def m_DkimSignature_set(self, args: dict) -> dict:
        fake, created, not_created = self.fake, {}, {}
        for temp_id, obj in (args.get("create") or {}).items():
            error = self._dkim_create_error(obj)
            if error:
                not_created[temp_id] = error
                continue
            kind = DKIM1[obj["@type"]]
            sig = fake._jmap_add_signature(obj["domainId"], kind, obj["selector"], obj["privateKey"]["secret"],
                                           obj.get("stage", "active"))  # fmt: skip
            created[temp_id] = {"id": sig["id"], "publicKey": sig["publicKey"]}
        destroyed = [i for i in args.get("destroy") or [] if fake.signatures.pop(i, None)]
        return {"accountId": "d333333", "oldState": "1", "newState": "2", "created": created,
                "notCreated": not_created, "destroyed": destroyed}  # fmt: skip

    def _dkim_create_error(self, obj: dict) -> dict | None:
        if obj.get("@type") not in DKIM_TYPES:
            return {"type": "invalidProperties", "properties": ["@type"]}
        if obj["@type"] not in DKIM1:
            return {"type": "validationFailed", "description": "DKIM2 is not modelled by this fake"}
        if obj.get("domainId") not in self.fake.domains:
            return {"type": "invalidForeignKey", "properties": ["domainId"]}
        if not obj.get("selector"):
            return {"type": "invalidProperties", "properties": ["selector"], "description": "selector is required"}
        secret = (obj.get("privateKey") or {}).get("secret")
        if not isinstance(secret, str):
            # x:DkimSignature/set does not generate the key pair: the private key must be sent.
            return {"type": "invalidProperties", "properties": ["privateKey"], "description": "privateKey is required"}
        try:
            kind, _ = public_key_of(secret)
        except ValueError:
            return {"type": "invalidProperties", "properties": ["privateKey"], "description": "invalid private key"}
        if kind != DKIM1[obj["@type"]]:
            return {"type": "invalidProperties", "properties": ["privateKey"],
                    "description": f"the key is {kind}, the signature {obj['@type']}"}  # fmt: skip
        # No uniqueness index on (domain, selector): 0.16 accepts a second key under a selector in use.
        return None

    # -- x:Task, x:Account

    def m_Task_get(self, args: dict) -> dict:
        ids = args.get("ids")
        tasks = self.fake.tasks
        found = [dict(tasks[i]) for i in (list(tasks) if ids is None else ids) if i in tasks]
        return {"accountId": "d333333", "state": "1", "list": found, "notFound": []}

    def m_Account_set(self, args: dict) -> dict:
        created, not_created = {}, {}
        for temp_id, obj in (args.get("create") or {}).items():
            problem_ = None
            for credential in (obj.get("credentials") or {}).values():
                if credential.get("@type") == "Password":
                    problem_ = _password_problem(str(credential.get("secret", "")))
            if problem_:
                not_created[temp_id] = {"type": "invalidProperties", "properties": ["secret"], "description": problem_}
                continue
            account_id = self.fake._new_id()
            self.fake.accounts[account_id] = dict(obj, id=account_id)
            created[temp_id] = {"id": account_id}
        return {"accountId": "d333333", "created": created, "notCreated": not_created}

    def m_Account_get(self, args: dict) -> dict:
        found = []
        for account in self.fake.accounts.values():
            credentials = {k: dict(v, secret=MASKED) for k, v in (account.get("credentials") or {}).items()}
            found.append(dict(account, credentials=credentials))
        return {"accountId": "d333333", "state": "1", "list": found, "notFound": []}


def _password_problem(secret: str) -> str | None:
    if secret.startswith(("$", "{")):
        return None  # pre-hashed secrets skip the strength check (0.16.6)
    if len(secret) < 8:
        return "Password must be at least 8 characters long."
    # A crude stand-in for zxcvbn score >= 3: common words and single-class strings are weak.
    classes = sum(any(f(c) for c in secret) for f in (str.islower, str.isupper, str.isdigit))
    if secret.lower() in WEAK_PASSWORDS or (len(secret) < 12 and classes < 3):
        return "Password is too weak. Add another word or two."
    return None


class _MethodError(Exception):
    def __init__(self, type_: str, description: str):
        super().__init__(description)
        self.type = type_
        self.description = description


class BadParameters:
    """What a 0.15 route answers for a body serde refuses: an HTTP 400 problem, not a management error."""

    def __init__(self, reason: str):
        self.reason = reason


class RestApi:
    """The /api routes of 0.10-0.15 that spine-comms touches; None means 404."""

    def __init__(self, fake: FakeStalwart):
        self.fake = fake

    def route(self, method: str, parts: list[str], query: dict, payload):
        one = {k: v[0] for k, v in query.items()}
        head = parts[0] if parts else ""
        if head == "principal":
            return self.principal(method, parts[1:], one, payload)
        if head == "dkim" and method == "POST" and len(parts) == 1:
            return self.create_dkim(payload or {})
        if head == "dkim" and method == "GET" and len(parts) == 2:
            sig = self.fake.signatures.get(parts[1])
            return {"data": sig["public"]} if sig else None  # a missing id is a 404 problem, not notFound
        if head == "dns" and method == "GET" and len(parts) == 3 and parts[1] == "records":
            # build_dns_records does not look the domain up: an unknown domain gets records too.
            return {"data": self.fake.dns_list(parts[2])}
        if head == "settings" and method == "GET" and parts[1:] == ["group"]:
            return self.settings_group(one)
        if head == "settings" and method == "GET" and parts[1:] == ["keys"]:
            return self.settings_keys(one)
        if head == "reload" and method == "GET":
            self.fake.reloads += 1
            return {"data": {"errors": {}, "warnings": {}}}
        return None

    def principal(self, method: str, rest: list[str], one: dict, payload):
        fake = self.fake
        if method == "GET" and not rest:
            types = (one.get("types") or one.get("type") or "").split(",")
            items = [{"id": int(i[1:]), "type": "domain", "name": d["name"], "description": d["description"]}
                     for i, d in fake.domains.items()] if "domain" in types or types == [""] else []  # fmt: skip
            if one.get("filter"):
                items = [i for i in items if one["filter"] in i["name"]]
            if "count" in one:
                return {"data": {"total": len(items)}}
            page, limit = int(one.get("page") or 1), int(one.get("limit") or 0)
            shown = items if limit == 0 else items[(page - 1) * limit : page * limit]
            return {"data": {"items": shown, "total": len(items)}}
        if method == "POST" and not rest:
            payload = payload or {}
            if not payload.get("name"):
                return {"error": "fieldMissing", "field": "name"}
            if payload.get("type") == "domain":
                if fake.domain_id(payload["name"]):
                    return {"error": "fieldAlreadyExists", "field": "name", "value": payload["name"]}
                return {"data": int(fake.add_domain(payload["name"])[1:])}
            for email in payload.get("emails") or []:
                if fake.domain_id(email.split("@")[-1]) is None:
                    return {"error": "notFound", "item": email.split("@")[-1]}
            return {"data": int(fake._new_id()[1:])}
        if method == "GET" and len(rest) == 1:
            domain_id = fake.domain_id(rest[0])
            if domain_id is None:
                return {"error": "notFound", "item": rest[0]}
            return {"data": {"id": int(domain_id[1:]), "type": "domain", "name": rest[0]}}
        return None

    def create_dkim(self, payload: dict):
        """POST /api/dkim: id defaults to rsa-<domain>/ed25519-<domain>, selector to YYYYMM + r/e."""
        algorithm, domain = payload.get("algorithm"), payload.get("domain")
        # serde refuses a body that is not a DkimSignature: BadParameters, HTTP 400 (dkim.rs 104-112).
        if algorithm not in ("Rsa", "Ed25519"):
            return BadParameters(f"unknown variant {algorithm!r}, expected `Rsa` or `Ed25519`"
                                 if algorithm else "missing field `algorithm`")  # fmt: skip
        if not isinstance(domain, str):
            return BadParameters("missing field `domain`")
        kind = "rsa" if algorithm == "Rsa" else "ed25519"
        sig_id = payload.get("id") or f"{kind}-{domain}"
        if sig_id in self.fake.signatures:
            # dkim.rs 159-170: the answer echoes the EXISTING private key as `value`, on HTTP 200.
            return {"error": "fieldAlreadyExists", "field": f"signature.{sig_id}.private-key",
                    "value": self.fake.signatures[sig_id]["private-key"]}  # fmt: skip
        self.fake._rest_add_signature(domain, kind, payload.get("selector"), generate_private_pem(kind), sig_id)
        return {"data": None}

    def settings_keys(self, one: dict):
        """GET /api/settings/keys?keys=a,b&prefixes=c: the values set, by full key (settings.rs 222-256)."""
        stored = dict(self.fake.dkim_sign or {})
        out = {}
        for key in (one.get("keys") or "").split(","):
            if key and key in stored:
                out[key] = stored[key]
        for prefix in (one.get("prefixes") or "").split(","):
            if prefix:
                prefix = prefix if prefix.endswith(".") else prefix + "."
                out.update({k: v for k, v in stored.items() if k.startswith(prefix)})
        return {"data": out}

    def settings_group(self, one: dict):
        if one.get("prefix") != "signature":
            return {"data": {"total": 0, "items": []}}
        groups = [self.fake.settings_group(i) for i in self.fake.signatures]
        if one.get("filter"):
            groups = [g for g in groups if one["filter"] in g["_id"]]  # a substring match (#1270)
        page, limit = int(one.get("page") or 1), int(one.get("limit") or 0)
        shown = groups if limit == 0 else groups[(page - 1) * limit : page * limit]
        return {"data": {"total": len(groups), "items": shown}}
