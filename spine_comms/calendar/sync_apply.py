"""The sync executor: apply planned actions with ETag preconditions, retries and state saves.

Every write is conditional (RFC 7232: create with If-None-Match: *, update and delete with
If-Match), so a change made on the server after the plan was read is never overwritten
blindly. A 412 is not an error to pass on but news: the event is read again and planned
again in the same run (RFC 7232 4.2 leaves recovery to the client):
- the server already holds what we meant to write: nothing to do (this run's own retry that
  landed counts as its write; an earlier run's unrecorded write is a noop, never "created");
- it holds our last synced content under another ETag: the write is repeated under that ETag;
- it holds someone else's version: the conflict policy decides, as in the planner;
- it is gone: an update becomes a create, a delete is done.
At most one re-plan per event, so a server that keeps refusing ends in precondition_failed.
Each write is recorded in the state's journal (sync_state.StateJournal) before the next one
starts, so a killed run loses at most the write in flight, and the ETags recorded are only
ever ones the server gave us.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spine_comms.calendar.layers import fingerprint, payload_hash
from spine_comms.calendar.sync_plan import Action, same_etag
from spine_comms.calendar.sync_state import Mapping, StateJournal, SyncState, save_state

CONTENT_TYPE = "text/calendar; charset=utf-8"
RETRYABLE = ("rate_limited", "transport_error")


def classify(exc) -> str:
    """A DavError in the spine's error classes (calendar.sync.contract.yaml errors.classes)."""
    if exc.status == 429:
        return "rate_limited"
    if exc.kind in ("timeout", "unreachable") or (exc.status and exc.status >= 500 and exc.kind != "too_large"):
        return "transport_error"
    if exc.kind in ("auth", "forbidden"):
        return "auth_failed"
    if exc.kind == "precondition":
        return "precondition_failed"
    if exc.kind == "conflict":
        return "conflict_error"
    return "validation_error"


def with_retry(call: Callable, attempts: int, backoff: list[float], sleep: Callable[[float], None] = time.sleep):
    """call(), again after backoff[i] on a transient failure (rate_limited, transport_error), at
    most `attempts` times. Returns (value, attempts used); the last error carries `.attempts`."""
    from spine_comms.protocols.dav import DavError

    for attempt in range(1, attempts + 1):
        try:
            return call(), attempt
        except DavError as exc:
            exc.attempts = attempt
            if classify(exc) not in RETRYABLE or attempt == attempts:
                raise
            sleep(backoff[min(attempt - 1, len(backoff) - 1)] if backoff else 0)
    raise AssertionError("unreachable")  # the loop returns or raises


class StateWriteError(Exception):
    pass


class _Again(Exception):
    """A 412 re-planned once already and refused again: give up on this event for this run."""


