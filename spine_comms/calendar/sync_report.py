"""What a calendar sync run reports: the spine's data keys, the checks, the readable lines."""

from __future__ import annotations

from spine_comms.calendar.sync_plan import WRITES, Action
from spine_comms.calendar.sync_state import LOCK_HELD, SyncLock
from spine_comms.core.result import Check, Result, Status


def lock_held(run: dict, setup, lock: SyncLock) -> Result:
    holder = lock.holder()
    message = f"another calendar sync holds the lock {setup.lock_path}" + (f" (pid {holder})" if holder else "")
    error = {
        "layer": None,
        "event_id": None,
        "canonical_key": None,
        "href": None,
        "action": "lock",
        "class": "conflict_error",
        "code": LOCK_HELD,
        "status": None,
        "message": message,
        "attempts": 1,
    }
    result = Result(status=Status.FAIL)
    result.data = {
        **run,
        "summary": summary_of([], [], [error]),
        "actions": [],
        "conflicts": [],
        "errors": [error],
        "requests": 0,
    }
    result.add(
        Check(
            id="calendar.sync.lock",
            status=Status.FAIL,
            detail=message,
            subject=str(setup.lock_path),
            expected="free",
            actual="held",
            evidence={"error_code": LOCK_HELD, "holder": holder},
        )
    )
    result.summary.append(f"{LOCK_HELD}: {message}; nothing was done")
    return result


def summary_of(actions: list[Action], conflicts: list[dict], errors: list[dict]) -> dict:
    count = lambda kind: sum(1 for a in actions if a.action == kind)  # noqa: E731
    done = lambda kind: sum(1 for a in actions if a.action == kind and a.done)  # noqa: E731
    return {
        "planned": sum(1 for a in actions if a.action in WRITES),
        "created": done("create"),
        "updated": done("update"),
        "deleted": done("delete"),
        "noop": count("noop"),
        "skipped": count("skip"),
        "conflicts": len(conflicts),
        "errors": len(errors),
        "deferred": sum(1 for a in actions if a.deferred),
    }


def report(result: Result, run, setup, actions, errors, stopped, how, collection, limits) -> Result:
    mode = run["mode"]
    conflicts = [a.conflict for a in actions if a.conflict]
    summary = summary_of(actions, conflicts, errors)
    result.data = {
        **run,
        "summary": summary,
        "actions": [a.to_dict(mode) for a in actions],
        "conflicts": conflicts,
        "errors": errors,
        "target": {"account": setup.account.id, "calendar": setup.sync.target_calendar, "href": collection},
        "listing": how,
        "stopped_early": stopped,
        "limits": {"max_create": limits.create, "max_update": limits.update, "max_delete": limits.delete},
    }
    subject = f"{setup.account.id}:{collection}"
    result.add(
        Check(
            id="calendar.sync.source",
            status=Status.OK,
            detail=f"{len(setup.events)} event(s) in {len(setup.source.layer_order)}"
            f" layer(s); writing {', '.join(setup.layers) or 'none'}",
            subject=str(setup.source.path),
            expected=None,
            actual=setup.layers,
            evidence={"sha256": setup.source.sha256},
        )
    )
    result.add(
        Check(
            id="calendar.sync.target",
            status=Status.OK,
            detail=f"calendar {setup.sync.target_calendar} at {collection}",
            subject=subject,
            expected=setup.sync.target_calendar,
            actual=collection,
        )
    )
    result.add(Check(id="calendar.sync.listing", status=Status.OK, detail=how, subject=subject))
    conflict_status = Status.WARN if conflicts and setup.sync.conflict_policy != "spine_wins" else Status.OK
    result.add(
        Check(
            id="calendar.sync.conflicts",
            status=conflict_status,
            detail=f"{len(conflicts)} event(s) changed on the server (policy {setup.sync.conflict_policy})",
            subject=subject,
            expected=0,
            actual=len(conflicts),
            evidence=conflicts or None,
        )
    )
    deferred = summary["deferred"]
    result.add(
        Check(
            id="calendar.sync.limits",
            status=Status.WARN if deferred else Status.OK,
            detail=f"{deferred} write(s) deferred to the next run" if deferred else "within the limits",
            subject=subject,
            expected=result.data["limits"],
            actual=deferred,
        )
    )
    done = summary["created"] + summary["updated"] + summary["deleted"]
    if mode == "execute":
        status = Status.OK if not errors else (Status.PARTIAL if done else Status.FAIL)
        detail = f"{done} write(s) done, {len(errors)} failed" + ("; stopped at the first error" if stopped else "")
        result.add(
            Check(
                id="calendar.sync.writes",
                status=status,
                detail=detail,
                subject=subject,
                expected=summary["planned"] - deferred,
                actual=done,
                evidence=errors or None,
            )
        )
    if errors:
        result.status = Status.PARTIAL if done else Status.FAIL
    else:
        result.status = Status.WARN if (conflict_status is Status.WARN or deferred) else Status.OK
    result.summary.append(f"{run['run_id']} {mode}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    shown = [a for a in actions if a.action != "noop"]
    for a in shown[:60]:
        mark = " (deferred)" if a.deferred else (" FAILED" if a.error else (" done" if a.done else ""))
        result.summary.append(f"{a.action:8} {a.layer}/{a.event_id}{mark}: {a.reason}")
    if len(shown) > 60:
        result.summary.append(f"... and {len(shown) - 60} more (see --json)")
    if mode == "dry-run" and summary["planned"]:
        result.summary.append("dry run: nothing written; run calendar.sync.execute --execute --yes to apply")
    return result
