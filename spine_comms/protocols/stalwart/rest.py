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
            out.extend(items)
            if not items or len(out) >= int(data.get("total") or 0):
                return out
            page += 1

    def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        wanted = domain.rstrip(".").lower() if domain is not None else None
        if wanted is not None and wanted not in self.domains():
            raise StalwartError("not_found", f"{domain} is not a domain on {self.url}")
        keys = []
        for item in self._signatures():
            owner = str(item.get("domain", "")).lower()
            algorithm = str(item.get("algorithm", ""))
            if wanted is not None and owner != wanted:
                continue
            if algorithm not in REST_ALGORITHM:
                continue  # rsa-sha1 and the like: not keys spine-comms would publish
            signature_id = str(item.get("_id", ""))
            public = self._send("GET", f"/api/dkim/{urllib.parse.quote(signature_id, safe='')}")
            # 0.15 has no key stages: a configured signature is used when its id matches the rule.
            keys.append(DkimKey(owner, str(item.get("selector", "")), algorithm, str(public or ""), "active"))
        return sorted(keys, key=lambda k: (k.domain, k.algorithm, k.selector))

    def dns_records(self, domain: str) -> list[DnsRecord]:
        name = domain.rstrip(".").lower()
        data = self._send("GET", f"/api/dns/records/{urllib.parse.quote(name, safe='')}")
        if not isinstance(data, list):
            raise StalwartError("api", f"/api/dns/records/{name}: expected a list of records", evidence=data)
        return from_rest_records(data)

    def create_dkim(self, domain: str, algorithm: str, selector: str | None = None) -> None:
        """POST /api/dkim with the default id (rsa-<domain> / ed25519-<domain>), the only one that signs."""
        algorithm = algorithm_name(algorithm)
        name = domain.rstrip(".").lower()
        body = {"id": None, "algorithm": REST_ALGORITHM[algorithm], "domain": name, "selector": selector}
        self._send("POST", "/api/dkim", json=body)
        # 0.15 reads signatures into memory at reload; without one the new key does not sign yet.
        self._send("GET", "/api/reload")
