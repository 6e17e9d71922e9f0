"""StalwartAdmin: what spine-comms asks of Stalwart's management API, whatever its form.

Two backends implement it: JmapAdmin (0.16 and later, the JMAP registry at /jmap/) and
RestAdmin (0.10 to 0.15, REST under /api). `connect()` in this package picks one by probing.
"""

from __future__ import annotations

from spine_comms.protocols.stalwart.model import DkimKey, DnsRecord
from spine_comms.protocols.stalwart.transport import Transport


class StalwartAdmin:
    form: str = ""  # "jmap" | "rest"
    # Stalwart does not publish its exact version to clients; this is the release line the form implies.
    version: str | None = None

    def __init__(self, transport: Transport):
        self.transport = transport

    @property
    def url(self) -> str:
        return self.transport.url

    def health(self) -> dict:
        """/healthz/live and /healthz/ready (no auth, the same in every version): 200 means yes."""
        out = {}
        for probe in ("live", "ready"):
            response = self.transport.request("GET", f"/healthz/{probe}", auth=False)
            out[probe] = response.status_code == 200
        return out

    def domains(self) -> list[str]:
        raise NotImplementedError

    def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        raise NotImplementedError

    def dns_records(self, domain: str) -> list[DnsRecord]:
        raise NotImplementedError

    def create_dkim(self, domain: str, algorithm: str, selector: str | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> StalwartAdmin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
