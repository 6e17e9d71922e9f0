"""DAV XML on the wire: a parser that refuses DTDs and entities, multistatus reading, request bodies.

Server XML is untrusted. DAV never needs a DOCTYPE, so any DTD is refused outright:
that closes entity expansion ("billion laughs") and external entities in one rule,
whatever the expat version. Parsing is the stdlib's expat feeding ElementTree's
TreeBuilder, which keeps lxml off the import path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree.ElementTree import Element, TreeBuilder
from xml.sax.saxutils import escape, quoteattr

from spine_comms.protocols.dav.model import DavError, DavResource

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CALSERVER = "http://calendarserver.org/ns/"
APPLE_ICAL = "http://apple.com/ns/ical/"

# XML 1.0 forbids C0 controls other than tab, LF and CR, raw or as character references.
_XML_FORBIDDEN = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f]"
    rb"|&#(?:0*(?:[0-8]|1[124-9]|2\d|3[01])|[xX]0*(?:[0-8]|[bcefBCEF]|1[0-9a-fA-F]));"
)
_PREFIXES = {DAV: "d", CALDAV: "c", CARDDAV: "card", CALSERVER: "cs", APPLE_ICAL: "ical"}
_MAX_DEPTH = 64  # DAV answers nest a handful of levels; anything deeper is refused, not recursed into


class _Refused(Exception):
    pass


def _clark(name: str) -> str:
    # expat with namespace_separator="}" gives "DAV:}href"; unqualified names have no separator.
    return "{" + name if "}" in name else name


def without_forbidden_characters(data: bytes) -> bytes:
    """Servers copy control characters from iCalendar/vCard text into calendar-data and
    address-data verbatim (Radicale and Xandikos both do), which no XML parser accepts.
    Removing them, raw or as character references, cannot change a well-formed document.
    Only byte-wise for UTF-8 and its ASCII-compatible kin: a UTF-16/32 document (a BOM, or NULs
    in its first characters) is left as it is, since its NUL bytes are part of its characters."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        return data
    return _XML_FORBIDDEN.sub(b"", data)


def parse_xml(data: bytes) -> Element:
    """The document's root element; DavError('protocol') for anything malformed or with a DTD.
    Characters XML 1.0 forbids are removed first (see without_forbidden_characters)."""
    import xml.parsers.expat as expat

    data = without_forbidden_characters(data)

    builder = TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    depth = [0]

    def start(tag, attrs):
        depth[0] += 1
        if depth[0] > _MAX_DEPTH:
            raise _Refused(f"XML nested deeper than {_MAX_DEPTH} levels")
        builder.start(_clark(tag), {_clark(k): v for k, v in attrs.items()})

    def end(tag):
        depth[0] -= 1
        builder.end(_clark(tag))

    def refuse_dtd(*_args):
        raise _Refused("XML with a DOCTYPE (DTDs and entities are refused)")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    try:
        parser.Parse(data, True)
        root = builder.close()
    except _Refused as exc:
        raise DavError("protocol", f"refused the server's XML: {exc}") from None
    except (expat.ExpatError, ValueError, LookupError, UnicodeError, AssertionError) as exc:
        # AssertionError: TreeBuilder.close() on a document that never opened an element.
        raise DavError("protocol", f"the server's XML does not parse: {exc or 'empty document'}") from None
    if root is None:
        raise DavError("protocol", "the server's XML is empty")
    return root


def status_code(text: str | None) -> int | None:
    """200 from 'HTTP/1.1 200 OK'."""
    match = re.match(r"\s*HTTP/\d(?:\.\d)?\s+(\d{3})", text or "")
    return int(match.group(1)) if match else None


def _texts(elements) -> list[str]:
    return [(e.text or "").strip() for e in elements]


def prop_value(element: Element, localize: Callable[[str], str]) -> object:
    """A property's value: text, or a list of hrefs / component names / report names / child names."""
    children = list(element)
    tag = element.tag
    if not children:
        return (element.text or "").strip()
    if tag == f"{{{CALDAV}}}supported-calendar-component-set":
        return [c.get("name", "") for c in children if c.tag == f"{{{CALDAV}}}comp"]
    if tag == f"{{{CARDDAV}}}supported-address-data":
        return [f"{c.get('content-type', 'text/vcard')};version={c.get('version', '3.0')}" for c in children]
    if tag == f"{{{DAV}}}supported-report-set":
        names = []
        for supported in children:
            for report in supported.iter(f"{{{DAV}}}report"):
                names.extend(child.tag for child in report)
        return names
    if all(c.tag == f"{{{DAV}}}href" for c in children):
        return [localize(h) for h in _texts(children) if h]
    return [c.tag for c in children]


