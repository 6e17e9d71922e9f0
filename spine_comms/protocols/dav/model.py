"""What the DAV client hands back: an error with a kind callers branch on, and plain records."""

from __future__ import annotations

from dataclasses import dataclass, field

from spine_comms.core.outcomes import FailureKind, ProtocolFailure

# Every kind a DavError can carry; callers branch on these, never on message text.
KINDS = (
    "unreachable",
    "timeout",
    "auth",
    "forbidden",
    "not_found",
    "precondition",
    "conflict",
    "too_large",
    "protocol",
    "redirect",
)


# The outcome vocabulary's name for the kinds that mean the server could not be used at all; the
# others (a 404, a 412 ...) answer one request and are protocol_error when they end a run.
_FAILURE_KINDS = {
    "unreachable": FailureKind.UNREACHABLE,
    "timeout": FailureKind.TIMEOUT,
    "auth": FailureKind.CREDENTIALS_REFUSED,
    "forbidden": FailureKind.CREDENTIALS_REFUSED,
}


class DavError(ProtocolFailure):
    """A DAV request that did not do what was asked. The message never holds a password.

    `kind` is the DAV detail callers branch on (one of KINDS); `failure_kind` the outcome vocabulary's
    (`failure` overrides it, e.g. tls_untrusted for a connection that is `unreachable` to callers).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        url: str = "",
        current: bytes | None = None,
        current_etag: str | None = None,
        failure: FailureKind | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.failure_kind = failure or _FAILURE_KINDS.get(kind, FailureKind.PROTOCOL_ERROR)
        self.message = message
        self.status = status
        self.url = url
        # On 412: the resource as it is now on the server (when it could be read), so a
        # caller can report or resolve the conflict without another round trip.
        self.current = current
        self.current_etag = current_etag
        self.body: bytes = b""  # the error response's body (capped), e.g. a DAV:error precondition


@dataclass
class DavResponse:
    status: int
    headers: dict[str, str]  # lower-case keys
    body: bytes
    url: str
    elapsed_ms: int

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag") or None


@dataclass
class DavResource:
    href: str  # an absolute path as the server gave it (percent-encoding kept); a full URL when on another origin
    status: int
    etag: str | None = None
    # Clark notation keys ("{DAV:}displayname"). Values: str, list[str] (hrefs, component
    # names, resource type / report names), or None when the server answered 404 for it.
    props: dict[str, object] = field(default_factory=dict)


@dataclass
class DiscoveryStep:
    name: str  # well-known | srv | txt | principal | home-set
    url: str
    status: int | None
    elapsed_ms: int
    detail: str


@dataclass
class Discovery:
    kind: str  # caldav | carddav
    steps: list[DiscoveryStep] = field(default_factory=list)
    principal: str | None = None
    home_set: str | None = None
    srv: list[str] = field(default_factory=list)  # "host:port path"


@dataclass
class Collection:
    href: str
    display_name: str | None
    kinds: list[str]  # calendar | addressbook
    components: list[str]  # VEVENT, VTODO ... for calendars; address data types for address books
    color: str | None
    ctag: str | None
    sync_token: str | None
    supports_sync: bool
