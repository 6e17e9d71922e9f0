"""The sync planner: per event one action, from the source, the state and the server's picture.

Pure, so every rule is unit-tested without a server:
- no mapping: create (If-None-Match: *), spine-authority layers only;
- mapping, server ETag as recorded: update (If-Match) when the desired hash changed, else noop;
- mapping, resource gone from the server: create again (the spine's recreate_when);
- mapping, server ETag differs (changed by someone else): the conflict policy decides;
- mapping whose event left the source: delete (If-Match) when delete_removed;
- external-authority layers: skip, never written; resources the state does not know: untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from spine_comms.calendar.layers import DesiredEvent
from spine_comms.calendar.sync_state import Mapping, SyncState

WRITES = ("create", "update", "delete")


def href_key(href: str) -> str:
    """Hrefs compare by decoded path: servers percent-encode differently (%40 or @)."""
    return unquote(urlsplit(href).path)


def same_etag(a: str | None, b: str | None) -> bool:
    """The weak comparison of RFC 7232 2.3.2, for telling whether a resource changed: a server may
    give W/"x" in one answer and "x" in another. (If-Match itself compares strongly, 3.1.)"""
    if a is None or b is None:
        return a is b
    return a.removeprefix("W/") == b.removeprefix("W/")


@dataclass
class RemotePicture:
    """What the server holds. A full listing knows every member; a sync-collection delta knows
    only what changed since the token, and everything else is as the state recorded it."""

    etags: dict[str, str | None] = field(default_factory=dict)  # href_key -> etag, present resources
    gone: set[str] = field(default_factory=set)  # href_keys reported deleted (delta)
    complete: bool = True
    how: str = "full"  # full | delta

    def status(self, href: str, recorded: str | None) -> tuple[bool, str | None]:
        """(present, etag) of a resource the state maps, with `recorded` its last known ETag."""
        key = href_key(href)
        if key in self.etags:
            return True, self.etags[key]
        if key in self.gone or self.complete:
            return False, None
        return True, recorded


@dataclass
class Action:
    action: str  # create | update | delete | noop | conflict | skip
    reason: str
    layer: str
    event_id: str
    canonical_key: str
    uid: str | None = None
    href: str | None = None  # the resource written (or left alone)
    if_match: str | None = None  # the ETag an update/delete is conditional on
    old_href: str | None = None  # the UID changed: this resource goes once the new one exists
    desired: DesiredEvent | None = None
    conflict: dict | None = None
    adopt_etag: str | None = None  # noop/update: the server's ETag to record (it holds our content)
    unmanage: bool = False  # server_wins: stop managing this event
    local_only: bool = False  # a delete of what is already gone: only the state changes
    deferred: bool = False
    done: bool = False
    etag_after: str | None = None
    error: dict | None = None

    def to_dict(self, mode: str) -> dict:
        return {
            "layer": self.layer,
            "event_id": self.event_id,
            "canonical_key": self.canonical_key,
            "uid": self.uid,
            "action": self.action,
            "reason": self.reason,
            "href": self.href,
            "if_match": self.if_match,
            "replaces": self.old_href,
            "mode": mode,
            "deferred": self.deferred,
            "done": self.done,
            "etag": self.etag_after,
            "error": self.error["class"] if self.error else None,
        }


@dataclass
class Policy:
    conflict_policy: str = "report"  # spine_wins | server_wins | report
    delete_removed: bool = True


def suspects(events: list[DesiredEvent], state: SyncState, picture: RemotePicture) -> list[str]:
    """Mapped resources whose server ETag differs from the recorded one: the caller reads these
    (GET) so the planner can tell our own content (a lost ETag, a re-serializing server) from
    someone else's edit."""
    out = []
    for mapping in state.events.values():
        if mapping.tombstone or mapping.unmanaged:
            continue
        present, etag = picture.status(mapping.remote_event_id, mapping.seen_etag or mapping.remote_etag)
        if present and not same_etag(etag, mapping.remote_etag):
            out.append(mapping.remote_event_id)
    return out


