"""RFC 6764 discovery and collection listing, path-agnostic.

Nothing here knows a server's layout (Radicale's /<user>/, Stalwart's /dav/cal/<user>/):
the well-known redirect, current-user-principal and the home set say where things are.
"""

from __future__ import annotations

import time
import urllib.parse

from spine_comms.protocols.dav.client import DavClient
from spine_comms.protocols.dav.model import Collection, DavError, Discovery, DiscoveryStep
from spine_comms.protocols.dav.xmlwire import APPLE_ICAL, CALDAV, CALSERVER, CARDDAV, DAV

KINDS = ("caldav", "carddav")
HOME_SET = {"caldav": f"{{{CALDAV}}}calendar-home-set", "carddav": f"{{{CARDDAV}}}addressbook-home-set"}
PRINCIPAL = f"{{{DAV}}}current-user-principal"
_MAX_HOPS = 5


def _first_href(value) -> str | None:
    if isinstance(value, list):
        return next((v for v in value if isinstance(v, str) and not v.startswith("{")), None)
    return None


def discover(client: DavClient, kind: str, *, domain: str | None = None, resolve_srv=None) -> Discovery:
    """Walk /.well-known, SRV/TXT (when a domain and resolver are given), the principal and its home set.

    Each step is recorded with its URL, status and latency. Auth failures raise DavError('auth');
    other HTTP outcomes of the well-known step are recorded and discovery goes on from base_url.
    """
    if kind not in KINDS:
        raise DavError("protocol", f"discovery kind must be caldav or carddav, not {kind!r}")
    found = Discovery(kind)
    start = _well_known(client, kind, found)
    if domain and resolve_srv is not None:
        _srv(kind, domain, resolve_srv, found)
    found.principal = _principal(client, start, found)
    if found.principal is None and start != client.base_path:
        found.principal = _principal(client, client.base_path, found)
    found.home_set = _home_set(client, kind, found.principal or start, found)
    return found


def _well_known(client: DavClient, kind: str, found: Discovery) -> str:
    """The path discovery continues from: a same-origin redirect target, else base_url's path."""
    path = f"/.well-known/{kind}"
    for _hop in range(_MAX_HOPS):
        response = client.request("GET", path, ok=None)
        if response.status == 401:
            raise client.error_for("GET", response)
        location = response.headers.get("location", "")
        if response.status not in (301, 302, 303, 307, 308) or not location:
            detail = f"HTTP {response.status}, no redirect: continuing from {client.base_path}"
            found.steps.append(DiscoveryStep("well-known", response.url, response.status, response.elapsed_ms, detail))
            return client.base_path
        target = urllib.parse.urljoin(response.url, location)
        if not client.same_origin(target):
            detail = f"another host: {location[:200]} (not followed); continuing from {client.base_path}"
            found.steps.append(DiscoveryStep("well-known", response.url, response.status, response.elapsed_ms, detail))
            return client.base_path
        next_path = client.path_of(target)
        found.steps.append(DiscoveryStep("well-known", response.url, response.status, response.elapsed_ms,
                                         f"redirect to {next_path}"))  # fmt: skip
        if not next_path.startswith("/.well-known/"):
            return next_path
        path = next_path
    found.steps.append(DiscoveryStep("well-known", client.url_of(path), None, 0, f"more than {_MAX_HOPS} redirects"))
    return client.base_path


def _srv(kind: str, domain: str, resolve_srv, found: Discovery) -> None:
    """_caldavs._tcp before _caldav._tcp (RFC 6764 3: TLS first), each with its TXT path."""
    for service in (f"_{kind}s._tcp.{domain}", f"_{kind}._tcp.{domain}"):
        answer = resolve_srv(service, "SRV")
        if not answer.ok:
            found.steps.append(DiscoveryStep("srv", service, None, answer.elapsed_ms,
                                             answer.error or answer.outcome))  # fmt: skip
            continue
        txt = resolve_srv(service, "TXT")
        path = next((r.split("=", 1)[1] for r in txt.records if r.startswith("path=")), "/") if txt.ok else "/"
        targets = []
        for record in sorted(answer.records, key=lambda r: [int(x) if x.isdigit() else 0 for x in r.split()[:2]]):
            fields = record.split()
            if len(fields) == 4 and fields[3] not in (".", ""):
                targets.append(f"{fields[3].rstrip('.')}:{fields[2]} {path}")
        found.srv.extend(targets)
        detail = ", ".join(targets) or "the service is declared unavailable (target '.')"
        found.steps.append(DiscoveryStep("srv", service, None, answer.elapsed_ms + txt.elapsed_ms, detail))


