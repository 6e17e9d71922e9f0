"""The sync planner over an in-memory picture of the server, the limits, the state file, the lock, retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine_comms.calendar.layers import desired_events, load_source
from spine_comms.calendar.sync_apply import classify, with_retry
from spine_comms.calendar.sync_plan import (
    Limits,
    Policy,
    RemotePicture,
    apply_limits,
    href_key,
    plan,
    same_etag,
    suspects,
)
from spine_comms.calendar.sync_state import (
    Mapping,
    StateJournal,
    SyncLock,
    SyncState,
    journal_path,
    load_state,
    save_state,
)
from spine_comms.core.errors import ContractError
from spine_comms.protocols.dav import DavError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "spine" / "calendar.global.yaml"
COLLECTION = "/ops%40spine.test/spine-ops/"
EXTERNAL = {name: f"layer {name} has authority external: never written" for name in ("identity", "personal", "life")}


def source_events(path: Path = FIXTURE):
    return desired_events(load_source(path))


def synced(events) -> tuple[SyncState, RemotePicture]:
    """The state and server after a clean first sync of the spine layers."""
    state, picture = SyncState(calendar=COLLECTION, sync_token="t1"), RemotePicture()
    for e in events:
        if e.layer in EXTERNAL:
            continue
        href = COLLECTION + e.name
        state.events[e.canonical_key] = Mapping(e.canonical_key, e.layer, e.event_id, COLLECTION, href,
                                                f'"etag-{e.event_id}"', e.desired_hash, "2026-02-17T00:00:00Z",
                                                uid=e.uid)  # fmt: skip
        picture.etags[href_key(href)] = f'"etag-{e.event_id}"'
    return state, picture


def run_plan(events, state, picture, policy="report", delete_removed=True, scope=None, hashes=None):
    return plan(events, state, picture, collection_href=COLLECTION, policy=Policy(policy, delete_removed),
                scope=scope, skipped_layers=EXTERNAL, server_hashes=hashes)  # fmt: skip


def by_event(actions):
    return {a.event_id: a for a in actions}


def test_first_sync_creates_the_spine_layers_and_skips_the_external_ones():
    actions = run_plan(source_events(), SyncState(), RemotePicture())
    kinds = {a.event_id: a.action for a in actions}
    assert kinds == {"infra-backup-window": "create", "automation-daily-control": "create",
                     "identity-calendar-pull-anchor": "skip", "personal-calendar-review": "skip",
                     "spine-verification-window": "create", "spine-weekly-hygiene-cadence": "create",
                     "life-weekly-planning": "skip"}  # fmt: skip
    create = by_event(actions)["infra-backup-window"]
    assert create.href == COLLECTION + create.desired.name and create.if_match is None
    assert "external" in by_event(actions)["life-weekly-planning"].reason


def test_unchanged_is_all_noop_both_with_a_full_listing_and_an_empty_delta():
    events = source_events()
    state, picture = synced(events)
    assert {a.action for a in run_plan(events, state, picture)} == {"noop", "skip"}
    delta = RemotePicture(complete=False, how="delta")
    assert {a.action for a in run_plan(events, state, delta)} == {"noop", "skip"}


def test_a_source_change_is_one_update_with_if_match(tmp_path):
    state, picture = synced(source_events())
    copy = tmp_path / "calendar.global.yaml"
    copy.write_text(FIXTURE.read_text().replace("duration_minutes: 120", "duration_minutes: 90"))
    actions = run_plan(source_events(copy), state, picture)
    updates = [a for a in actions if a.action == "update"]
    assert [a.event_id for a in updates] == ["infra-backup-window"]
    assert updates[0].if_match == '"etag-infra-backup-window"' and updates[0].old_href is None


def test_a_summary_change_moves_the_resource_and_deletes_the_old_one(tmp_path):
    state, picture = synced(source_events())
    copy = tmp_path / "calendar.global.yaml"
    copy.write_text(FIXTURE.read_text().replace('"Infrastructure backup window"', '"Backups"'))
    (update,) = [a for a in run_plan(source_events(copy), state, picture) if a.action == "update"]
    old = state.events[update.canonical_key].remote_event_id
    assert update.old_href == old and update.href != old and update.if_match == '"etag-infra-backup-window"'


def test_gone_from_the_server_is_recreated_from_a_listing_and_from_a_delta():
    events = source_events()
    state, picture = synced(events)
    victim = next(e for e in events if e.event_id == "spine-verification-window")
    del picture.etags[href_key(COLLECTION + victim.name)]
    assert by_event(run_plan(events, state, picture))["spine-verification-window"].action == "create"
    delta = RemotePicture(complete=False, gone={href_key(COLLECTION + victim.name)})
    action = by_event(run_plan(events, state, delta))["spine-verification-window"]
    assert action.action == "create" and "recreated" in action.reason


@pytest.mark.parametrize(
    ("policy", "action", "if_match", "unmanage"),
    [("report", "conflict", None, False), ("spine_wins", "update", '"theirs"', False),
     ("server_wins", "conflict", None, True)],
)  # fmt: skip
def test_a_server_side_edit_is_a_conflict_handled_per_policy(policy, action, if_match, unmanage):
    events = source_events()
    state, _ = synced(events)
    victim = next(e for e in events if e.event_id == "automation-daily-control")
    delta = RemotePicture(complete=False, etags={href_key(COLLECTION + victim.name): '"theirs"'})
    assert suspects(events, state, delta) == [COLLECTION + victim.name]
    actions = run_plan(events, state, delta, policy=policy, hashes={COLLECTION + victim.name: "someone-elses"})
    got = by_event(actions)["automation-daily-control"]
    assert (got.action, got.if_match, got.unmanage) == (action, if_match, unmanage)
    assert got.conflict["server_etag"] == '"theirs"' and got.conflict["policy"] == policy
    assert sum(1 for a in actions if a.conflict) == 1


def test_a_report_conflict_stays_visible_after_the_token_moves_on():
    events = source_events()
    state, _ = synced(events)
    victim = next(e for e in events if e.event_id == "automation-daily-control")
    state.events[victim.canonical_key].seen_etag = '"theirs"'  # recorded by the run that found it
    got = by_event(run_plan(events, state, RemotePicture(complete=False), hashes={}))["automation-daily-control"]
    assert got.action == "conflict"


def test_a_moved_etag_with_our_own_content_is_adopted_not_a_conflict():
    events = source_events()
    state, _ = synced(events)
    victim = next(e for e in events if e.event_id == "automation-daily-control")
    delta = RemotePicture(complete=False, etags={href_key(COLLECTION + victim.name): '"reserialized"'})
    got = by_event(run_plan(events, state, delta, hashes={COLLECTION + victim.name: victim.desired_hash}))
    action = got["automation-daily-control"]
    assert action.action == "noop" and action.adopt_etag == '"reserialized"' and action.conflict is None


def test_removed_from_the_source_is_deleted_or_left_per_delete_removed(tmp_path):
    state, picture = synced(source_events())
    copy = tmp_path / "calendar.global.yaml"
    text = FIXTURE.read_text()
    start = text.index('        - id: "spine-weekly-hygiene-cadence"')
    end = text.index("    life:")
    copy.write_text(text[:start] + "\n" + text[end:])
    events = source_events(copy)
    (delete,) = [a for a in run_plan(events, state, picture) if a.action == "delete"]
    assert (
        delete.event_id == "spine-weekly-hygiene-cadence" and delete.if_match == '"etag-spine-weekly-hygiene-cadence"'
    )
    kept = by_event(run_plan(events, state, picture, delete_removed=False))["spine-weekly-hygiene-cadence"]
    assert kept.action == "skip" and "delete_removed" in kept.reason
    # Only the layers in scope lose events: a run limited to infrastructure deletes nothing of spine.
    infra_only = [e for e in events if e.layer == "infrastructure"]
    assert not [a for a in run_plan(infra_only, state, picture, scope={"infrastructure"}) if a.action == "delete"]
    # Already gone on the server: a delete that only touches the state.
    del picture.etags[href_key(delete.href)]
    (gone,) = [a for a in run_plan(events, state, picture) if a.action == "delete"]
    assert gone.local_only


def test_unknown_resources_in_the_calendar_are_never_planned():
    events = source_events()
    state, picture = synced(events)
    picture.etags[href_key(COLLECTION + "someone-else.ics")] = '"x"'
    actions = run_plan(events, state, picture)
    assert all(a.href != COLLECTION + "someone-else.ics" for a in actions)


def test_limits_defer_the_excess_per_kind():
    actions = run_plan(source_events(), SyncState(), RemotePicture())
    assert apply_limits(actions, Limits(create=1, update=5, delete=5)) == 3
    creates = [a for a in actions if a.action == "create"]
    assert [a.deferred for a in creates] == [False, True, True, True]


def test_state_round_trip_and_a_damaged_file_is_an_input_error(tmp_path):
    state, _ = synced(source_events())
    path = tmp_path / "state.json"
    save_state(path, state)
    data = json.loads(path.read_text())
    entry = next(iter(data["events"].values()))
    for name in ("canonical_key", "provider", "layer", "event_id", "remote_calendar_id", "remote_event_id",
                 "remote_etag", "last_desired_hash", "last_synced_at", "tombstone"):  # fmt: skip
        assert name in entry, name
    assert data["sync_token"] == "t1" and entry["provider"] == "caldav"
    assert load_state(path).events == state.events
    path.write_text("{not json")
    with pytest.raises(ContractError, match="not JSON"):
        load_state(path)


def test_the_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "calendar-sync" / ".lock"
    first, second = SyncLock(path), SyncLock(path)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder().isdigit()
    first.release()
    assert second.acquire()
    second.release()


def test_transient_errors_are_retried_with_backoff_and_others_are_not():
    waits, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise DavError("protocol", "busy", status=503)
        return "etag"

    assert with_retry(flaky, 3, [0.01, 0.02], sleep=waits.append) == ("etag", 3)
    assert waits == [0.01, 0.02]

    def refused():
        calls.append(1)
        raise DavError("precondition", "changed", status=412)

    calls.clear()
    with pytest.raises(DavError) as caught:
        with_retry(refused, 3, [0], sleep=waits.append)
    assert len(calls) == 1 and caught.value.attempts == 1


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [("protocol", 429, "rate_limited"), ("protocol", 502, "transport_error"), ("timeout", None, "transport_error"),
     ("auth", 401, "auth_failed"), ("precondition", 412, "precondition_failed"), ("conflict", 409, "conflict_error"),
     ("protocol", 400, "validation_error"), ("too_large", 507, "validation_error")],
)  # fmt: skip
def test_errors_fall_in_the_spines_classes(kind, status, expected):
    assert classify(DavError(kind, "x", status=status)) == expected


def test_the_journal_replays_over_the_state_and_a_torn_last_line_is_cut_not_glued(tmp_path):
    state, _ = synced(source_events())
    path = tmp_path / "state.json"
    save_state(path, state)
    first, second = sorted(state.events)[:2]
    journal = StateJournal(path)
    state.events[first].remote_etag = '"after-write-1"'
    journal.append(first, state.events[first], state)
    journal.close()
    with open(journal_path(path), "ab") as torn:  # a kill in the middle of the next append
        torn.write(b'{"key": "' + second.encode() + b'", "mapp')
    loaded = load_state(path)
    assert loaded.events[first].remote_etag == '"after-write-1"'
    assert loaded.events[second].remote_etag == state.events[second].remote_etag  # the torn line: ignored
    journal = StateJournal(path)
    state.events[second].remote_etag = '"after-write-2"'
    journal.append(second, state.events[second], state)
    journal.close()
    lines = journal_path(path).read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b"" and all(json.loads(line) for line in lines[:2])
    assert load_state(path).events[second].remote_etag == '"after-write-2"'
    # A first run killed before its state file existed: the journal alone is the state.
    path.unlink()
    assert set(load_state(path).events) == {first, second}


def test_a_bad_journal_line_before_the_last_is_damage_with_its_line(tmp_path):
    path = tmp_path / "state.json"
    journal_path(path).write_text('not json\n{"key": "k", "mapping": {}}\n')
    with pytest.raises(ContractError, match=r"journal:1: unreadable journal line"):
        load_state(path)


def test_etags_compare_weakly_for_change_detection():
    assert same_etag('W/"a"', '"a"') and same_etag('"a"', '"a"') and same_etag(None, None)
    assert not same_etag('"a"', '"b"') and not same_etag('"a"', None) and not same_etag(None, 'W/"a"')


def test_a_conflict_the_state_remembers_is_forgotten_when_the_server_is_back_at_our_etag():
    events = source_events()
    state, picture = synced(events)
    mapping = next(m for m in state.events.values() if m.event_id == "automation-daily-control")
    mapping.seen_etag = '"someone-elses"'
    actions = by_event(run_plan(events, state, picture))
    noop = actions["automation-daily-control"]
    assert noop.action == "noop" and noop.adopt_etag == mapping.remote_etag
