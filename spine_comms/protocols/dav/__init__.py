"""WebDAV, CalDAV and CardDAV on the wire: requests, multistatus, discovery, collections.

from spine_comms.protocols.dav import DavClient, DavError, discover, list_collections, child_href
"""

from spine_comms.protocols.dav.client import DavClient
from spine_comms.protocols.dav.discovery import child_href, discover, list_collections
from spine_comms.protocols.dav.model import (
    Collection,
    DavError,
    DavResource,
    DavResponse,
    Discovery,
    DiscoveryStep,
)
from spine_comms.protocols.dav.xmlwire import APPLE_ICAL, CALDAV, CALSERVER, CARDDAV, DAV, parse_xml

__all__ = [
    "APPLE_ICAL",
    "CALDAV",
    "CALSERVER",
    "CARDDAV",
    "DAV",
    "Collection",
    "DavClient",
    "DavError",
    "DavResource",
    "DavResponse",
    "Discovery",
    "DiscoveryStep",
    "child_href",
    "discover",
    "list_collections",
    "parse_xml",
]