@dataclass
class Executor:
    client: object  # a protocols.dav.DavClient
    state: SyncState
    state_path: Path
    collection_href: str
    attempts: int
    backoff: list[float]
    stop_on_first_error: bool
    now: Callable[[], str]
    log: Callable[[str], None] = lambda _m: None
    progress: Callable[..., object] = lambda _n=1: None  # ctx.progress advance, one per action written
    sleep: Callable[[float], None] = time.sleep
    conflict_policy: str = "report"  # for a conflict found only when writing (412)
    errors: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    writes: int = 0
    unsaved: int = 0  # journal lines not yet folded into the state file
    journal: StateJournal | None = None

    def __post_init__(self) -> None:
        self.journal = self.journal or StateJournal(self.state_path)

    def run(self, actions: list[Action]) -> None:
        from spine_comms.protocols.dav import DavError

        try:
            for action in actions:
                if action.deferred:
                    continue
                try:
                    self._apply(action)
                    self.progress()
                except DavError as exc:
                    self._failed(action, exc)
                    # A refused login refuses every later request too: stop whatever the setting.
                    if self.stop_on_first_error or classify(exc) == "auth_failed":
                        self.stopped_early = True
                        break
        finally:
            self.journal.close()

    def _failed(self, action: Action, exc) -> None:
        kind = classify(exc)
        action.error = {
            "layer": action.layer,
            "event_id": action.event_id,
            "canonical_key": action.canonical_key,
            "href": action.href,
            "action": action.action,
            "class": kind,
            "status": exc.status,
            "message": exc.message,
            "attempts": getattr(exc, "attempts", 1),
        }
        self.errors.append(action.error)
        self.log(f"{action.action} {action.layer}/{action.event_id}: {kind}: {exc.message}")

    def save(self) -> None:
        """Fold everything into the state file (atomically), then drop the journal."""
        self.state.updated_at = self.now()
        try:
            save_state(self.state_path, self.state)
            self.journal.remove()
        except OSError as exc:
            self._state_write_error(exc)
        self.unsaved = 0

    def _state_write_error(self, exc: OSError):
        self.errors.append(
            {
                "layer": None,
                "event_id": None,
                "canonical_key": None,
                "href": None,
                "action": "save-state",
                "class": "state_write_error",
                "status": None,
                "message": f"{self.state_path}: {exc.strerror or exc}",
                "attempts": 1,
            }
        )
        self.stopped_early = True
        raise StateWriteError(str(exc)) from None

    def _keep(self, mapping: Mapping) -> None:
        """Record one changed mapping durably before anything else is written."""
        try:
            self.journal.append(mapping.canonical_key, mapping, self.state)
        except OSError as exc:
            self._state_write_error(exc)
        self.unsaved += 1

    # ---- one action -----------------------------------------------------------------------------------

    def _apply(self, action: Action) -> None:
        from spine_comms.protocols.dav import DavError

        try:
            if action.action == "noop":
                if action.adopt_etag:
                    self._record(action, action.href, action.adopt_etag)
            elif action.action == "conflict":
                self._leave(action, action.adopt_etag)
            elif action.action == "create":
                self._create(action, action.href)
            elif action.action == "update":
                if action.old_href:
                    self._move(action)
                else:
                    self._update(action, action.href, action.if_match)
            elif action.action == "delete":
                self._remove(action, action.href, action.if_match)
        except _Again as again:
            raise DavError("precondition", str(again), status=412, url=action.href or "") from None

    def _call(self, call: Callable):
        value, _ = with_retry(call, self.attempts, self.backoff, self.sleep)
        self.writes += 1
        return value

    def _create(self, action: Action, href: str, replanned: bool = False) -> None:
        from spine_comms.protocols.dav import DavError

        body = action.desired.body
        try:
            etag = self._call(lambda: self.client.put(href, body, CONTENT_TYPE, create_only=True))
        except DavError as exc:
            if exc.kind != "precondition":
                raise
            self._create_refused(action, href, exc, replanned)
            return
        self._done(action, href, etag)

    def _create_refused(self, action: Action, href: str, exc, replanned: bool) -> None:
        """If-None-Match: * failed: something holds this name (RFC 7232 3.2)."""
        current, etag = self._reread(href, exc)
        if current is None:
            raise _Again(f"{href}: the server refused If-None-Match: * but holds nothing there")
        if not _same_uid(current, action.uid):
            exc.kind, exc.message = "conflict", f"{href}: a resource of another event holds this name"
            raise exc from None
        theirs = payload_hash(current)
        if theirs == action.desired.desired_hash:
            return self._already(action, href, etag, exc)
        mapping = self.state.live(action.canonical_key)
        if mapping is None:
            # Our UID (it is derived from the source), content the state never recorded: an
            # earlier run's write it could not record. Replaced, and reported as the update it is.
            action.action = "update"
            action.reason = "already on the server (an unrecorded earlier write) with other content: replaced"
            return self._update(action, href, etag, replanned=True)
        if theirs == mapping.last_desired_hash:
            action.action = "update"
            action.reason += "; it was back on the server with our last synced content: rewritten"
            return self._update(action, href, etag, replanned=True)
        self._conflicted(action, href, etag, None, replanned)

    def _update(self, action: Action, href: str, if_match: str | None, replanned: bool = False) -> None:
        from spine_comms.protocols.dav import DavError

        if not if_match:
            # Nothing to make the write conditional on: read the current ETag first (never an
            # unconditional PUT over a resource that exists).
            return self._update_refused(action, href, None, None, replanned)
        body = action.desired.body
        try:
            etag = self._call(lambda: self.client.put(href, body, CONTENT_TYPE, etag=if_match))
        except DavError as exc:
            if exc.kind != "precondition":
                raise
            self._update_refused(action, href, if_match, exc, replanned)
            return
        self._done(action, href, etag)

    def _update_refused(self, action: Action, href: str, sent: str | None, exc, replanned: bool) -> None:
        current, etag = self._reread(href, exc)
        if current is None:
            action.action = "create"
            action.reason += "; gone from the server when written: created again"
            return self._create(action, href, replanned=True)
        if payload_hash(current) == action.desired.desired_hash:
            return self._already(action, href, etag, exc)
        if replanned or not etag:
            raise _Again(_refused_again(href, sent, etag))
        if sent and same_etag(etag, sent):
            raise _Again(_weak(href, etag))
        mapping = self.state.live(action.canonical_key)
        if mapping is not None and payload_hash(current) == mapping.last_desired_hash:
            # Our last synced content under an ETag the state did not hold: only the ETag moved.
            action.reason += "; the recorded ETag was stale (the server holds our last version): written under its ETag"
            return self._update(action, href, etag, replanned=True)
        self._conflicted(action, href, etag, sent, replanned)

    def _conflicted(self, action: Action, href: str, etag: str | None, sent: str | None, replanned: bool) -> None:
        """Someone else's version, found only when writing: the conflict policy decides, as in the plan."""
        policy = self.conflict_policy
        action.conflict = {
            "layer": action.layer,
            "event_id": action.event_id,
            "canonical_key": action.canonical_key,
            "href": href,
            "state_etag": sent,
            "server_etag": etag,
            "policy": policy,
            "found": "when writing (HTTP 412)",
        }
        if policy == "spine_wins":
            action.conflict["resolution"] = "overwritten with the source's version (If-Match on the server's ETag)"
            action.reason += "; changed on the server (412); spine_wins: overwritten"
            if action.action == "delete":
                return self._remove(action, href, etag, replanned=True)
            if replanned:
                raise _Again(_refused_again(href, sent, etag))
            return self._update(action, href, etag, replanned=True)
        action.action = "conflict"
        if policy == "server_wins":
            action.conflict["resolution"] = "the server's version kept; the event is no longer managed"
            action.reason = "changed on the server (found when writing: 412); server_wins: kept theirs, now unmanaged"
            action.unmanage = True
        else:
            action.conflict["resolution"] = "left as it is on the server; reported"
            action.reason = "changed on the server (found when writing: 412); report: left alone"
        self._leave(action, etag)

    def _already(self, action: Action, href: str, etag: str | None, exc) -> None:
        """The server holds exactly what we meant to write."""
        if exc is not None and getattr(exc, "attempts", 1) > 1:
            return self._done(action, href, etag)  # this run's own earlier attempt landed
        action.action = "noop"
        action.reason = "already on the server with this content (an earlier write not recorded): ETag recorded"
        self._record(action, href, etag)

    def _move(self, action: Action) -> None:
        """The UID follows the summary: the new resource first, then the old one goes."""
        from spine_comms.protocols.dav import DavError

        old = self.state.live(action.canonical_key)
        old_hash = old.last_desired_hash if old else None
        self._create(action, action.href)
        if not action.done:
            return
        try:
            self._delete(action.old_href, action.if_match)
        except DavError as exc:
            if exc.kind != "precondition":
                raise
            current, etag = self._reread(action.old_href, exc)
            if current is None:
                return
            if payload_hash(current) != old_hash and self.conflict_policy != "spine_wins":
                action.reason += "; the old resource was changed on the server and is left alone"
                return
            self._delete(action.old_href, etag)

    def _remove(self, action: Action, href: str, if_match: str | None, replanned: bool = False) -> None:
        from spine_comms.protocols.dav import DavError

        if not action.local_only:
            try:
                if not if_match:
                    raise DavError("precondition", f"{href}: no ETag to delete under", status=412, url=href)
                self._delete(href, if_match)
            except DavError as exc:
                if exc.kind != "precondition":
                    raise
                current, etag = self._reread(href, exc if if_match else None)
                if current is not None:
                    if replanned or not etag:
                        raise _Again(_refused_again(href, if_match, etag)) from None
                    if if_match and same_etag(etag, if_match):
                        raise _Again(_weak(href, etag)) from None
                    mapping = self.state.events.get(action.canonical_key)
                    ours = mapping is not None and payload_hash(current) == mapping.last_desired_hash
                    if ours or action.conflict:  # only the ETag moved, or spine_wins already decided
                        return self._remove(action, href, etag, replanned=True)
                    return self._conflicted(action, href, etag, if_match, replanned)
        mapping = self.state.events.get(action.canonical_key)
        action.done = True
        if mapping is not None:
            mapping.tombstone, mapping.remote_etag, mapping.seen_etag = True, None, None
            mapping.last_synced_at = self.now()
            self._keep(mapping)

    def _delete(self, href: str, if_match: str | None) -> None:
        from spine_comms.protocols.dav import DavError

        try:
            self._call(lambda: self.client.delete(href, etag=if_match))
        except DavError as exc:
            if exc.kind != "not_found":  # already gone: what we wanted
                raise

    def _reread(self, href: str, exc) -> tuple[bytes | None, str | None]:
        """The resource as it is now: (None, None) when it is gone. Its ETag is the server's own,
        from the GET (or HEAD/PROPFIND when the GET carried none)."""
        from spine_comms.protocols.dav import DavError

        if exc is not None and exc.current is not None:
            return exc.current, exc.current_etag or self.client.etag_of(href)
        try:
            body, etag = self.client.get(href)
        except DavError as error:
            if error.kind == "not_found":
                return None, None
            raise
        return body, etag or self.client.etag_of(href)

    def _leave(self, action: Action, seen: str | None) -> None:
        """A conflict left on the server: remember the ETag seen (report) or stop managing (server_wins)."""
        mapping = self.state.events.get(action.canonical_key)
        if mapping is None:
            return
        unmanaged = mapping.unmanaged or action.unmanage
        seen = None if unmanaged else seen
        if (unmanaged, seen) != (mapping.unmanaged, mapping.seen_etag):
            mapping.unmanaged, mapping.seen_etag = unmanaged, seen
            self._keep(mapping)

    def _done(self, action: Action, href: str, etag: str | None) -> None:
        action.done = True  # the server has it, whatever happens to the state file next
        self._record(action, href, etag)

    def _record(self, action: Action, href: str, etag: str | None) -> None:
        desired = action.desired
        mapping = self.state.events.get(action.canonical_key)
        if mapping is None or mapping.tombstone:
            mapping = Mapping(
                canonical_key=action.canonical_key,
                layer=action.layer,
                event_id=action.event_id,
                remote_calendar_id=self.collection_href,
                remote_event_id=href,
                remote_etag=etag,
                last_desired_hash=None,
                last_synced_at=self.now(),
            )
            self.state.events[action.canonical_key] = mapping
        mapping.remote_calendar_id, mapping.remote_event_id, mapping.remote_etag = self.collection_href, href, etag
        mapping.last_desired_hash = desired.desired_hash if desired else mapping.last_desired_hash
        mapping.uid = action.uid
        mapping.last_synced_at = self.now()
        mapping.seen_etag = None
        action.etag_after = etag
        self._keep(mapping)


def _refused_again(href: str, sent: str | None, etag: str | None) -> str:
    if not etag:
        return f"{href}: changed on the server and it gives no ETag to write under; not written"
    return f"{href}: refused again after re-reading it (If-Match {sent}, now {etag}): it is changing as we write"


def _weak(href: str, etag: str) -> str:
    return (f"{href}: the server refused If-Match with its own current ETag {etag} (a weak ETag never "
            "matches If-Match, RFC 7232 2.3 and 3.1); not written")  # fmt: skip


def _same_uid(body: bytes, uid: str | None) -> bool:
    found = fingerprint(body) or {}
    return bool(uid) and found.get("UID", "").split(":", 1)[-1] == uid