def _observed(mapping: Mapping, picture: RemotePicture, server_etags: dict[str, str | None]):
    """(present, etag) of a mapped resource. An ETag read this run (GET) is the server's own word
    and wins over the listing's, and over the last one the state saw (a delta does not repeat it)."""
    present, etag = picture.status(mapping.remote_event_id, mapping.seen_etag or mapping.remote_etag)
    key = href_key(mapping.remote_event_id)
    if present and key in server_etags:
        etag = server_etags[key]
    return present, etag


def plan(
    events: list[DesiredEvent],
    state: SyncState,
    picture: RemotePicture,
    *,
    collection_href: str,
    policy: Policy,
    scope: set[str] | None,
    skipped_layers: dict[str, str] | None = None,
    server_hashes: dict[str, str | None] | None = None,
    server_etags: dict[str, str | None] | None = None,
) -> list[Action]:
    """`events` are the desired events of the layers to write; `skipped_layers` maps the layers
    never written (external authority) to the reason, and their events appear as skips.
    `scope`: the layers whose mapped events may be deleted when they leave the source (None:
    any layer not listed in skipped_layers). `server_hashes` and `server_etags`: the payload hash
    and ETag of each suspect, as read (GET) this run."""
    skipped_layers = skipped_layers or {}
    server_hashes = {href_key(h): v for h, v in (server_hashes or {}).items()}
    server_etags = {href_key(h): v for h, v in (server_etags or {}).items()}
    actions: list[Action] = []
    wanted = set()
    for event in events:
        wanted.add(event.canonical_key)
        if event.layer in skipped_layers:
            actions.append(_base(event, "skip", skipped_layers[event.layer]))
            continue
        actions.append(_for_event(event, state, picture, collection_href, policy, server_hashes, server_etags))
    for key, mapping in sorted(state.events.items(), key=lambda kv: (kv[1].layer, kv[1].event_id)):
        if key in wanted or mapping.tombstone:
            continue
        in_scope = mapping.layer in scope if scope is not None else mapping.layer not in skipped_layers
        if not in_scope:
            continue
        actions.append(_removed(mapping, picture, policy, server_hashes, server_etags))
    return actions


def _base(event: DesiredEvent, action: str, reason: str, **more) -> Action:
    return Action(action, reason, event.layer, event.event_id, event.canonical_key, event.uid, desired=event, **more)


def _for_event(event, state, picture, collection_href, policy, server_hashes, server_etags) -> Action:
    target = _child(collection_href, event.name)
    mapping = state.live(event.canonical_key)
    if mapping is None:
        return _base(event, "create", "not on the server yet (no mapping)", href=target)
    if mapping.unmanaged:
        return _base(
            event, "skip", "unmanaged: the server's version won a conflict (server_wins)", href=mapping.remote_event_id
        )
    present, etag = _observed(mapping, picture, server_etags)
    if not present:
        return _base(event, "create", "mapped, but gone from the server: recreated", href=target)
    old_href = mapping.remote_event_id if href_key(mapping.remote_event_id) != href_key(target) else None
    changed = event.desired_hash != mapping.last_desired_hash
    # A conflict the state remembers, and the server is back at the ETag we recorded (someone put
    # our version back): forget the other ETag, or a later write would be conditional on it.
    adopt = etag if mapping.seen_etag and etag else None
    if not same_etag(etag, mapping.remote_etag):
        theirs = server_hashes.get(href_key(mapping.remote_event_id))
        if theirs is not None and theirs in (event.desired_hash, mapping.last_desired_hash):
            # The server holds our content under an ETag we did not record (a crash after the
            # write, or a server that re-serialized): not a conflict.
            adopt, changed = etag, theirs != event.desired_hash
        else:
            return _conflict(event, mapping, etag, policy, target, old_href)
    if not changed and old_href is None:
        return _base(
            event,
            "noop",
            "unchanged" if adopt is None else "unchanged (the server's ETag recorded)",
            href=mapping.remote_event_id,
            adopt_etag=adopt,
        )
    reason = "the UID follows the summary: new resource, old one deleted" if old_href else "changed in the source"
    return _base(
        event,
        "update",
        reason,
        href=target if old_href else mapping.remote_event_id,
        if_match=adopt or mapping.remote_etag,
        old_href=old_href,
        adopt_etag=adopt,
    )


