"""receipts.prune: the spine's retention policy applied to receipt directories, a dry run unless --execute.

Receipts pile up (one verify run writes 9 directories, 380 KiB to 2 MB); the
spine keeps session receipts 14 days. What goes: every `RCAP-*` directory older
than the policy's retention_days, except the latest receipt of each capability,
which stays however old so "the latest receipt of X" always answers. Links are
never followed and never removed: a symlink under the receipts directory is
reported and left alone, and a receipts directory that is itself a symlink is
refused.
"""

from __future__ import annotations

import shutil

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status


@capability("receipts.prune", safety="mutating", approval="manual")
def receipts_prune(
    ctx: RunContext,
    dry_run: bool = True,
) -> Result:
    """Apply the spine's receipt retention (ops/bindings/evidence.retention.policy.yaml, else
    receipts/sessions/RCAP-* kept 14 days): list, or with --execute remove, the receipt directories older
    than the retention, never the latest receipt of a capability and never through a symlink. Reports the
    directories and bytes freed. The policy asks for approval to purge: --execute needs --yes."""
    from spine_comms.operations.retention import load_policy, plan_prune

    policy, doc = load_policy(ctx.root)
    if doc is not None:
        ctx.contracts.read[str(doc.path)] = doc.sha256
    execute = not dry_run  # the runner's decision: --execute with approval (--yes), never a default
    plan = plan_prune(ctx.root, policy, ctx.clock())
    result = Result()
    result.add(
        Check(
            id="receipts.prune.policy",
            status=Status.OK,
            detail=f"{policy.pattern} kept {policy.days} days (from {policy.source})",
            subject=str(plan.directory),
            evidence={"pattern": policy.pattern, "retention_days": policy.days, "source": policy.source},
        )
    )
    expired_bytes = sum(r.bytes for r in plan.expired)
    removed, failed = [], []
    if not policy.purge_eligible:
        result.add(
            Check(
                id="receipts.prune.eligible",
                status=Status.WARN,
                detail="the policy says session receipts are not purge-eligible: nothing removed",
                subject=policy.source,
            )
        )
    elif execute:
        for receipt in plan.expired:
            try:
                shutil.rmtree(receipt.path)  # fd-based on Linux: a link inside is unlinked, never followed
                removed.append(receipt)
            except OSError as exc:
                failed.append({**receipt.to_dict(), "error": str(exc)})
    freed = sum(r.bytes for r in removed)
    acted = execute and policy.purge_eligible
    result.data = {
        "dry_run": not acted,
        "policy": {
            "pattern": policy.pattern,
            "retention_days": policy.days,
            "source": policy.source,
            "purge_eligible": policy.purge_eligible,
        },
        "directory": str(plan.directory),
        "expired": [r.to_dict() for r in plan.expired],
        "kept_latest": [r.to_dict() for r in plan.kept_latest],
        "kept_young": plan.kept_young,
        "skipped": plan.skipped,
        "removed": len(removed),
        "removed_files": sum(r.files for r in removed),
        "bytes_freed": freed,
        "would_free_bytes": 0 if acted else expired_bytes,
        "failed": failed,
    }
    if acted:
        status = Status.PARTIAL if failed and removed else Status.FAIL if failed else Status.OK
        detail = f"removed {len(removed)} receipt director(ies), {_size(freed)} freed"
        if failed:
            detail += f"; {len(failed)} could not be removed"
    else:
        status = Status.OK
        detail = (
            f"dry run: {len(plan.expired)} receipt director(ies) older than {policy.days} days, {_size(expired_bytes)}"
        )
    result.add(
        Check(
            id="receipts.prune.expired",
            status=status,
            detail=detail,
            subject=str(plan.directory),
            expected=f"none older than {policy.days} days but each capability's latest",
            actual={"expired": len(plan.expired), "removed": len(removed), "failed": len(failed)},
            evidence={"failed": failed[:20]},
        )
    )
    if plan.kept_latest:
        names = ", ".join(sorted(r.capability for r in plan.kept_latest))
        result.add(
            Check(
                id="receipts.prune.latest_kept",
                status=Status.OK,
                detail=f"{len(plan.kept_latest)} expired receipt(s) kept as their capability's latest: {names}",
                subject=str(plan.directory),
            )
        )
    if plan.skipped:
        result.add(
            Check(
                id="receipts.prune.skipped",
                status=Status.WARN,
                detail=f"{len(plan.skipped)} entr(ies) matching the pattern left alone (symlinks, not run keys)",
                subject=str(plan.directory),
                evidence=plan.skipped[:20],
            )
        )
    verb = "removed" if acted else "would remove"
    count = len(removed) if acted else len(plan.expired)
    size = freed if acted else expired_bytes
    result.summary.append(
        f"{verb} {count} receipt director(ies), {_size(size)}; kept {plan.kept_young} younger than "
        f"{policy.days} days and {len(plan.kept_latest)} as their capability's latest"
    )
    if not acted and plan.expired:
        result.summary.append("add --execute --yes to remove them")
    return result


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"
