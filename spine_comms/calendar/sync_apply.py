"""The sync executor: apply planned actions with ETag preconditions, retries and state saves.

Every write is conditional (create: If-None-Match: *, update and delete: If-Match), so a
change made on the server after the plan was read is never overwritten blindly. A 412
on our own write is read back first: when the server already holds exactly what we
meant to write (a retry after a lost answer, a crash before the state was saved), the
write counts as done. The state is saved every few writes and at the end, so a crash
loses at most a handful of ETags, which the next run then recognises by content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spine_comms.calendar.layers import fingerprint, payload_hash
from spine_comms.calendar.sync_plan import Action
from spine_comms.calendar.sync_state import Mapping, SyncState, save_state

CONTENT_TYPE = "text/calendar; charset=utf-8"
RETRYABLE = ("rate_limited", "transport_error")
SAVE_EVERY = 25  # writes between state saves


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
    errors: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    writes: int = 0
    unsaved: int = 0

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
                    # A refused login refuses every later request too: stop whatever the setting.
                    if self.stop_on_first_error or kind == "auth_failed":
                        self.stopped_early = True
                        break
                if self.unsaved >= SAVE_EVERY:
                    self.save()
        finally:
            if self.unsaved:
                self.save()

    def save(self) -> None:
        self.state.updated_at = self.now()
        try:
            save_state(self.state_path, self.state)
        except OSError as exc:
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
        self.unsaved = 0

    # ---- one action -----------------------------------------------------------------------------------

    def _apply(self, action: Action) -> None:
        if action.action == "noop":
            if action.adopt_etag:
                self._record(action, action.href, action.adopt_etag)
            return
        if action.action == "conflict":
            mapping = self.state.events.get(action.canonical_key)
            if mapping is not None:
                mapping.unmanaged = mapping.unmanaged or action.unmanage
                mapping.seen_etag = None if action.unmanage else action.adopt_etag
                self.unsaved += 1
            return
        if action.action == "create":
            etag = self._create(action, action.href)
            self._record(action, action.href, etag)
        elif action.action == "update":
            if action.old_href:
                etag = self._create(action, action.href)
                self._record(action, action.href, etag)
                self._call(lambda: self._delete(action.old_href, action.if_match))
            else:
                etag = self._update(action, action.href, action.if_match)
                self._record(action, action.href, etag)
        elif action.action == "delete":
            if not action.local_only:
                self._call(lambda: self._delete(action.href, action.if_match))
            mapping = self.state.events.get(action.canonical_key)
            if mapping is not None:
                mapping.tombstone, mapping.remote_etag, mapping.seen_etag = True, None, None
                mapping.last_synced_at = self.now()
                self.unsaved += 1
        else:
            return
        action.done = True

    def _call(self, call: Callable):
        value, _ = with_retry(call, self.attempts, self.backoff, self.sleep)
        self.writes += 1
        return value

    def _create(self, action: Action, href: str) -> str | None:
        from spine_comms.protocols.dav import DavError

        body = action.desired.body
        try:
            return self._call(lambda: self.client.put(href, body, CONTENT_TYPE, create_only=True))
        except DavError as exc:
            if exc.kind != "precondition":
                raise
            current, current_etag = exc.current, exc.current_etag
            if not current or not _same_uid(current, action.uid):
                exc.kind, exc.message = "conflict", f"{href}: a resource of another event holds this name"
                raise exc from None
            # Ours (the UID is deterministic): left by a run that stopped before saving its state.
            if payload_hash(current) == action.desired.desired_hash:
                return current_etag
            return self._update(action, href, current_etag)

    def _update(self, action: Action, href: str, if_match: str | None) -> str | None:
        from spine_comms.protocols.dav import DavError

        body = action.desired.body
        try:
            return self._call(lambda: self.client.put(href, body, CONTENT_TYPE, etag=if_match))
        except DavError as exc:
            # Our own earlier attempt may have landed before its answer was lost.
            if exc.kind == "precondition" and exc.current and payload_hash(exc.current) == action.desired.desired_hash:
                return exc.current_etag
            raise

    def _delete(self, href: str, if_match: str | None) -> None:
        from spine_comms.protocols.dav import DavError

        try:
            self.client.delete(href, etag=if_match)
        except DavError as exc:
            if exc.kind != "not_found":  # already gone: what we wanted
                raise

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
        self.unsaved += 1


def _same_uid(body: bytes, uid: str | None) -> bool:
    found = fingerprint(body) or {}
    return bool(uid) and found.get("UID", "").split(":", 1)[-1] == uid
