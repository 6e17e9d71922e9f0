"""communications.doctor: one run that says what stands between this root and green gates, and what to do.

Each finding is a check whose detail ends with its remedy. It reuses what the
toolkit already has rather than judging twice: contracts.check for the contracts,
communications.stack.status for the endpoints (a connect and TLS handshake per
port of the stack contract, with its timeout), the secret resolver for every
`*_ref` a contract names (the values never leave the resolver), the unit names
`ops units` renders, and the receipts' run keys. An endpoint that does not answer
is an error, never ok; checks that depend on a broken contract are skipped.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import SpineCommsError
from spine_comms.core.result import Check, Result, Status

UnitDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--unit-dir", metavar="DIR", help="Look for the units here instead of systemd's unit directories "
                 "(repeatable)."),
]  # fmt: skip


@capability("communications.doctor", safety="read-only", approval="auto")
def doctor(ctx: RunContext, unit_dir: UnitDirOpt = None) -> Result:
    """In one run: is the root complete, do the contracts validate, do the secrets resolve (never shown),
    which endpoints answer, are the systemd units and timers installed for this root, which receipts are
    stale. Every finding says its remedy. Exit 1 on a failure, 3 when an endpoint could not be reached."""
    result = Result(data={"root": str(ctx.root.path), "layout": ctx.root.layout})
    if not _root_checks(ctx, result):
        return result
    valid = _contract_checks(ctx, result)
    _secret_checks(ctx, result, valid)
    _endpoint_checks(ctx, result, valid)
    _unit_checks(ctx, result, unit_dir)
    _receipt_checks(ctx, result)
    counts: dict[str, int] = {}
    for check in result.checks:
        counts[str(check.status)] = counts.get(str(check.status), 0) + 1
    result.summary.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return result


def _add(result: Result, check_id: str, status: Status, detail: str, subject: str, remedy: str | None = None,
         **extra) -> None:  # fmt: skip
    text = f"{detail}; remedy: {remedy}" if remedy and status not in (Status.OK, Status.SKIP) else detail
    result.add(Check(id=check_id, status=status, detail=text, subject=subject, **extra))


def _root_checks(ctx: RunContext, result: Result) -> bool:
    root = ctx.root
    bindings = root.bindings_dir
    if not bindings.is_dir():
        _add(result, "doctor.root.bindings", Status.FAIL, f"{bindings} does not exist", str(root.path),
             f"`spine-comms init {root.path} --domain D --mail-host H`, or --root at a root that has it")  # fmt: skip
        return False
    _add(result, "doctor.root.bindings", Status.OK, f"{root.layout} layout, contracts in {bindings}", str(root.path))
    places = [("receipts", root.receipts_dir)]
    try:
        places.append(("mailroom state", ctx.mailroom.state))
    except SpineCommsError as exc:  # an invalid mailroom runtime contract: every run's ledger row fails
        _add(result, "doctor.root.writable", Status.FAIL, "; ".join(exc.lines()), "mailroom.runtime.contract.yaml",
             "fix the runtime contract (runtime_root, active)")  # fmt: skip
    for label, directory in places:
        existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
        writable = existing is not None and os.access(existing, os.W_OK | os.X_OK)
        _add(result, "doctor.root.writable", Status.OK if writable else Status.FAIL,
             f"{label} directory {directory} {'is writable' if writable else 'cannot be written'}", str(directory),
             f"give the user that runs spine-comms write access to {existing}")  # fmt: skip
    return True


def _contract_checks(ctx: RunContext, result: Result) -> set[str]:
    """contracts.check's verdicts, with remedies; returns the names of the contracts that validate."""
    from spine_comms.bootstrap.contracts_check import contracts_check

    checked = contracts_check(ctx)
    valid = set()
    for check in checked.checks:
        name = check.subject
        if check.id == "contracts.valid" and check.status is Status.OK:
            valid.add(name)
        remedy = None
        if check.status is Status.FAIL and check.id == "contracts.valid":
            remedy = "fix each file:line listed (`spine-comms contracts.check` prints them)"
        elif check.status is Status.FAIL:
            remedy = f"`spine-comms init` writes a {name} to start from"
        _add(result, f"doctor.{check.id}", check.status, check.detail, name, remedy,
             evidence=check.evidence)  # fmt: skip
    result.data["contracts"] = {n: e["valid"] for n, e in checked.data.get("contracts", {}).items()}
    return valid


