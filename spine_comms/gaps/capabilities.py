"""gaps.file, gaps.list and gaps.close on the root's operational.gaps.yaml, flags as the spine's.

Filing and closing hold the spine's `gaps` git lock across read, allocate and
write, so two writers (these commands, or the spine's own gaps-file) never lose
each other's gap. Input problems are all reported, one line each, exit 2, before
the lock is taken; nothing is written then. `--commit` commits the file alone
with the spine's Gap-* trailers (the default is no commit).
"""

from __future__ import annotations

from pathlib import Path

from spine_comms.core.atomic import write_atomic
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.yaml_roundtrip import RoundTripYaml
from spine_comms.gaps import drafts, listing, registry
from spine_comms.gaps.git_commit import CommitFailed, check_repository, close_message, commit_file, file_message
from spine_comms.gaps.git_commit import run_key_for_trailer as trailer_run_key
from spine_comms.gaps.lock import GitLock
from spine_comms.gaps.options import (
    WAIT_ENV,
    AllOpt,
    BatchOpt,
    CloseIdOpt,
    CloseStatusOpt,
    CommitOpt,
    DescriptionFileOpt,
    DescriptionOpt,
    DiscoveredByOpt,
    DocOpt,
    FixedInOpt,
    IdOpt,
    LoopAlias2Opt,
    LoopAliasOpt,
    LoopFilterOpt,
    LoopIdOpt,
    NotesOpt,
    RegressionLockOpt,
    SeverityFilterOpt,
    SeverityOpt,
    StatusFilterOpt,
    TypeFilterOpt,
    TypeOpt,
    WaitOpt,
)  # fmt: skip

DEFAULT_WAIT_SECONDS = 15.0


