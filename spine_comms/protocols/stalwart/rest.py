"""Stalwart 0.10 to 0.15: the REST API under /api (reference/stalwart.md 1B).

Its odd corners: a success is {"data": ...}; a management error is HTTP 200 with
{"error": ...}; auth and permission errors are real statuses with a problem document;
DKIM keys have no list endpoint (the web admin reads the settings group `signature`);
a signature id must be rsa-<domain> / ed25519-<domain> or mail goes out unsigned.
"""

from __future__ import annotations

import urllib.parse

from spine_comms.protocols.stalwart.admin import StalwartAdmin
from spine_comms.protocols.stalwart.model import DkimKey, DnsRecord, StalwartError, algorithm_name
from spine_comms.protocols.stalwart.signing_rule import KEY as SIGN_KEY
from spine_comms.protocols.stalwart.signing_rule import SigningRule
from spine_comms.protocols.stalwart.zone import from_rest_records

PAGE = 100
REST_ALGORITHM = {"rsa-sha256": "Rsa", "ed25519-sha256": "Ed25519"}


class RestAdmin(StalwartAdmin):
    form = "rest"
    version = "0.10 to 0.15"

    def _send(self, method: str, path: str, **kwargs):
        response = self.transport.request(method, path, **kwargs)
        self.transport.refuse(response)
        body = self.transport.json(response, f"{method} {path}")
        if response.status_code != 200:
            problem = body if isinstance(body, dict) else {}
            kind = "not_found" if response.status_code == 404 else "api"
            detail = problem.get("detail") or problem.get("title") or ""
            raise StalwartError(kind, f"{method} {path}: HTTP {response.status_code} {detail}".strip(),
                                status=response.status_code, evidence=problem)  # fmt: skip
        if isinstance(body, dict) and "error" in body:
            raise self._management_error(method, path, body)
        if not isinstance(body, dict) or "data" not in body:
            raise StalwartError("api", f"{method} {path}: no 'data' in the answer", evidence=body)
        return body["data"]

    @staticmethod
    def _management_error(method: str, path: str, body: dict) -> StalwartError:
        error = body.get("error")
        # fieldAlreadyExists on POST /api/dkim echoes the existing private key as `value` (dkim.rs
        # 159-170): a value of a secret-bearing field never leaves this function.
        body = {k: ("[withheld: a secret]" if k == "value" and _secret_field(body) else v) for k, v in body.items()}
        detail = " ".join(
            f"{k}={body[k]}" for k in ("item", "field", "value", "details", "reason") if body.get(k) is not None
        )
        kind = "not_found" if error == "notFound" else "unsupported" if error == "unsupported" else "api"
        return StalwartError(kind, f"{method} {path}: {error} {detail}".strip(), evidence=body)

    def domains(self) -> list[str]:
        names, page = [], 1
        while True:
            data = self._send("GET", "/api/principal", params={"types": "domain", "page": page, "limit": PAGE})
            items = data.get("items") or []
            names.extend(str(i.get("name", "")).lower() for i in items)
            if not items or len(names) >= int(data.get("total") or 0):
                return sorted(n for n in names if n)
            page += 1

    def _signatures(self) -> list[dict]:
        # No `filter`: it is a substring match (rsa-example.com.au matches example.com).
        out, page = [], 1
        while True:
            params = {"prefix": "signature", "suffix": "algorithm", "page": page, "limit": PAGE}
            data = self._send("GET", "/api/settings/group", params=params)
            items = data.get("items") or []
            # The group lists every field of a signature, `private-key` in clear: drop it at once.
            out.extend({k: v for k, v in item.items() if not _secret_key(k)} for item in items)
            if not items or len(out) >= int(data.get("total") or 0):
                return out
            page += 1

    def signing_rule(self) -> SigningRule:
        """`auth.dkim.sign` as the server holds it (local file and database alike); {} means the default."""
        data = self._send("GET", "/api/settings/keys", params={"keys": SIGN_KEY, "prefixes": SIGN_KEY})
        if not isinstance(data, dict):
            raise StalwartError("api", f"/api/settings/keys: expected an object, got {type(data).__name__}")
        return SigningRule({str(k): str(v) for k, v in data.items() if str(k).startswith(SIGN_KEY)})

    def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        wanted = domain.rstrip(".").lower() if domain is not None else None
        if wanted is not None and wanted not in self.domains():
            raise StalwartError("not_found", f"{domain} is not a domain on {self.url}")
        keys = []
        rule = None
        for item in self._signatures():
            owner = str(item.get("domain", "")).lower()
            algorithm = str(item.get("algorithm", ""))
            if wanted is not None and owner != wanted:
                continue
            if algorithm not in REST_ALGORITHM:
                continue  # rsa-sha1 and the like: not keys spine-comms would publish
            signature_id = str(item.get("_id", ""))
            public = self._send("GET", f"/api/dkim/{urllib.parse.quote(signature_id, safe='')}")
            # 0.15 has no key stages: a configured signature signs only when auth.dkim.sign names its id.
            rule = rule or self.signing_rule()
            stage, note = _stage(rule, owner, signature_id)
            keys.append(DkimKey(owner, str(item.get("selector", "")), algorithm, str(public or ""), stage,
                                signature_id, note))  # fmt: skip
        return sorted(keys, key=lambda k: (k.domain, k.algorithm, k.selector))

    def dns_records(self, domain: str) -> list[DnsRecord]:
        name = domain.rstrip(".").lower()
        # The server builds records for any name it is given, its own or not: ask only about its domains.
        if name not in self.domains():
            raise StalwartError("not_found", f"{domain} is not a domain on {self.url}")
        data = self._send("GET", f"/api/dns/records/{urllib.parse.quote(name, safe='')}")
        if not isinstance(data, list):
            raise StalwartError("api", f"/api/dns/records/{name}: expected a list of records", evidence=data)
        return from_rest_records(data)

    def create_dkim(self, domain: str, algorithm: str, selector: str | None = None) -> None:
        """POST /api/dkim with the default id (rsa-<domain> / ed25519-<domain>), the only one that signs."""
        algorithm = algorithm_name(algorithm)
        name = domain.rstrip(".").lower()
        signature_id = f"{algorithm.split('-')[0]}-{name}"
        stage, note = _stage(self.signing_rule(), name, signature_id)
        if stage == "unused":
            raise StalwartError("api", f"a key under {signature_id} would not sign either: {note}")
        body = {"id": None, "algorithm": REST_ALGORITHM[algorithm], "domain": name, "selector": selector}
        self._send("POST", "/api/dkim", json=body)
        # 0.15 reads signatures into memory at reload; without one the new key does not sign yet.
        self._send("GET", "/api/reload")


def _stage(rule: SigningRule, domain: str, signature_id: str) -> tuple[str, str]:
    """(stage, note) of a 0.15 signature under `signature_id` for mail from `domain`."""
    named = rule.signature_ids(domain)
    if signature_id in named.ids and named.certain:
        return "active", ""
    if signature_id in named.ids:
        return "undetermined", f"{SIGN_KEY} may name {signature_id}, but {named.why}: {rule.text()}"
    if named.certain:
        shown = ", ".join(sorted(named.ids)) or "no signature"
        return "unused", f"{SIGN_KEY} signs mail from {domain} with {shown}, never {signature_id}: {rule.text()}"
    return "undetermined", f"{SIGN_KEY} does not plainly name {signature_id} ({named.why}): {rule.text()}"


def _secret_key(name: str) -> bool:
    return "private-key" in name.lower() or "secret" in name.lower()


def _secret_field(body: dict) -> bool:
    value = str(body.get("value") or "")
    return _secret_key(str(body.get("field") or "")) or "PRIVATE KEY-----" in value