def _propfind_step(client: DavClient, name: str, path: str, prop: str, found: Discovery) -> str | None:
    started = time.monotonic()
    try:
        response, resources = client.propfind_response(path, [prop], 0)
    except DavError as exc:
        if exc.kind in ("auth", "unreachable", "timeout"):
            raise
        found.steps.append(DiscoveryStep(name, exc.url or client.url_of(path), exc.status,
                                         int((time.monotonic() - started) * 1000), exc.message))  # fmt: skip
        return None
    href = next((_first_href(r.props.get(prop)) for r in resources if _first_href(r.props.get(prop))), None)
    detail = f"{prop.split('}')[1]}: {href}" if href else f"no {prop.split('}')[1]} in the answer"
    found.steps.append(DiscoveryStep(name, response.url, response.status, response.elapsed_ms, detail))
    return href


def _principal(client: DavClient, path: str, found: Discovery) -> str | None:
    return _propfind_step(client, "principal", path, PRINCIPAL, found)


def _home_set(client: DavClient, kind: str, principal: str, found: Discovery) -> str | None:
    return _propfind_step(client, "home-set", principal, HOME_SET[kind], found)


COLLECTION_PROPS = [
    f"{{{DAV}}}resourcetype",
    f"{{{DAV}}}displayname",
    f"{{{DAV}}}sync-token",
    f"{{{DAV}}}supported-report-set",
    f"{{{CALSERVER}}}getctag",
]
KIND_PROPS = {
    "calendar": [f"{{{CALDAV}}}supported-calendar-component-set", f"{{{APPLE_ICAL}}}calendar-color"],
    "addressbook": [f"{{{CARDDAV}}}supported-address-data"],
}
RESOURCE_KIND = {f"{{{CALDAV}}}calendar": "calendar", f"{{{CARDDAV}}}addressbook": "addressbook"}


def list_collections(client: DavClient, home_set: str, kind: str) -> list[Collection]:
    """The calendars (kind 'calendar') or address books ('addressbook') directly under the home set."""
    if kind not in KIND_PROPS:
        raise DavError("protocol", f"collection kind must be calendar or addressbook, not {kind!r}")
    home = client.path_of(home_set).rstrip("/")
    out = []
    for resource in client.propfind(home_set, COLLECTION_PROPS + KIND_PROPS[kind], 1):
        if resource.href.rstrip("/") == home or resource.status >= 300:
            continue
        types = resource.props.get(f"{{{DAV}}}resourcetype")
        kinds = [RESOURCE_KIND[t] for t in types if t in RESOURCE_KIND] if isinstance(types, list) else []
        if kind not in kinds:
            continue
        components = resource.props.get(f"{{{CALDAV}}}supported-calendar-component-set") if kind == "calendar" \
            else resource.props.get(f"{{{CARDDAV}}}supported-address-data")  # fmt: skip
        reports = resource.props.get(f"{{{DAV}}}supported-report-set")
        token = _text(resource.props.get(f"{{{DAV}}}sync-token"))
        out.append(Collection(
            href=resource.href,
            display_name=_text(resource.props.get(f"{{{DAV}}}displayname")),
            kinds=kinds,
            components=list(components) if isinstance(components, list) else [],
            color=_text(resource.props.get(f"{{{APPLE_ICAL}}}calendar-color")),
            ctag=_text(resource.props.get(f"{{{CALSERVER}}}getctag")),
            sync_token=token,
            supports_sync=bool(token) or (isinstance(reports, list) and f"{{{DAV}}}sync-collection" in reports),
        ))  # fmt: skip
    return out


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def child_href(collection: str, name: str) -> str:
    """`collection`/`name`, percent-encoded; a name that could climb or nest is refused."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or ".." in name or any(ord(c) < 32 for c in name):
        raise DavError("protocol", f"refusing the resource name {name[:80]!r}: it must not contain '/', '..' "
                                   "or control characters")  # fmt: skip
    return collection.rstrip("/") + "/" + urllib.parse.quote(name, safe="@:+,;=-._~")
