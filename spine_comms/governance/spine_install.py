"""spine.install: register the toolkit's capabilities into a spine checkout, the way capability.register would.

Per capability: an executable shim ops/plugins/communications/bin/spine-comms-<id>
(shim.py), an entry in ops/capabilities.yaml (arg_protocol argparse, domain
communications, plane fabric, touches_api with its secrets preconditions when
the registry says so), one in ops/bindings/capability_map.yaml and a listing in
the communications plugin of ops/plugins/MANIFEST.yaml, each file edited
round-trip. A dry run with the diff unless --execute (manual approval). Running
it again changes nothing. Ids the spine already registers to its own scripts
are reported and left alone unless named with --force. Afterwards the checkout
must pass the spine's D67/D63/D279 (capabilities.verify --spine-root).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import CouldNotEvaluate, SpineCommsError, UsageError
from spine_comms.core.registry_rules import RegistryFiles, RuleOutcome, d63, d67, d279, spine_lines
from spine_comms.core.result import Check, Result, Status
from spine_comms.governance import spine_edit, spine_mcp
from spine_comms.governance.registry_parity import cli_commands, merge_base_capabilities, read_spine
from spine_comms.governance.spine_entries import CapPlan, plan_capability

# The spine's own lock for registry edits (ops/lib/git-lock.sh, type capability_register): while we hold
# it, its capability.register waits, and we wait for it.
LOCK = "mailroom/state/locks/git.capability_register.lock"

SpineRootOpt = Annotated[
    Path | None, typer.Option("--spine-root", metavar="DIR", help="The spine checkout to install into (required).")
]
OnlyOpt = Annotated[
    list[str] | None,
    typer.Option("--only", metavar="ID", help="Install only this capability (repeatable). Default: all of them."),
]
ForceOpt = Annotated[
    list[str] | None,
    typer.Option("--force", metavar="ID", help="Take over this id although the spine registers it to its own script "
                 "(repeatable). The old script stays on disk; the entry then runs spine-comms."),
]  # fmt: skip
McpOpt = Annotated[
    bool,
    typer.Option("--mcp", help="Also register `spine-comms mcp serve` as the spine's communications-agent: its "
                 "entry in ops/bindings/agents.registry.yaml (mcp_type gateway, runtime_bindings, mcp_tools with a "
                 "safety each) and its server in .mcp.json."),
]  # fmt: skip
ExecutableOpt = Annotated[
    Path | None,
    typer.Option("--executable", metavar="PATH", help="The spine-comms the shims run (default: the one running "
                 "now). SPINE_COMMS_BIN overrides it when a shim runs."),
]  # fmt: skip


@capability("spine.install", safety="mutating", approval="manual")
def spine_install(
    ctx: RunContext,
    spine_root: SpineRootOpt = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute, approval asked
    only: OnlyOpt = None,
    force: ForceOpt = None,
    executable: ExecutableOpt = None,
    mcp: McpOpt = False,
) -> Result:
    """Register spine-comms' capabilities in a spine checkout: a shim per capability under
    ops/plugins/communications/bin/, entries in ops/capabilities.yaml, ops/bindings/capability_map.yaml and
    ops/plugins/MANIFEST.yaml, edited round-trip. Dry run with the diff by default; --execute --yes writes;
    a second run changes nothing. Ids the spine registers to its own scripts are left alone unless --force.
    With --mcp, also registers the MCP server (agents.registry.yaml, .mcp.json)."""
    if spine_root is None:
        raise UsageError("--spine-root DIR is required: the spine checkout to install into")
    execute = not dry_run  # decided by the runner, which also asked for approval
    root = spine_root.expanduser().resolve()
    for rel in (spine_edit.REGISTRY, spine_edit.MAP):
        if not (root / rel).is_file():
            raise UsageError(f"{root} is not a spine checkout: {rel} not found")
    specs = _chosen(only, force)
    binary = _executable(executable)
    with _registry_lock(root) if execute else _nothing():
        edits = spine_edit.load(root)
        caps = edits.docs[spine_edit.REGISTRY].data.get("capabilities") or {}
        mapped = edits.docs[spine_edit.MAP].data.get("capabilities") or {}
        plans = [plan_capability(s, caps, mapped, root, binary, s.id in set(force or [])) for s in specs]
        spine_edit.apply(edits, plans, ctx.clock().astimezone().date().isoformat())
        registered = spine_mcp.apply(edits, root, binary) if mcp else None
        diff = edits.diff()
        written: list[str] = []
        write_error = _write(edits, plans, written) if execute else None
    result = Result()
    _report(result, plans, edits, execute, written, write_error)
    ours = {p.cap_id for p in plans if p.action != "conflict"}
    try:
        outcomes = _parity(root, edits, execute)
        result.add(_parity_check(outcomes, ours))
    except SpineCommsError as exc:
        if not written:
            raise
        # What was written stands: the run reports it; the re-check that could not run is a warning.
        outcomes = []
        result.add(
            Check(
                id="install.parity",
                status=Status.WARN,
                subject="registry",
                detail=f"written, but the spine's D67/D63/D279 could not be re-checked: {exc.lines()[0]}",
            )
        )
    new_shims = [p.shim_path for p in plans if p.action in spine_edit.WRITES and "shim" in (p.changed or ["shim"])]
    result.data = {
        "spine_root": str(root),
        "mode": "execute" if execute else "dry-run",
        "executable": binary,
        "capabilities": [_plan_dict(p) for p in plans],
        "counts": {a: sum(p.action == a for p in plans) for a in ("add", "update", "same", "conflict", "take-over")},
        "files_changed": edits.changed(),
        "shims": new_shims,
        "written": written,
        "by_hand": edits.by_hand,
        "diff": diff,
        "parity": spine_lines(outcomes, _files_for_lines(root)),
    }
    if registered is not None:
        result.data["mcp"] = registered
        _report_mcp(result, registered, edits, execute)
    if not execute:
        result.summary += diff + [f"new or changed shim: {s}" for s in new_shims]
        if diff or new_shims:
            result.summary.append("run again with --execute --yes to write these changes")
    return result


def _report_mcp(result: Result, registered: dict, edits: spine_edit.Edits, execute: bool) -> None:
    pending = [rel for rel in (spine_mcp.AGENTS, spine_mcp.MCP_JSON) if rel in edits.changed()]
    name, count = registered["server_name"], len(registered["tools"])
    if not pending:
        detail, status = f"{name} already registered with its {count} tools", Status.OK
    elif execute:
        detail, status = f"{registered['server_name']} registered in {', '.join(pending)}", Status.OK
    else:
        detail, status = f"would register {registered['server_name']} in {', '.join(pending)} (dry run)", Status.WARN
    result.add(Check(id="install.mcp", status=status, detail=detail, subject=registered["server_name"],
                     expected="registered", actual=pending))  # fmt: skip


def _plan_dict(plan: CapPlan) -> dict:
    return {"id": plan.cap_id, "action": plan.action, "reason": plan.reason, "command": plan.entry["command"],
            "script": plan.script}  # fmt: skip


def _chosen(only: list[str] | None, force: list[str] | None) -> list:
    from spine_comms.core.registry import load_registry

    registry = load_registry()
    unknown = [i for i in [*(only or []), *(force or [])] if registry.get(i) is None]
    if unknown:
        raise UsageError(f"not a spine-comms capability: {', '.join(unknown)}", hint="see `spine-comms cap list`")
    return [s for s in registry.capabilities.values() if not only or s.id in only]


def _executable(explicit: Path | None) -> str:
    candidates = [explicit] if explicit else [Path(sys.executable).parent / "spine-comms"]
    if not explicit and shutil.which("spine-comms"):
        candidates.append(Path(shutil.which("spine-comms")))
    for candidate in candidates:
        path = candidate.expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.absolute())
    raise UsageError(f"no executable spine-comms at {candidates[0]}", hint="pass --executable PATH")


def _write(edits: spine_edit.Edits, plans: list[CapPlan], written: list[str]) -> str | None:
    """Write; a failure part way (a full disk ...) is returned, not raised, so the run can report what is on
    disk (status partial) instead of an error that hides the files it changed."""
    try:
        spine_edit.write(edits, plans, written)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


def _report(result: Result, plans: list[CapPlan], edits: spine_edit.Edits, execute: bool, written: list[str],
            write_error: str | None = None) -> None:  # fmt: skip
    by_action: dict[str, list[str]] = {}
    for plan in plans:
        by_action.setdefault(plan.action, []).append(plan.cap_id)
    pending = [p for p in plans if p.action in spine_edit.WRITES]
    verb = {"add": "added", "update": "updated", "take-over": "taken over"} if execute else {
        "add": "would add", "update": "would update", "take-over": "would take over"}  # fmt: skip
    for action, ids in by_action.items():
        result.summary.append(f"{verb.get(action, action)} ({len(ids)}): {', '.join(ids)}")
    if write_error:
        detail = f"wrote {len(written)} files, then stopped: {write_error}; run it again to finish"
        status = Status.PARTIAL if written else Status.FAIL
    elif not pending:
        detail, status = f"nothing to do: {len(plans)} capabilities checked", Status.OK
    elif execute:
        detail, status = f"wrote {len(written)} files for {len(pending)} capabilities", Status.OK
    else:
        detail, status = f"{len(pending)} capabilities to add or update (dry run)", Status.WARN
    result.add(
        Check(
            id="install.plan",
            status=status,
            detail=detail,
            subject="capabilities",
            expected="installed and up to date",
            actual={a: len(ids) for a, ids in by_action.items()},
        )
    )
    conflicts = [p for p in plans if p.action == "conflict"]
    result.add(
        Check(
            id="install.conflicts",
            status=Status.WARN if conflicts else Status.OK,
            detail="; ".join(f"{p.cap_id}: {p.reason}" for p in conflicts) + " (--force ID takes one over)"
            if conflicts
            else "no id registered to something else",
            subject="capabilities",
            expected=[],
            actual=[p.cap_id for p in conflicts],
        )
    )
    by_hand = "; ".join(edits.by_hand) or "every change can be made round-trip"
    result.add(
        Check(
            id="install.by_hand",
            status=Status.WARN if edits.by_hand else Status.OK,
            detail=by_hand,
            subject="files",
            expected=[],
            actual=edits.by_hand,
        )
    )


def _parity(root: Path, edits: spine_edit.Edits, execute: bool) -> list[RuleOutcome]:
    """After writing: the spine's gates over the files on disk. In a dry run: the rules on the planned
    data that do not need the new shims to exist (D67 and D63's field rules)."""
    if execute:
        files = read_spine(root)
        return [d67(files), *d63(files), d279(files), cli_commands(files)]
    docs = edits.docs
    files = RegistryFiles("spine", root, root / spine_edit.REGISTRY, root / spine_edit.MAP,
                          docs[spine_edit.REGISTRY].data, docs[spine_edit.MAP].data)  # fmt: skip
    files.baseline, files.baseline_note = merge_base_capabilities(root)
    return [d67(files), *(o for o in d63(files) if o.rule != "registry.d63.command_target")]


def _parity_check(outcomes: list[RuleOutcome], ours: set[str]) -> Check:
    violations = [(o.rule, cap, message) for o in outcomes for cap, message in o.violations]
    mine = [v for v in violations if v[1] in ours]
    if not violations:
        return Check(
            id="install.parity", status=Status.OK, detail="the spine's D67, D63 and D279 rules hold", subject="registry"
        )
    status = Status.FAIL if mine else Status.WARN
    shown = "; ".join(f"{cap or '-'}: {message}" for _, cap, message in (mine or violations)[:5])
    prefix = "" if mine else "the checkout already breaks: "
    return Check(
        id="install.parity",
        status=status,
        detail=prefix + shown,
        subject="registry",
        expected="no violations",
        actual=sorted({v[0] for v in (mine or violations)}),
        evidence=[list(v) for v in violations],
    )


def _files_for_lines(root: Path) -> RegistryFiles:
    try:
        return read_spine(root)
    except Exception:  # the lines only name the files; a broken file was already reported
        return RegistryFiles("spine", root, root / spine_edit.REGISTRY, root / spine_edit.MAP, {}, {})


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _registry_lock(root: Path, wait_seconds: float = 15.0) -> Iterator[None]:
    """The spine's mkdir lock (pid + created_at_epoch inside); a dead owner's lock is reclaimed."""
    lock = root / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            lock.mkdir()
            break
        except FileExistsError:
            owner = _owner(lock)
            if owner is None or not _alive(owner):
                shutil.rmtree(lock, ignore_errors=True)
                continue
            if time.monotonic() > deadline:
                raise CouldNotEvaluate(f"{lock} is held by pid {owner} (the spine's capability.register?)",
                                       hint="wait for it to finish and run again") from None  # fmt: skip
            time.sleep(0.2)
    try:
        (lock / "pid").write_text(f"{os.getpid()}\n")
        (lock / "created_at_epoch").write_text(f"{int(time.time())}\n")
        yield
    finally:
        shutil.rmtree(lock, ignore_errors=True)


def _owner(lock: Path) -> int | None:
    """The owner's pid; -1 for a lock without a pid yet (being written), None when it can be reclaimed: no pid
    after the spine's GIT_LOCK_TTL of 300 s, or gone already."""
    try:
        return int((lock / "pid").read_text().strip())
    except (OSError, ValueError):
        try:
            return None if time.time() - lock.stat().st_mtime > 300 else -1
        except OSError:
            return None


def _alive(pid: int) -> bool:
    if pid < 0:
        return True  # a lock still being written (no pid yet): its owner is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
