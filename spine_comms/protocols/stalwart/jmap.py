"""Stalwart 0.16 and later: the JMAP registry (`x:Domain`, `x:DkimSignature` ...) at the session's apiUrl.

Facts this follows (reference/stalwart.md 1A): /.well-known/jmap answers 307 with an empty
body; the session names apiUrl; POST needs Content-Type application/json; registry methods
use `urn:stalwart:jmap` and default accountId to the caller; method errors come back as
["error", {...}] inside a 200; `x:Domain.dnsZoneFile` is BIND text computed on read.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

from spine_comms.protocols.stalwart.admin import StalwartAdmin
from spine_comms.protocols.stalwart.model import DkimKey, DnsRecord, StalwartError, algorithm_name
from spine_comms.protocols.stalwart.transport import Transport
from spine_comms.protocols.stalwart.zone import ZoneSyntaxError, parse_zone_text

USING = ["urn:ietf:params:jmap:core", "urn:stalwart:jmap"]
# DKIM1 only: DKIM2 (0.16.12+) signatures are a different protocol with their own records.
TYPE_TO_ALGORITHM = {"Dkim1RsaSha256": "rsa-sha256", "Dkim1Ed25519Sha256": "ed25519-sha256"}
ALGORITHM_TO_TYPE = {v: k for k, v in TYPE_TO_ALGORITHM.items()}


def open_session(transport: Transport) -> dict:
    """The authenticated JMAP session, found the way clients must: /.well-known/jmap, then its 307.

    The 307 names an absolute path (`/jmap/session`, crates/http/src/request.rs): behind a reverse proxy
    that serves Stalwart under a path prefix, following it as a browser would loses the prefix. So the
    redirect is followed here, inside our own base URL, never to another origin."""
    path = "/.well-known/jmap"
    for _hop in range(3):
        response = transport.request("GET", path, allow_redirects=False)
        if response.status_code not in (301, 302, 303, 307, 308):
            break
        path = _within_base(transport, response.headers.get("Location") or "")
    transport.refuse(response)
    if response.status_code != 200:
        raise StalwartError("api", f"{transport.url}/.well-known/jmap: HTTP {response.status_code}",
                            status=response.status_code)  # fmt: skip
    session = transport.json(response, "the JMAP session")
    if not isinstance(session, dict) or not session.get("apiUrl"):
        raise StalwartError("api", f"{transport.url}: the JMAP session has no apiUrl")
    if not session.get("accounts"):
        # An anonymous session lists capabilities but no accounts: our credentials did not arrive.
        raise StalwartError("auth", f"{transport.url}: the JMAP session lists no account for {transport.account}")
    return session


def _within_base(transport: Transport, location: str) -> str:
    """The path under our base for a redirect's Location: an absolute URL or path keeps only its path."""
    parts = urllib.parse.urlsplit(location)
    if not parts.path.startswith("/"):
        raise StalwartError("api", f"{transport.url}/.well-known/jmap redirects to {location!r}, not a path")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    prefix = transport.prefix
    return path[len(prefix) :] if prefix and path.startswith(prefix + "/") else path


