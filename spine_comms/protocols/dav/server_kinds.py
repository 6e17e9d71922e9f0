"""Which server's quirks to expect: a contract's `server_kind` as python-caldav's compatibility hints.

python-caldav keeps, in caldav.compatibility_hints, what each server does differently (measured
by its caldav-server-tester): Stalwart answers an unknown or expired sync token with 207 and no
error, and rate-limits with 429/503 + Retry-After; Xandikos answers a bad token with 500 or 412;
Radicale compares `If-Match: *` literally. The contract names the server (`server_kind`), or says
`auto`: the first answer's Server header names it when it can, else the generic profile (no
quirk assumed). Callers ask `supports(features, name)`, never a server's name.
"""

from __future__ import annotations

KINDS = ("auto", "generic", "stalwart", "radicale", "xandikos")
# The hint profiles python-caldav ships under these names (caldav.compatibility_hints.<name>).
_PROFILES = {"stalwart": "stalwart", "radicale": "radicale", "xandikos": "xandikos"}


def features_for(kind: str):
    """The caldav FeatureSet for a server kind; `generic` and `auto` (until detected): no quirk."""
    from caldav.compatibility_hints import FeatureSet
    from caldav.config import resolve_features

    profile = _PROFILES.get(kind)
    return FeatureSet(resolve_features(profile) if profile else {})


def kind_from_server_header(value: str | None) -> str:
    """The server kind a Server header names ('Stalwart', 'Radicale/3.5', 'Xandikos/0.2'), else generic."""
    text = (value or "").lower()
    return next((kind for kind in _PROFILES if kind in text), "generic")


def supports(features, name: str) -> bool:
    """python-caldav's verdict on one feature (e.g. 'sync-token.invalid-token') for this server."""
    return bool(features.is_supported(name))
