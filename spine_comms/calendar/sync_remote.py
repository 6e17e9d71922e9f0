"""The server's side of the calendar sync: where the target calendar is and what it holds.

Cost grows with changes, not with the calendar's size: the stored collection href is
tried first (no discovery), and RFC 6578 sync-collection with the stored token returns
only what changed. A token the server no longer honours, or a server without
sync-collection, falls back to a full listing.

Stalwart never refuses a token (RFC 6578 section 3.2's valid-sync-token): one it cannot parse gets
a full listing, and one older than its change log a silently partial delta. So a delta that
carries resources we know unchanged is taken for the full listing it is, and the delta is never
trusted for longer than `sync.full_listing_every_hours`: then the whole calendar is listed again,
which finds what a truncated delta left out (deletions above all).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from spine_comms.calendar.dav_lookup import CALDAV, find, last_segment
from spine_comms.calendar.layers import payload_hash
from spine_comms.calendar.sync_plan import RemotePicture, href_key, same_etag, suspects
from spine_comms.calendar.sync_state import SyncState

GETETAG = "{DAV:}getetag"
FATAL = ("auth", "unreachable", "timeout")  # no fallback helps with these


def locate_and_read(
    client, account, target: str, state: SyncState, full_scan: bool, log: Callable[[str], None],
    *, recheck: timedelta | None = None, now: datetime | None = None,
):  # fmt: skip
    """(collection href, RemotePicture, new sync token or None, how it was read)."""
    from spine_comms.protocols.dav import DavError

    token = None if full_scan else state.sync_token
    if token and recheck is not None and now is not None and _listing_due(state, recheck, now):
        log(f"no full listing for {recheck} or more: listing the whole calendar, not trusting the delta")
        token = None
    known = {href_key(m.remote_event_id): m.remote_etag for m in state.events.values() if not m.tombstone}
    if state.calendar and last_segment(state.calendar) == target:
        try:
            return (state.calendar, *read_picture(client, state.calendar, token, log, known))
        except DavError as exc:
            if exc.kind != "not_found":
                raise
            log(f"{state.calendar} is gone; looking for calendar {target} again")
    # Not there (or never looked for): discovery and the home set, as every DAV capability finds it.
    collection = find(client, CALDAV, account, target, in_contract=True).href
    token = token if collection == state.calendar else None
    return (collection, *read_picture(client, collection, token, log, known))


def _listing_due(state: SyncState, recheck: timedelta, now: datetime) -> bool:
    if not state.full_listing_at:
        return True
    try:
        last = datetime.fromisoformat(state.full_listing_at.replace("Z", "+00:00"))
    except ValueError:
        return True
    return now - last >= recheck


def read_picture(client, collection: str, token: str | None, log: Callable[[str], None],
                 known: dict[str, str | None] | None = None):  # fmt: skip
    """(RemotePicture, new token, how): the delta since `token`, else the whole calendar."""
    from spine_comms.protocols.dav import DavError

    if token:
        try:
            changed, deleted, new_token = client.sync_collection(collection, token)
            picture = RemotePicture(complete=False, how="delta")
            _fill(picture, collection, changed)
            picture.gone = {href_key(h) for h in deleted if _member(collection, h)}
            unchanged = [h for h, etag in picture.etags.items()
                         if known and h in known and known[h] is not None and same_etag(known[h], etag)]  # fmt: skip
            if not unchanged:
                how = (f"sync-collection since the stored token: {len(picture.etags)} changed, "
                       f"{len(picture.gone)} deleted")  # fmt: skip
                return picture, new_token, how
            # A delta lists what changed; resources as we left them mean the server answered with
            # everything it has (Stalwart, for a token it cannot parse) or from an older point.
            log(f"the delta holds {len(unchanged)} unchanged resource(s): not a delta; listing the whole calendar")
        except DavError as exc:
            if exc.kind != "precondition":
                raise
            log(f"the server refused the stored sync token ({exc.message}); listing the whole calendar")
    try:
        changed, _deleted, new_token = client.sync_collection(collection, None)
        picture = RemotePicture(complete=True, how="full")
        _fill(picture, collection, changed)
        return picture, new_token, f"full listing (sync-collection): {len(picture.etags)} resource(s)"
    except DavError as exc:
        if exc.kind in (*FATAL, "not_found"):
            raise
        log(f"sync-collection refused ({exc.message}); listing with PROPFIND")
    picture = RemotePicture(complete=True, how="full")
    _fill(picture, collection, client.propfind(collection, [GETETAG], 1))
    return picture, None, f"full listing (PROPFIND): {len(picture.etags)} resource(s)"


def _member(collection: str, href: str) -> bool:
    """Only direct children of the collection count: an href elsewhere (hostile or odd) is ignored."""
    base = href_key(collection).rstrip("/") + "/"
    key = href_key(href)
    return key.startswith(base) and "/" not in key[len(base) :].rstrip("/") and key.rstrip("/") != base.rstrip("/")


def _fill(picture: RemotePicture, collection: str, resources) -> None:
    for resource in resources:
        if resource.status < 300 and _member(collection, resource.href):
            picture.etags[href_key(resource.href)] = resource.etag


def read_suspects(client, state: SyncState, picture: RemotePicture):
    """(payload hashes, ETags) of each mapped resource whose ETag moved, read with GET: the
    planner decides on these, and the state records no ETag but one the server gave. A hash is
    None when the resource does not parse; one gone since the listing is marked gone."""
    from spine_comms.protocols.dav import DavError

    hashes: dict[str, str | None] = {}
    etags: dict[str, str | None] = {}
    for href in suspects([], state, picture):
        try:
            body, etag = client.get(href)
        except DavError as exc:
            if exc.kind in FATAL:
                raise
            if exc.kind == "not_found":
                picture.etags.pop(href_key(href), None)
                picture.gone.add(href_key(href))
            hashes[href] = None
            continue
        hashes[href] = payload_hash(body)
        etags[href] = etag or picture.etags.get(href_key(href))
    return hashes, etags


def settle_token(client, collection: str, state: SyncState, token: str | None, executor, log) -> None:
    """Store the newest token that leaves nothing unseen.

    `token` was read before our writes. When we wrote, the changes since it are asked for once
    more: if they are exactly our own writes (the ETags we recorded), the newer token is stored
    and the next run's delta is empty; otherwise the older one, so the next run sees the rest.
    """
    from spine_comms.protocols.dav import DavError

    newest = token
    if token and executor.writes:
        try:
            changed, deleted, after = client.sync_collection(collection, token)
        except DavError as exc:
            log(f"could not re-read the changes after writing ({exc.message}); keeping the earlier token")
        else:
            ours = {href_key(m.remote_event_id): m for m in state.events.values() if not m.tombstone}
            explained = all(
                href_key(r.href) not in ours or same_etag(ours[href_key(r.href)].remote_etag, r.etag) for r in changed
            ) and all(href_key(h) not in ours for h in deleted)
            newest = after if explained else token
    if newest != state.sync_token or executor.unsaved:
        state.sync_token = newest
        executor.save()