def parse_multistatus(body: bytes, localize: Callable[[str], str]) -> tuple[list[DavResource], str | None]:
    """The responses of a 207 and the top-level sync-token (RFC 6578), if any."""
    root = parse_xml(body)
    if root.tag != f"{{{DAV}}}multistatus":
        raise DavError("protocol", f"expected a DAV:multistatus, got {root.tag[:80]}")
    resources: list[DavResource] = []
    for response in root.findall(f"{{{DAV}}}response"):
        hrefs = [h for h in _texts(response.findall(f"{{{DAV}}}href")) if h]
        if not hrefs:
            continue
        top_status = status_code(response.findtext(f"{{{DAV}}}status"))
        props: dict[str, object] = {}
        codes: list[int] = []
        for propstat in response.findall(f"{{{DAV}}}propstat"):
            code = status_code(propstat.findtext(f"{{{DAV}}}status")) or 0
            codes.append(code)
            for prop in propstat.findall(f"{{{DAV}}}prop"):
                for element in prop:
                    props[element.tag] = prop_value(element, localize) if 200 <= code < 300 else None
        status = top_status or (200 if any(200 <= c < 300 for c in codes) else (codes[0] if codes else 200))
        etag = props.get(f"{{{DAV}}}getetag")
        for href in hrefs:
            resources.append(DavResource(localize(href), status, etag if isinstance(etag, str) and etag else None,
                                         dict(props)))  # fmt: skip
    token = root.findtext(f"{{{DAV}}}sync-token")
    return resources, token.strip() if token else None


def error_conditions(body: bytes) -> list[str]:
    """The precondition names of a DAV:error body (RFC 4918 16), e.g. '{DAV:}valid-sync-token':
    python-caldav's reading (entities not resolved, no network); [] for anything else."""
    from caldav.lib.error import parse_preconditions

    return parse_preconditions(body)


# ---- request bodies --------------------------------------------------------------------------------------


def _split(clark: str) -> tuple[str, str]:
    if not clark.startswith("{") or "}" not in clark:
        raise DavError("protocol", f"property name {clark!r} is not in Clark notation {{namespace}}name")
    ns, name = clark[1:].split("}", 1)
    if not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
        raise DavError("protocol", f"property name {name!r} is not an XML name")
    return ns, name


class _Names:
    """Prefixes for the namespaces a body uses, declared once on its root."""

    def __init__(self) -> None:
        self.used: dict[str, str] = {DAV: "d"}

    def __call__(self, clark: str) -> str:
        ns, name = _split(clark)
        prefix = self.used.get(ns) or _PREFIXES.get(ns) or f"x{len(self.used)}"
        self.used[ns] = prefix
        return f"{prefix}:{name}"

    def declarations(self) -> str:
        return " ".join(f"xmlns:{p}={quoteattr(ns)}" for ns, p in self.used.items())


def _document(root: str, inner: str, names: _Names) -> bytes:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<{root} {names.declarations()}>{inner}</{root}>'.encode()


def propfind_body(props: list[str]) -> bytes:
    names = _Names()
    inner = "".join(f"<{names(p)}/>" for p in props)
    return _document("d:propfind", f"<d:prop>{inner}</d:prop>", names)


def sync_collection_body(token: str | None, props: list[str]) -> bytes:
    names = _Names()
    inner = "".join(f"<{names(p)}/>" for p in props)
    return _document(
        "d:sync-collection",
        f"<d:sync-token>{escape(token or '')}</d:sync-token><d:sync-level>1</d:sync-level><d:prop>{inner}</d:prop>",
        names,
    )


def mkcalendar_body(
    display_name: str | None, color: str | None, components: list[str], description: str | None
) -> bytes:
    names = _Names()
    names(f"{{{CALDAV}}}calendar")
    parts = []
    if display_name is not None:
        parts.append(f"<d:displayname>{escape(display_name)}</d:displayname>")
    if color is not None:
        parts.append(f"<{names(f'{{{APPLE_ICAL}}}calendar-color')}>{escape(color)}</ical:calendar-color>")
    if description is not None:
        parts.append(f"<c:calendar-description>{escape(description)}</c:calendar-description>")
    if components:
        comps = "".join(f"<c:comp name={quoteattr(c)}/>" for c in components)
        parts.append(f"<c:supported-calendar-component-set>{comps}</c:supported-calendar-component-set>")
    return _document("c:mkcalendar", f"<d:set><d:prop>{''.join(parts)}</d:prop></d:set>", names)


def mkcol_addressbook_body(display_name: str | None, description: str | None) -> bytes:
    names = _Names()
    names(f"{{{CARDDAV}}}addressbook")
    parts = ["<d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>"]
    if display_name is not None:
        parts.append(f"<d:displayname>{escape(display_name)}</d:displayname>")
    if description is not None:
        parts.append(f"<card:addressbook-description>{escape(description)}</card:addressbook-description>")
    return _document("d:mkcol", f"<d:set><d:prop>{''.join(parts)}</d:prop></d:set>", names)