def _refs(node, path=()):
    """Every (path, reference) of a `*_ref` key in a contract's data."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_ref") and isinstance(value, str) and value:
                yield (*path, key), value
            else:
                yield from _refs(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, (*path, index))


def _secret_checks(ctx: RunContext, result: Result, valid: set[str]) -> None:
    from spine_comms.contracts.stack import mailbox_env
    from spine_comms.core.yamlfile import load_yaml

    seen = 0
    for name in sorted(valid):
        doc = load_yaml(ctx.root.bindings_dir / name)
        for path, ref in _refs(doc.data):
            seen += 1
            where = f"{name}:{doc.line_of(path) or '?'}"
            override = _override_for(doc.data, path, mailbox_env) if name.startswith("communications.stack") else None
            try:
                secret = ctx.secrets.resolve(ref, override_env=override, what=".".join(map(str, path)))
            except SpineCommsError as exc:
                remedy = exc.hint or "make the reference resolvable for the user that runs spine-comms"
                _add(result, "doctor.secret.resolves", Status.FAIL, f"{where}: {exc.message}", where, remedy)
                continue
            _add(result, "doctor.secret.resolves", Status.OK, f"{where}: resolves from {secret.source}", where)
    if not seen:
        _add(result, "doctor.secret.resolves", Status.SKIP, "no secret references in the valid contracts", "")


def _override_for(data, path, mailbox_env) -> str | None:
    """The spine's variable for a stack mailbox's password (STALWART_OPS_PASSWORD), which wins when set."""
    if len(path) >= 3 and path[-1] == "password_ref":
        node = data
        for part in path[:-1]:
            node = node[part]
        if isinstance(node, dict) and node.get("id"):
            return mailbox_env(str(node["id"]))
    return None


def _endpoint_checks(ctx: RunContext, result: Result, valid: set[str]) -> None:
    from spine_comms.communications.stack_status import stack_status
    from spine_comms.contracts.stack import STACK_CONTRACT

    if STACK_CONTRACT not in valid:
        _add(result, "doctor.endpoint.answers", Status.SKIP, f"not probed: {STACK_CONTRACT} is missing or invalid",
             STACK_CONTRACT)  # fmt: skip
        return
    try:
        probed = stack_status(ctx)
    except SpineCommsError as exc:
        _add(result, "doctor.endpoint.answers", Status.FAIL, exc.message, STACK_CONTRACT,
             exc.hint or "give the stack contract a host and its ports")  # fmt: skip
        return
    host = probed.data.get("host")
    for row in probed.data.get("endpoints", []):
        subject = f"{host}:{row['port']} {row['protocol']}"
        failed = [c for c in probed.checks if c.subject == f"{row['protocol']}:{row['port']}" and c.status != "ok"]
        if not row["reachable"]:
            _add(result, "doctor.endpoint.answers", Status.ERROR, f"no answer: {row['error']}", subject,
                 "is the server up and the port open from here? check endpoints.host and pilot.ports",
                 actual=row["error"])  # fmt: skip
        elif failed:
            worst = Status.FAIL if any(c.status == Status.FAIL for c in failed) else Status(failed[0].status)
            details = "; ".join(f"{c.id}: {c.detail}" for c in failed)
            _add(result, "doctor.endpoint.answers", worst, details, subject,
                 "`spine-comms communications.stack.status` shows every check of this endpoint")  # fmt: skip
        else:
            tls = f", {row['tls_version']}" if row["tls_version"] else ""
            _add(result, "doctor.endpoint.answers", Status.OK, f"answered in {row['latency_ms']} ms{tls}", subject)
    result.data["endpoints"] = probed.data.get("endpoints", [])


def _unit_checks(ctx: RunContext, result: Result, unit_dirs: list[Path] | None) -> None:
    from spine_comms.operations.units import find_installed, missing_flags

    installed = find_installed(list(unit_dirs) if unit_dirs else None)
    result.data["units"] = [u.to_dict() for u in installed.values()]
    root = str(ctx.root.path)
    write = (
        f"`spine-comms ops units --root {root} --write /etc/systemd/system` (or --user --write ~/.config/systemd/user)"
    )
    if all(unit.path is None for unit in installed.values()):
        _add(result, "doctor.unit.installed", Status.WARN, f"none of the {len(installed)} units is installed",
             ", ".join(installed), write)  # fmt: skip
        return
    for name, unit in installed.items():
        if unit.path is None:
            _add(result, "doctor.unit.installed", Status.WARN, "not installed", name, write)
        elif unit.root != root:
            _add(result, "doctor.unit.installed", Status.WARN, f"{unit.path} runs for {unit.root or 'no --root'}, "
                 f"not {root}", name, f"{write} --force")  # fmt: skip
        elif name.endswith(".service") and (lacking := missing_flags(unit)):
            _add(result, "doctor.unit.current", Status.FAIL, f"{unit.path} runs without {' '.join(lacking)}: "
                 "a dry run that changes nothing (rendered for another version)", name, f"{write} --force")  # fmt: skip
        elif name.endswith(".timer") or name.endswith("inbox-watch.service"):
            status = Status.OK if unit.enabled else Status.WARN
            scope = "--user " if str(unit.path).startswith(str(Path.home())) or "/user" in str(unit.path) else ""
            _add(result, "doctor.unit.enabled", status, f"{unit.path}: {'enabled' if unit.enabled else 'not enabled'}",
                 name, f"`systemctl {scope}enable --now {name}`")  # fmt: skip
        else:
            _add(result, "doctor.unit.installed", Status.OK, f"{unit.path}", name)


def _receipt_checks(ctx: RunContext, result: Result) -> None:
    """The latest receipt of each timed capability against three missed runs of its timer."""
    from spine_comms.core.receipts import read_summary
    from spine_comms.operations.units import JOBS, acting_flags

    now = ctx.clock()
    latest = _latest_receipts(ctx.root.receipts_dir)
    result.data["latest_receipts"] = {cap: {"age_hours": round((now - when).total_seconds() / 3600, 2), "directory": d}
                                      for cap, (when, d) in sorted(latest.items())}  # fmt: skip
    for job in JOBS:
        limit = timedelta(seconds=job.stale_after_seconds)
        found = latest.get(job.capability)
        timer = f"`systemctl status {job.name}.timer` and `journalctl -u {job.name}.service`"
        if found is None:
            never = f"no receipt: never run here (runs {job.schedule_words})"
            command = " ".join(("spine-comms", job.capability, *job.arguments, *acting_flags(job.capability)))
            _add(result, "doctor.receipts.fresh", Status.WARN, never, job.capability,
                 f"enable {job.name}.timer, or run `{command}` once")  # fmt: skip
            continue
        age = now - found[0]
        hours = age.total_seconds() / 3600
        status = Status.OK if age <= limit else Status.WARN
        _add(result, "doctor.receipts.fresh", status,
             f"latest {hours:.1f} h ago (stale after {limit.total_seconds() / 3600:g} h: {job.schedule_words})",
             job.capability, timer, actual=found[1], expected=f"<= {limit.total_seconds() / 3600:g} h")  # fmt: skip
        summary = read_summary(Path(found[1]))
        if summary is not None and summary.status in ("fail", "partial", "error", "failed", "blocked"):
            _add(result, "doctor.receipts.latest_passed", Status.WARN,
                 f"its latest run ended {summary.status} (exit {summary.exit_code})", job.capability,
                 f"`spine-comms receipts show {Path(found[1]).name[1:]}` says why", actual=summary.status)  # fmt: skip


def _latest_receipts(directory: Path) -> dict[str, tuple[datetime, str]]:
    """Capability -> (start time from the run key, directory) of its newest receipt. Read from names only."""
    from spine_comms.operations.retention import RUN_DIR

    latest: dict[str, tuple[datetime, str]] = {}
    if not directory.is_dir():
        return latest
    for entry in os.scandir(directory):
        match = RUN_DIR.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            when = datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S").astimezone()
        except ValueError:
            continue
        current = latest.get(match["capability"])
        if current is None or when > current[0]:
            latest[match["capability"]] = (when, entry.path)
    return latest