def _conflict(event, mapping: Mapping, etag, policy: Policy, target, old_href) -> Action:
    record = {
        "layer": event.layer,
        "event_id": event.event_id,
        "canonical_key": event.canonical_key,
        "href": mapping.remote_event_id,
        "state_etag": mapping.remote_etag,
        "server_etag": etag,
        "policy": policy.conflict_policy,
    }
    if policy.conflict_policy == "spine_wins":
        record["resolution"] = "overwritten with the source's version (If-Match on the server's ETag)"
        return _base(
            event,
            "update",
            "changed on the server; spine_wins: overwritten",
            href=target if old_href else mapping.remote_event_id,
            if_match=etag,
            old_href=old_href,
            conflict=record,
        )
    if policy.conflict_policy == "server_wins":
        record["resolution"] = "the server's version kept; the event is no longer managed"
        return _base(
            event,
            "conflict",
            "changed on the server; server_wins: kept theirs, now unmanaged",
            href=mapping.remote_event_id,
            conflict=record,
            unmanage=True,
        )
    record["resolution"] = "left as it is on the server; reported"
    return _base(
        event,
        "conflict",
        "changed on the server since the last sync; report: left alone",
        href=mapping.remote_event_id,
        conflict=record,
        adopt_etag=etag,
    )


def _removed(mapping: Mapping, picture: RemotePicture, policy: Policy, server_hashes, server_etags) -> Action:
    def act(action: str, reason: str, **more) -> Action:
        return Action(
            action,
            reason,
            mapping.layer,
            mapping.event_id,
            mapping.canonical_key,
            mapping.uid,
            href=mapping.remote_event_id,
            **more,
        )

    if mapping.unmanaged:
        return act("skip", "removed from the source; unmanaged (server_wins), left alone")
    if not policy.delete_removed:
        return act("skip", "removed from the source; sync.delete_removed is false, left alone")
    present, etag = _observed(mapping, picture, server_etags)
    if not present:
        return act("delete", "removed from the source and already gone from the server", local_only=True)
    theirs = server_hashes.get(href_key(mapping.remote_event_id))
    if not same_etag(etag, mapping.remote_etag) and theirs != mapping.last_desired_hash:
        record = {
            "layer": mapping.layer,
            "event_id": mapping.event_id,
            "canonical_key": mapping.canonical_key,
            "href": mapping.remote_event_id,
            "state_etag": mapping.remote_etag,
            "server_etag": etag,
            "policy": policy.conflict_policy,
        }
        if policy.conflict_policy == "spine_wins":
            record["resolution"] = "deleted anyway (If-Match on the server's ETag)"
            return act(
                "delete",
                "removed from the source, changed on the server; spine_wins: deleted",
                if_match=etag,
                conflict=record,
            )
        if policy.conflict_policy == "server_wins":
            record["resolution"] = "the server's version kept; the event is no longer managed"
            return act(
                "conflict",
                "removed from the source, changed on the server; server_wins: kept",
                conflict=record,
                unmanage=True,
            )
        record["resolution"] = "left as it is on the server; reported"
        return act(
            "conflict",
            "removed from the source, changed on the server; report: left alone",
            conflict=record,
            adopt_etag=etag,
        )
    return act("delete", "removed from the source", if_match=etag)


def _child(collection_href: str, name: str) -> str:
    return collection_href.rstrip("/") + "/" + name


@dataclass
class Limits:
    create: int
    update: int
    delete: int


def apply_limits(actions: list[Action], limits: Limits) -> int:
    """Mark writes beyond the limits deferred (left for the next run); returns how many."""
    left = {"create": limits.create, "update": limits.update, "delete": limits.delete}
    deferred = 0
    for action in actions:
        if action.action not in WRITES:
            continue
        if action.local_only:
            continue  # no request, so no limit
        if left[action.action] <= 0:
            action.deferred = True
            deferred += 1
        else:
            left[action.action] -= 1
    return deferred
