"""Stalwart's management API, in both its forms, behind one adapter.

    admin = connect("https://mail.example.com", username="admin", secret=...)
    admin.form        # "jmap" (0.16 and later) or "rest" (0.10 to 0.15)
    admin.dkim_keys("example.com")

The form is found by probing, as reference/stalwart.md section 0 says: GET /api/account
answers 200 only on 0.16+, GET /api/principal answers {"data": ...} only on 0.15 and earlier.
"""

from __future__ import annotations

from spine_comms.protocols.stalwart.admin import StalwartAdmin
from spine_comms.protocols.stalwart.model import DkimKey, DnsRecord, StalwartError, same_public_key
from spine_comms.protocols.stalwart.transport import Transport

__all__ = ["DkimKey", "DnsRecord", "StalwartAdmin", "StalwartError", "connect", "health", "same_public_key"]


def connect(
    url: str,
    *,
    username: str | None,
    secret: str | None,
    ca_file: str | None = None,
    server_name: str | None = None,
    timeout: float = 10.0,
) -> StalwartAdmin:
    """Reach the server, authenticate, and return the backend for the API form it speaks."""
    transport = Transport(
        url, username=username, secret=secret, ca_file=ca_file, server_name=server_name, timeout=timeout
    )
    try:
        return _probe(transport)
    except BaseException:
        transport.close()
        raise


def health(url: str, *, ca_file: str | None = None, server_name: str | None = None, timeout: float = 10.0) -> dict:
    """/healthz/live and /healthz/ready without credentials: whether the server is up before we log in."""
    transport = Transport(url, username=None, secret=None, ca_file=ca_file, server_name=server_name, timeout=timeout)
    try:
        return StalwartAdmin(transport).health()
    finally:
        transport.close()


def _probe(transport: Transport) -> StalwartAdmin:
    from spine_comms.protocols.stalwart.jmap import JmapAdmin, open_session
    from spine_comms.protocols.stalwart.rest import RestAdmin

    account = transport.request("GET", "/api/account")
    transport.refuse(account)
    if account.status_code == 200:
        return JmapAdmin(transport, open_session(transport))
    legacy = transport.request("GET", "/api/principal", params={"types": "domain", "page": 1, "limit": 1})
    transport.refuse(legacy)
    if legacy.status_code == 200:
        try:
            body = legacy.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("data" in body or "error" in body):
            return RestAdmin(transport)
    raise StalwartError(
        "unsupported",
        f"{transport.url} is not a Stalwart management API (GET /api/account: HTTP {account.status_code}, "
        f"GET /api/principal: HTTP {legacy.status_code})",
    )