@capability("gaps.file", safety="mutating", approval="auto")
def gaps_file(
    ctx: RunContext,
    gap_id: IdOpt = "auto",
    gap_type: TypeOpt = None,
    severity: SeverityOpt = None,
    description: DescriptionOpt = None,
    description_file: DescriptionFileOpt = None,
    discovered_by: DiscoveredByOpt = None,
    doc: DocOpt = None,
    loop_id: LoopIdOpt = None,
    parent_loop: LoopAliasOpt = None,
    loop: LoopAlias2Opt = None,
    batch: BatchOpt = None,
    commit: CommitOpt = False,
    wait_seconds: WaitOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """File a gap (or a batch) into operational.gaps.yaml in the spine's schema: the next GAP-OP-<n>
    allocated under the gaps lock, the loop id required, an open gap with the same title not filed
    twice (skipped, reported). The file changes only by the appended entries and `updated`."""
    aliases = {"--parent-loop": parent_loop, "--loop": loop}
    if batch is not None:
        single = {"--id": gap_id != "auto", "--type": gap_type, "--severity": severity, "--description": description,
                  "--description-file": description_file, "--doc": doc}  # fmt: skip
        if any(single.values()):
            flags = ", ".join(flag for flag, value in single.items() if value)
            raise UsageError(f"with --batch, give {flags} in the batch items, not as flags")
        wanted = drafts.from_batch(batch, discovered_by=discovered_by, loop_id=loop_id, loop_aliases=aliases)
    else:
        wanted = drafts.from_flags(gap_id=gap_id, gap_type=gap_type, severity=severity, description=description,
                                   description_file=description_file, discovered_by=discovered_by, doc=doc,
                                   loop_id=loop_id, loop_aliases=aliases)  # fmt: skip
    result = Result()
    for warning in sorted({w for d in wanted for w in d.warnings}):
        ctx.log(warning, level="warn")
        result.add(Check("gaps.file.loop_flag", Status.WARN, warning, "--loop-id"))
    path = registry.gaps_path(ctx.root)
    if commit and not dry_run:
        check_repository(path, ctx.env)  # before the lock and any change
    moment = ctx.clock()
    with _lock(ctx, wait_seconds):
        existed = path.exists()
        gaps = registry.open_gaps(path, create_stamp=registry.stamp(moment))
        outcome = registry.file_gaps(gaps, wanted, moment)
        result.data = {"file": str(path), "dry_run": dry_run, "filed": outcome.filed, "skipped": outcome.skipped,
                       "written": False, "commit": None, "diff": gaps.diff(path.name).splitlines()}  # fmt: skip
        for entry in outcome.filed:
            result.add(Check("gaps.file.filed", Status.OK, f"{entry['id']} filed", entry["id"], actual=entry["id"]))
            result.summary.append(f"FILED: {entry['id']} ({entry['severity']}, {entry['type']}): {entry['title']}")
        for skipped in outcome.skipped:
            result.add(Check("gaps.file.duplicate", Status.OK, f"already open as {skipped['existing_id']}",
                             skipped["existing_id"], actual=skipped["title"]))  # fmt: skip
            result.summary.append(f"SKIPPED_DUPLICATE: {skipped['existing_id']} is open as {skipped['title']!r}")
        if dry_run:
            result.summary += ["dry run: the diff:", *gaps.diff(path.name).splitlines(), "nothing written"]
        elif outcome.filed:
            message = file_message([e["id"] for e in outcome.filed], trailer_run_key(ctx.env))
            _write(ctx, gaps, path, existed, commit, message, result, "gaps.file.commit")
    return result


@capability("gaps.list", safety="read-only", approval="auto")
def gaps_list(
    ctx: RunContext,
    status: StatusFilterOpt = None,
    all_statuses: AllOpt = False,
    severity: SeverityFilterOpt = None,
    gap_type: TypeFilterOpt = None,
    loop: LoopFilterOpt = None,
) -> Result:
    """List the gaps of operational.gaps.yaml (open ones by default), filtered by status, severity,
    type or loop, and check every entry against the spine's gap schema (a warn names each violation)."""
    filters = listing.Filters(None if all_statuses else set(status or ["open"]), severity or [], gap_type or [], loop)
    filters.check()
    path = registry.gaps_path(ctx.root)
    items = registry.entries(registry.open_gaps(path))
    rows, counts, broken = listing.survey(items, filters)
    result = Result(data={"file": str(path), "total": len(items), "matched": len(rows), "counts": counts,
                          "gaps": rows, "schema_violations": broken})  # fmt: skip
    tally = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    result.summary = [f"{len(rows)} of {len(items)} gaps match ({tally})", *map(listing.line, rows)]
    detail = f"{len(broken)} schema violation(s): {'; '.join(broken[:5])}" if broken else "every entry conforms"
    result.add(Check("gaps.schema", Status.WARN if broken else Status.OK, detail, str(path), "conforms",
                     len(broken), broken))  # fmt: skip
    return result


@capability("gaps.close", safety="destructive", approval="manual")
def gaps_close(
    ctx: RunContext,
    gap_id: CloseIdOpt = None,
    batch: BatchOpt = None,
    status: CloseStatusOpt = None,
    fixed_in: FixedInOpt = None,
    notes: NotesOpt = None,
    regression_lock_id: RegressionLockOpt = None,
    commit: CommitOpt = False,
    wait_seconds: WaitOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Mark gaps fixed or closed: status, fixed_in, notes, regression_lock_id and fixed_at/closed_at,
    round-trip under the gaps lock. A gap that is not open is skipped. High and critical gaps need
    --regression-lock-id (LEGACY-NO-REGRESSION-LOCK-* is refused). A dry run unless --execute --yes."""
    closures = drafts.closures_from(list(gap_id or []), batch, status=status, fixed_in=fixed_in, notes=notes,
                                    regression_lock_id=regression_lock_id)  # fmt: skip
    path = registry.gaps_path(ctx.root)
    if commit and not dry_run:
        check_repository(path, ctx.env)
    moment = ctx.clock()
    result = Result()
    with _lock(ctx, wait_seconds):
        gaps = registry.open_gaps(path)
        outcome = registry.close_gaps(gaps, closures, moment)
        result.data = {"file": str(path), "dry_run": dry_run, "closed": outcome.closed, "skipped": outcome.skipped,
                       "written": False, "commit": None, "diff": gaps.diff(path.name).splitlines()}  # fmt: skip
        for item in outcome.closed:
            result.add(Check("gaps.close.closed", Status.OK, f"{item['id']} {item['status']}", item["id"],
                             actual=item["status"]))  # fmt: skip
            result.summary.append(f"CLOSED: {item['id']} (status={item['status']}, "
                                  f"fixed_in={item.get('fixed_in', '-')})")  # fmt: skip
        for item in outcome.skipped:
            result.add(Check("gaps.close.skipped", Status.OK, f"already {item['status']}", item["id"]))
            result.summary.append(f"SKIPPED: {item['id']} already {item['status']} (idempotent)")
        if dry_run:
            result.summary += ["dry run: the diff:", *gaps.diff(path.name).splitlines(), "nothing written"]
        elif outcome.closed:
            message = close_message(outcome.closed, trailer_run_key(ctx.env))
            _write(ctx, gaps, path, True, commit, message, result, "gaps.close.commit")
    return result


def _lock(ctx: RunContext, given: float | None) -> GitLock:
    raw = ctx.env.get(WAIT_ENV, "")
    try:
        wait = given if given is not None else (float(raw) if raw.strip() else DEFAULT_WAIT_SECONDS)
    except ValueError:
        raise UsageError(f"{WAIT_ENV}={raw!r} is not a number of seconds") from None

    def waiting(holder: str) -> None:
        ctx.log(f"waiting up to {wait:g} s for the gaps lock ({holder})")

    return GitLock(ctx.root.path, "gaps", wait, on_wait=waiting)


def _write(ctx: RunContext, doc: RoundTripYaml, path: Path, existed: bool, commit: bool, message: str,
           result: Result, check_id: str) -> None:  # fmt: skip
    """Save, then commit when asked; a refused commit puts the file back as it was (fail, exit 1)."""
    doc.save(path)
    result.data["written"] = True
    if not commit:
        result.summary.append(f"written; not committed (--commit commits {path.name} with the Gap-* trailers)")
        return
    try:
        result.data["commit"] = commit_file(path, message, ctx.env)
    except CommitFailed as exc:
        if existed:
            write_atomic(path, doc.original, path.stat().st_mode & 0o777)
        else:
            path.unlink(missing_ok=True)
        result.data["written"] = False
        result.add(Check(check_id, Status.FAIL, f"{exc.message}; {path.name} put back as it was", str(path),
                         "committed", "refused by git"))  # fmt: skip
        result.summary.append(f"FAIL: {exc.message}; nothing changed")
        return
    result.add(Check(check_id, Status.OK, f"committed {result.data['commit'][:12]}", str(path)))
    result.summary.append(f"committed {result.data['commit'][:12]}")