class JmapAdmin(StalwartAdmin):
    form = "jmap"
    version = "0.16 or later"

    def __init__(self, transport: Transport, session: dict):
        super().__init__(transport)
        self.session_user = session.get("username")
        # The apiUrl names the server's public URL, which may not be how we reach it (an address,
        # a tunnel): keep our own base and take only the path.
        path = urllib.parse.urlsplit(session["apiUrl"]).path or "/jmap/"
        prefix = transport.prefix
        self.api_path = path[len(prefix) :] if prefix and path.startswith(prefix) else path
        self._call_ids = 0

    def call(self, *calls: tuple[str, dict]) -> list[dict]:
        """Send method calls in one request; return each call's arguments, or raise on any error."""
        method_calls = []
        for name, args in calls:
            self._call_ids += 1
            method_calls.append([name, args, f"c{self._call_ids}"])
        response = self.transport.request(
            "POST", self.api_path, json={"using": USING, "methodCalls": method_calls},
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        self.transport.refuse(response)
        body = self.transport.json(response, "a JMAP response")
        if response.status_code != 200:
            problem = body if isinstance(body, dict) else {}
            detail = problem.get("detail") or problem.get("title") or ""
            raise StalwartError("api", f"JMAP request refused: {problem.get('type', '?')} {detail}".strip(),
                                status=response.status_code, evidence=problem)  # fmt: skip
        out = []
        for (name, _args, call_id), (reply_name, reply, reply_id) in zip(
            method_calls, body.get("methodResponses", []), strict=False
        ):
            if reply_name == "error":
                kind = "auth" if reply.get("type") == "forbidden" else "api"
                if reply.get("type") == "unknownMethod":
                    kind = "unsupported"
                raise StalwartError(kind, f"{name}: {reply.get('type')}: {reply.get('description', '')}".rstrip(": "),
                                    evidence=reply)  # fmt: skip
            if reply_id != call_id:
                raise StalwartError("api", f"{name}: the reply is for call {reply_id}, not {call_id}")
            out.append(reply)
        if len(out) != len(method_calls):
            raise StalwartError("api", f"{len(method_calls)} JMAP calls, {len(out)} answers")
        return out

    def _query_get(self, obj: str, query: dict, properties: list[str] | None) -> list[dict]:
        query_id = f"c{self._call_ids + 1}"
        get = {"#ids": {"resultOf": query_id, "name": f"x:{obj}/query", "path": "/ids"}}
        if properties is not None:
            get["properties"] = properties
        _, got = self.call((f"x:{obj}/query", query), (f"x:{obj}/get", get))
        return got.get("list", [])

    def _domains(self) -> dict[str, str]:
        """name -> id of every domain."""
        return {d["name"].lower(): d["id"] for d in self._query_get("Domain", {}, ["id", "name"])}

    def _domain_id(self, domain: str) -> str:
        found = self._domains().get(domain.rstrip(".").lower())
        if found is None:
            raise StalwartError("not_found", f"{domain} is not a domain on {self.url}")
        return found

    def domains(self) -> list[str]:
        return sorted(self._domains())

    def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        names = {v: k for k, v in self._domains().items()}
        query: dict = {}
        if domain is not None:
            wanted = domain.rstrip(".").lower()
            ids = [i for i, n in names.items() if n == wanted]
            if not ids:
                raise StalwartError("not_found", f"{domain} is not a domain on {self.url}")
            query = {"filter": {"domainId": ids[0]}}
        props = ["id", "@type", "domainId", "selector", "publicKey", "stage"]
        keys = []
        for item in self._query_get("DkimSignature", query, props):
            algorithm = TYPE_TO_ALGORITHM.get(item.get("@type", ""))
            owner = names.get(item.get("domainId"))
            if algorithm is None or owner is None:
                continue
            if domain is not None and owner != domain.rstrip(".").lower():
                continue
            keys.append(DkimKey(owner, item.get("selector", ""), algorithm, item.get("publicKey") or "",
                                item.get("stage") or "active", item.get("id")))  # fmt: skip
        return sorted(keys, key=lambda k: (k.domain, k.algorithm, k.selector))

    def dns_records(self, domain: str) -> list[DnsRecord]:
        domain_id = self._domain_id(domain)
        (got,) = self.call(("x:Domain/get", {"ids": [domain_id], "properties": ["id", "name", "dnsZoneFile"]}))
        items = got.get("list", [])
        text = items[0].get("dnsZoneFile") if items else None
        if not isinstance(text, str):
            raise StalwartError("api", f"x:Domain/get gave no dnsZoneFile for {domain}")
        try:
            records = parse_zone_text(text, origin=domain.rstrip(".").lower())
        except ZoneSyntaxError as exc:
            raise StalwartError("api", f"the dnsZoneFile of {domain} does not parse: {exc}") from None
        # The zone lists every signature's record, retired ones too (records.rs has no stage filter):
        # a selector whose every key is retired is nothing to publish.
        keys = self.dkim_keys(domain)
        retired = {f"{k.selector}._domainkey.{k.domain}" for k in keys if k.stage == "retired"}
        retired -= {f"{k.selector}._domainkey.{k.domain}" for k in keys if k.stage != "retired"}
        return [r for r in records if not (r.type == "TXT" and r.name in retired)]

    def create_dkim(self, domain: str, algorithm: str, selector: str | None = None) -> None:
        """Create a DkimSignature. 0.16 does not generate the key pair for x:DkimSignature/set,
        so the private key is made here and sent once; the server derives publicKey itself."""
        algorithm = algorithm_name(algorithm)
        kind = ALGORITHM_TO_TYPE[algorithm]
        domain_id = self._domain_id(domain)
        selector = selector or default_selector(algorithm)
        # 0.16 has no uniqueness index on (domain, selector): a second key under a selector in use is
        # accepted, and DNS can publish only one of them, so the other never verifies.
        taken = [k for k in self.dkim_keys(domain) if k.selector == selector]
        if taken:
            raise StalwartError("api", f"selector {selector} of {domain} already holds a {taken[0].algorithm} key "
                                f"({taken[0].stage}); choose another selector")  # fmt: skip
        create = {
            "@type": kind,
            "domainId": domain_id,
            "selector": selector,
            "privateKey": {"@type": "Text", "secret": _private_key_pem(algorithm)},
        }
        (got,) = self.call(("x:DkimSignature/set", {"create": {"k": create}}))
        refused = (got.get("notCreated") or {}).get("k")
        if refused or "k" not in (got.get("created") or {}):
            refused = refused or {}
            props = ", ".join(refused.get("properties") or [])
            raise StalwartError(
                "api", f"x:DkimSignature/set refused {selector} for {domain}: {refused.get('type', '?')} "
                f"{refused.get('description', '')} {props}".strip(), evidence=refused,
            )  # fmt: skip


def default_selector(algorithm: str, now: datetime | None = None) -> str:
    """0.16's own automatic template, v{version}-{algorithm}-{date-%Y%m%d}."""
    now = now or datetime.now(UTC)
    return f"v1-{algorithm.split('-')[0]}-{now:%Y%m%d}"


def _private_key_pem(algorithm: str) -> str:
    # As Stalwart generates them itself: RSA-2048 in PKCS#1, Ed25519 in PKCS#8.
    from spine_comms.mail.dkim_record import generate_key

    return generate_key("rsa" if algorithm == "rsa-sha256" else "ed25519")[0].decode()
