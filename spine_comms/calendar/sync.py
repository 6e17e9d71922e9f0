"""calendar.sync.plan and calendar.sync.execute: the operator's calendar layers onto a CalDAV calendar.

The source is calendar.global.yaml (or any events file in its shape); the target is the
DAV contract's sync.target_calendar. The server's picture comes from RFC 6578
sync-collection with the stored token (one request when nothing changed), or a full
listing when the server has no token for us. The plan is pure (sync_plan), the writes
conditional (sync_apply), the memory a state file and a lock (sync_state). Output data
keys are the spine's calendar sync's: run_id, mode, layers, summary, actions,
conflicts, errors, state_path (plus target, listing and requests).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.calendar.dav_lookup import client_for, dav_errors
from spine_comms.calendar.layers import DesiredEvent, Source, desired_events, load_source
from spine_comms.calendar.sync_plan import Limits, Policy, apply_limits, href_key, plan
from spine_comms.calendar.sync_report import lock_held, report
from spine_comms.calendar.sync_state import SyncLock, SyncState, load_state
from spine_comms.contracts.dav import DAV_CONTRACT, Account, DavContract, Sync
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Result

SourceOpt = Annotated[
    Path | None,
    typer.Option(
        "--source",
        metavar="FILE",
        help="Events file in calendar.global.yaml's shape, instead of the "
        "contract's sync.source (relative paths: under the contracts directory).",
    ),
]
LayerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--layer",
        metavar="LAYER",
        help="Only this layer (repeatable). Default: sync.layers, else every "
        "layer whose authority is spine. External-authority layers are never written.",
    ),
]
StatePathOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-path",
        metavar="FILE",
        help="The sync state file instead of sync.state_path (relative paths: under the mailroom state directory).",
    ),
]
FullScanOpt = Annotated[
    bool,
    typer.Option(
        "--full-scan",
        help="List the whole calendar instead of asking for the changes since the stored "
        "sync token (RFC 6578); the fallback anyway when the server has no token for us.",
    ),
]


@dataclass
class Setup:
    contract: DavContract
    sync: Sync
    account: Account
    source: Source
    events: list[DesiredEvent]
    layers: list[str]  # written
    skipped: dict[str, str]  # layer -> why it is not written
    scope: set[str] | None
    state_path: Path
    lock_path: Path


@capability("calendar.sync.plan", safety="read-only", approval="auto")
def sync_plan(
    ctx: RunContext,
    source: SourceOpt = None,
    layer: LayerOpt = None,
    state_path: StatePathOpt = None,
    full_scan: FullScanOpt = False,
) -> Result:
    """What calendar.sync.execute would do, per event: create, update, delete, noop, conflict or
    skip, with the reason. Reads the server (sync-collection, or a full listing) and the state;
    writes nothing."""
    return _run(ctx, execute=False, source=source, layer=layer, state_path=state_path, full_scan=full_scan)


@capability("calendar.sync.execute", safety="mutating", approval="manual")
def sync_execute(
    ctx: RunContext,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute, approval asked
    source: SourceOpt = None,
    layer: LayerOpt = None,
    max_create: Annotated[
        int | None,
        typer.Option(
            "--max-create",
            min=0,
            metavar="N",
            help="At most N creates this run (capped by sync.limits.max_create); the rest are "
            "deferred to the next run.",
        ),
    ] = None,
    max_update: Annotated[
        int | None,
        typer.Option("--max-update", min=0, metavar="N", help="At most N updates (capped by sync.limits.max_update)."),
    ] = None,
    max_delete: Annotated[
        int | None,
        typer.Option("--max-delete", min=0, metavar="N", help="At most N deletes (capped by sync.limits.max_delete)."),
    ] = None,
    stop_on_first_error: Annotated[
        bool | None,
        typer.Option(
            "--stop-on-first-error/--continue-on-error",
            help="Stop at the first failed write, or go on with the others. Default: sync.stop_on_first_error (true).",
        ),
    ] = None,
    retry_max_attempts: Annotated[
        int | None,
        typer.Option(
            "--retry-max-attempts",
            min=1,
            max=10,
            metavar="N",
            help="Tries per write on transient failures (timeouts, 5xx, 429). Default: sync.retry.max_attempts.",
        ),
    ] = None,
    retry_backoff_sec: Annotated[
        float | None,
        typer.Option(
            "--retry-backoff-sec",
            min=0,
            max=300,
            metavar="SECONDS",
            help="Wait between tries instead of sync.retry.backoff_seconds.",
        ),
    ] = None,
    state_path: StatePathOpt = None,
    full_scan: FullScanOpt = False,
) -> Result:
    """Apply the sync plan to the contract's CalDAV calendar: creates (If-None-Match: *), updates
    and deletes (If-Match), within the limits, retrying transient failures, saving the state as it
    goes. A dry run unless --execute, which needs approval (--yes). A second run with no change
    is all noops and sends no write. Another run holding the lock: status fail, error code
    sync_lock_held (exit 1)."""
    return _run(
        ctx,
        execute=not dry_run,  # decided by the runner, which also asked for approval
        source=source,
        layer=layer,
        state_path=state_path,
        full_scan=full_scan,
        limits=(max_create, max_update, max_delete),
        stop=stop_on_first_error,
        retry=(retry_max_attempts, retry_backoff_sec),
    )


# ---- the run ------------------------------------------------------------------------------------------------


def _run(
    ctx, *, execute, source, layer, state_path, full_scan, limits=(None, None, None), stop=None, retry=(None, None)
) -> Result:
    setup = _setup(ctx, source, layer, state_path)
    now = ctx.clock()
    digest = hashlib.sha1(f"{now.isoformat()}|{os.getpid()}|{uuid.uuid4()}".encode()).hexdigest()[:8]
    run = {
        "run_id": f"CALSYNC-{now:%Y%m%d-%H%M%S}-{digest}",
        "mode": "execute" if execute else "dry-run",
        "layers": setup.layers,
        "state_path": str(setup.state_path),
    }
    if not execute:
        return _plan_and_apply(ctx, setup, run, None, full_scan, limits, stop, retry)
    lock = SyncLock(setup.lock_path)
    if not lock.acquire():
        return lock_held(run, setup, lock)
    with lock:
        return _plan_and_apply(ctx, setup, run, lock, full_scan, limits, stop, retry)


def _plan_and_apply(ctx, setup: Setup, run: dict, lock, full_scan, limits, stop, retry) -> Result:
    from spine_comms.calendar.sync_apply import Executor, StateWriteError
    from spine_comms.calendar.sync_remote import locate_and_read, read_suspects, settle_token
    from spine_comms.protocols.dav.model import KINDS

    execute = lock is not None
    state = load_state(setup.state_path)
    _check_state_account(state, setup)
    client = client_for(ctx, setup.contract, setup.account)
    account = setup.account.id
    result = Result()
    with client:
        # Every DAV failure here leaves the plan unknown: exit 3, naming the account.
        with dav_errors(account, kinds=KINDS):
            collection, picture, token, how = locate_and_read(
                client, setup.account, setup.sync.target_calendar, state, full_scan, ctx.log,
                recheck=timedelta(hours=setup.sync.full_listing_every_hours), now=ctx.clock(),
            )  # fmt: skip
            if state.calendar and href_key(state.calendar) != href_key(collection):
                raise UsageError(
                    f"the sync state {setup.state_path} maps events in {state.calendar}, the target is {collection}",
                    hint="give --state-path for a new state, or move the old one aside",
                )
            hashes = read_suspects(client, state, picture)
        actions = plan(
            setup.events,
            state,
            picture,
            collection_href=collection,
            policy=Policy(setup.sync.conflict_policy, setup.sync.delete_removed),
            scope=setup.scope,
            skipped_layers=setup.skipped,
            server_hashes=hashes,
        )
        effective = _limits(setup.sync, limits)
        apply_limits(actions, effective)
        errors: list[dict] = []
        stopped = False
        if execute:
            state.calendar, state.account = collection, account
            retry_attempts = retry[0] or setup.sync.retry.max_attempts
            backoff = [retry[1]] if retry[1] is not None else list(setup.sync.retry.backoff_seconds)
            executor = Executor(
                client,
                state,
                setup.state_path,
                collection,
                retry_attempts,
                backoff,
                setup.sync.stop_on_first_error if stop is None else stop,
                now=lambda: ctx.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                log=ctx.log,
            )
            if picture.complete:
                state.full_listing_at = ctx.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                executor.run(actions)
                settle_token(client, collection, state, token, executor, ctx.log)
                if picture.complete:
                    executor.save()  # the listing's time, whether or not anything else changed
            except StateWriteError:
                pass  # recorded in executor.errors as state_write_error
            errors, stopped = executor.errors, executor.stopped_early
        run["requests"] = client.requests
    return report(result, run, setup, actions, errors, stopped, how, collection, effective)


def _check_state_account(state: SyncState, setup: Setup) -> None:
    if state.account and state.account != setup.account.id:
        raise UsageError(
            f"the sync state {setup.state_path} belongs to account {state.account}, the target is on "
            f"{setup.account.id}",
            hint="give --state-path for a new state, or move the old one aside",
        )


def _limits(sync: Sync, chosen) -> Limits:
    caps = sync.limits
    pick = lambda value, cap: cap if value is None else min(value, cap)  # noqa: E731
    return Limits(pick(chosen[0], caps.max_create), pick(chosen[1], caps.max_update), pick(chosen[2], caps.max_delete))


# ---- inputs ---------------------------------------------------------------------------------------------------


def _setup(ctx: RunContext, source_opt: Path | None, layer_opt: list[str] | None, state_opt: Path | None) -> Setup:
    contract = ctx.contracts.load(DAV_CONTRACT, DavContract)
    if contract.sync is None:
        raise UsageError(
            f"{DAV_CONTRACT} has no `sync` section",
            hint="add sync.target_calendar (a calendar id of the contract) and, if needed, sync.source",
        )
    sync = contract.sync
    account = contract.account(sync.account)
    source_path = ctx.contracts.path(str(source_opt) if source_opt else sync.source)
    source = load_source(source_path)
    ctx.contracts.read[str(source_path)] = source.sha256
    order = source.layer_order
    chosen = layer_opt or sync.layers
    if chosen:
        unknown = [name for name in chosen if name not in order]
        if unknown:
            raise UsageError(f"layer {', '.join(unknown)} is not in {source_path.name} (it has {', '.join(order)})")
        chosen = list(dict.fromkeys(chosen))
    external = {
        name: f"layer {name} has authority external: never written"
        for name in order
        if source.authority(name) == "external"
    }
    if chosen:
        written = [name for name in order if name in chosen and name not in external]
        skipped = {name: why for name, why in external.items() if name in chosen}
        scope = set(written)
    else:
        written = [name for name in order if name not in external]
        skipped, scope = external, None
    events = desired_events(source, written + list(skipped))
    state_dir = ctx.mailroom.state
    state_path = Path(state_opt) if state_opt else Path(sync.state_path)
    state_path = state_path if state_path.is_absolute() else state_dir / state_path
    lock_path = Path(sync.lock_path)
    lock_path = lock_path if lock_path.is_absolute() else state_dir / lock_path
    return Setup(
        contract,
        sync,
        account,
        source,
        events,
        written,
        skipped,
        scope,
        state_path,
        lock_path,
    )
