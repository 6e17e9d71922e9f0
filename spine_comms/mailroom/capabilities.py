"""mailroom.enqueue and mailroom.status: the spine's agent-enqueue.sh and a look at the lanes.

enqueue writes at once (no --execute): like agent-enqueue.sh it only ever adds a new file,
never replaces one, and `--dry-run` shows what would be written. Its secret rule: an item the
watcher's secret scan would park is refused (exit 2, findings listed by line, values never
shown) unless `--redact` replaces the values; a prompt parked silently is the failure it avoids.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.contracts.inbox import INBOX_CONTRACT, InboxContract
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import Problem, UsageError, disk_full
from spine_comms.core.result import Check, Result, Status
from spine_comms.mailroom.filesystem import (
    LANES,
    RUN_ID_RE,
    SESSION_RE,
    ItemExists,
    Mailroom,
    MailroomError,
    check_part,
    clean_slug,
    new_run_id,
    new_session_id,
)  # fmt: skip
from spine_comms.mailroom.items import render_prompt_item
from spine_comms.mailroom.secrets_scan import redact_secrets, secret_findings

MAX_PROMPT_BYTES = 1024 * 1024  # the bridge's limit, kept for both routes so a prompt works on either


def _read_prompt(text: str | None, file: Path | None) -> tuple[str, str]:
    """(prompt, where it came from): exactly one of --text, --file, or stdin that is not a terminal."""
    if text is not None and file is not None:
        raise UsageError("give the prompt once: --text or --file, not both")
    if text is not None:
        raw, source = text.encode("utf-8", "surrogateescape"), "--text"
    elif file is not None:
        try:
            with open(file, "rb") as handle:
                raw = handle.read(MAX_PROMPT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
        source = str(file)
    else:
        stream = sys.stdin
        if stream is None or stream.isatty():
            raise UsageError("no prompt: stdin is a terminal",
                             hint="pipe the prompt in (echo '...' | spine-comms mailroom.enqueue), or use --text / "
                                  "--file")  # fmt: skip
        buffer = getattr(stream, "buffer", None)
        raw = buffer.read(MAX_PROMPT_BYTES + 1) if buffer else stream.read(MAX_PROMPT_BYTES + 1).encode()
        source = "stdin"
    if len(raw) > MAX_PROMPT_BYTES:
        raise UsageError(f"the prompt from {source} is over {MAX_PROMPT_BYTES} bytes (the bridge's limit)")
    try:
        prompt = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the prompt from {source} is not UTF-8 (byte {exc.start})") from None
    if not prompt.strip():
        raise UsageError(f"the prompt from {source} is empty")
    return prompt, source


def _inbox_contract(ctx: RunContext) -> InboxContract | None:
    return ctx.contracts.load(INBOX_CONTRACT, InboxContract) if ctx.contracts.exists(INBOX_CONTRACT) else None


@capability("mailroom.enqueue", safety="mutating", approval="auto")
def mailroom_enqueue(
    ctx: RunContext,
    text: Annotated[str | None, typer.Option("--text", help="The prompt itself (instead of stdin).")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the prompt from this UTF-8 file.")] = None,
    slug: Annotated[str, typer.Option(help="Middle part of the name; cleaned to letters, digits, _ and -.")] = "task",
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Last part of the name, used as given (default R + 10 random characters). "
            "Refused when an item with this run id is already in any lane, unless its "
            "content is the same (then it is reported, not written again).",
        ),
    ] = None,
    session_id: Annotated[
        str | None, typer.Option("--session-id", help="First part of the name (default S<YYYYMMDD-HHMMSS>, UTC).")
    ] = None,
    via: Annotated[
        str | None,
        typer.Option(
            help="filesystem (the mailroom inbox), bridge (POST /inbox/enqueue) or jetstream (the contract's "
            "stream, exactly once by run id). Default: the inbox "
            "contract's mailroom.via, else filesystem; --bridge-url alone means bridge."
        ),
    ] = None,
    bridge_url: Annotated[
        str | None,
        typer.Option(
            "--bridge-url",
            help="The bridge (http://127.0.0.1:8799); token from MAILROOM_BRIDGE_TOKEN or the contract's token_ref.",
        ),
    ] = None,
    redact: Annotated[
        bool,
        typer.Option(
            "--redact",
            help="Replace what the watcher's secret scan would park on by [REDACTED] instead of refusing the prompt.",
        ),
    ] = False,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Enqueue a prompt for the mailroom watcher (agent-enqueue.sh's job), written atomically."""
    prompt, source = _read_prompt(text, file)
    if via not in (None, "filesystem", "bridge", "jetstream"):
        raise UsageError(f"--via {via!r}: use filesystem, bridge or jetstream")
    try:
        session = check_part(session_id, SESSION_RE, "session id") if session_id else None
        rid = check_part(run_id, RUN_ID_RE, "run id") if run_id else None
    except MailroomError as exc:
        raise UsageError(str(exc)) from None
    item = render_prompt_item(prompt)
    findings = secret_findings(item)
    result = Result()
    if findings and not redact:
        raise UsageError(
            f"the prompt would trip the watcher's secret scan and be parked ({len(findings)} finding(s))",
            problems=[Problem(source, None, "", finding) for finding in findings],
            hint="remove the secrets, or pass --redact to replace them with [REDACTED]",
        )
    if findings:
        item = redact_secrets(item)
        result.add(
            Check(
                id="mailroom.enqueue.secret_scan",
                status=Status.WARN,
                detail=f"{len(findings)} value(s) redacted",
                evidence=findings,
            )
        )
    else:
        result.add(Check(id="mailroom.enqueue.secret_scan", status=Status.OK, detail="nothing the watcher would park"))

    contract = _inbox_contract(ctx)
    via = via or ("bridge" if bridge_url else (contract.mailroom.via if contract else "filesystem"))
    if via == "bridge":
        from spine_comms.mailroom.bridge import bridge_client, stored_by_bridge

        item = stored_by_bridge(item)  # sent as the bridge stores it: the receipt's bytes are the file's
    payload = item.encode("utf-8")
    result.data = {"via": via, "source": source, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                   "redactions": len(findings), "dry_run": dry_run}  # fmt: skip
    if dry_run:
        where = {"filesystem": ctx.mailroom.inbox / "queued", "jetstream": "the contract's JetStream stream"}.get(
            via, bridge_url or "the contract's bridge"
        )
        result.data.update(slug=clean_slug(slug), session_id=session, rid=rid, target=str(where))
        result.summary = [f"DRY RUN: would enqueue {len(payload)} bytes via {via} into {where}"]
        return result

    if via == "bridge":
        client, _token = bridge_client(ctx, contract.mailroom.bridge if contract else None, bridge_url)
        # Named here, not by the bridge: the receipt records them and a retry with the same
        # --session-id/--run-id rewrites the same file instead of adding a second one.
        session = session or new_session_id(ctx.clock())
        rid = rid or new_run_id()
        try:
            answer = client.enqueue(item, slug=slug, run_id=rid, session_id=session)
        finally:
            client.close()
        result.data.update(path=answer["path"], run_id=answer["run_id"], rid=rid, session_id=session,
                           slug=clean_slug(slug), lane="queued", bridge=client.url)  # fmt: skip
    elif via == "jetstream":  # spine_comms/mailroom/jetstream_caps.py
        from spine_comms.mailroom import jetstream_caps

        session, rid = session or new_session_id(ctx.clock()), rid or new_run_id()
        result.data.update(
            jetstream_caps.enqueue(ctx, contract, item, slug=clean_slug(slug), rid=rid, session=session),
            run_id=f"{session}__{clean_slug(slug)}__{rid}",
            rid=rid,
            session_id=session,
            lane="queued",
        )
        if not result.data["same_content"]:
            result.add(
                Check(
                    id="mailroom.enqueue.written",
                    status=Status.FAIL,
                    detail=f"run id {rid} is already in the stream with other content; nothing published",
                    subject=result.data["path"],
                )
            )
            return result
    else:
        room = Mailroom(ctx.mailroom.inbox)
        try:
            written = room.enqueue(item, slug=slug, run_id=rid, session_id=session)
        except ItemExists as exc:
            return _already(result, exc, payload)
        except MailroomError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            full = disk_full(exc, str(ctx.mailroom.inbox))
            if full is not None:
                raise full from None
            raise UsageError(
                f"cannot write into {ctx.mailroom.inbox}: {exc.strerror or exc}",
                hint="check the mailroom paths (SPINE_INBOX, mailroom.runtime.contract.yaml)",
            ) from None
        result.data.update(written.to_dict())
    result.add(
        Check(
            id="mailroom.enqueue.written",
            status=Status.OK,
            detail=f"enqueued as {result.data['run_id']}",
            subject=result.data["path"],
        )
    )
    result.summary = [f"ENQUEUED: {result.data['path']}"]
    ctx.log(f"enqueued {result.data['run_id']} via {via}")
    return result


def _already(result: Result, exc: ItemExists, payload: bytes) -> Result:
    """An explicit run id already present: the same content is a retry (ok), other content a conflict."""
    try:
        same = exc.existing.read_bytes() == payload
    except OSError:
        same = False
    result.data.update(path=str(exc.existing), run_id=exc.existing.stem, lane=exc.lane, already_enqueued=same)
    if same:
        result.add(
            Check(
                id="mailroom.enqueue.written",
                status=Status.OK,
                detail=f"already in {exc.lane} with the same content; not written again",
                subject=str(exc.existing),
            )
        )
        result.summary = [f"ALREADY ENQUEUED: {exc.existing}"]
    else:
        result.add(
            Check(
                id="mailroom.enqueue.written",
                status=Status.FAIL,
                detail=f"{exc}; its content differs, nothing written",
                subject=str(exc.existing),
            )
        )
    return result


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _last_ledger_row(ledger: Path, stem: str, rid: str) -> dict | None:
    if not ledger.is_file():
        return None
    last = None
    with open(ledger, encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        for row in reader:
            if row and (row[0] == stem or row[0].endswith(f"__{rid}")):
                last = row
    return dict(zip(header, last, strict=False)) if last else None


@capability("mailroom.status", safety="read-only", approval="auto")
def mailroom_status(
    ctx: RunContext,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Also show this run: its lane, item, outbox result and last "
            "ledger row. The file stem or only its R... part.",
        ),
    ] = None,
    max_queued_age: Annotated[
        float,
        typer.Option(
            "--max-queued-age",
            min=0.1,
            help="Warn when an item has waited in queued longer than this many minutes (the watcher may be down).",
        ),
    ] = 15.0,
) -> Result:
    """Count and oldest age per lane; warn on items waiting too long; the state of a run id."""
    paths = ctx.mailroom
    room = Mailroom(paths.inbox)
    lanes = room.status(ctx.clock())
    result = Result(data={"inbox": str(paths.inbox), "outbox": str(paths.outbox), "source": paths.source,
                          "lanes": lanes})  # fmt: skip
    if paths.inbox.is_dir():
        result.add(
            Check(id="mailroom.inbox.present", status=Status.OK, detail="the inbox exists", subject=str(paths.inbox))
        )
    else:
        result.add(
            Check(
                id="mailroom.inbox.present",
                status=Status.WARN,
                detail="no inbox directory yet (nothing enqueued here, or "
                "the wrong mailroom: check SPINE_INBOX and the runtime contract)",
                subject=str(paths.inbox),
            )
        )
    queued = lanes["queued"]
    limit = max_queued_age * 60
    stale = queued["oldest_age_seconds"] is not None and queued["oldest_age_seconds"] > limit
    result.add(
        Check(
            id="mailroom.queued.age",
            status=Status.WARN if stale else Status.OK,
            detail=f"oldest queued item waited {_age(queued['oldest_age_seconds'])}; the watcher may be down"
            if stale
            else f"no queued item older than {max_queued_age:g} min",
            expected=f"<= {limit:g} s",
            actual=queued["oldest_age_seconds"],
            evidence=queued["oldest"],
        )
    )
    leftovers = sum(lane["temporaries"] for lane in lanes.values())
    result.add(
        Check(
            id="mailroom.temporaries",
            status=Status.WARN if leftovers else Status.OK,
            detail=f"{leftovers} hidden temporary file(s) left by an interrupted writer (the watcher ignores them)"
            if leftovers
            else "no leftover temporary files",
            actual=leftovers,
        )
    )
    width = max(len(lane) for lane in LANES)
    result.summary = [f"{'lane':<{width}}  {'count':>5}  oldest"]
    result.summary += [f"{lane:<{width}}  {lanes[lane]['count']:>5}  {_age(lanes[lane]['oldest_age_seconds'])}"
                       for lane in LANES]  # fmt: skip
    contract = _inbox_contract(ctx)
    if contract is not None and contract.mailroom.jetstream is not None:  # the stream and its consumers
        from spine_comms.mailroom.jetstream_caps import add_stream_status

        add_stream_status(ctx, contract, result, limit)
    if run_id is not None:
        result.data["run"] = run = _run_state(room, paths, run_id)
        if run["state"] is None:
            result.add(
                Check(
                    id="mailroom.run.found",
                    status=Status.FAIL,
                    detail=f"{run_id} is in no lane, outbox or ledger",
                    subject=run_id,
                )
            )
        else:
            result.add(
                Check(
                    id="mailroom.run.found", status=Status.OK, detail=f"{run['run_id']}: {run['state']}", subject=run_id
                )
            )
        result.summary.append(
            f"run {run['run_id']}: {run['state'] or 'not found'}" + (f" ({run['path']})" if run.get("path") else "")
        )
    return result


def _run_state(room: Mailroom, paths, run_id: str) -> dict:
    """Lane first (where the item is now), then the outbox result, then the ledger, as the bridge looks."""
    if not RUN_ID_RE.match(run_id):
        raise UsageError(f"invalid run id {run_id[:80]!r}: letters, digits and . _ : - only")
    found = room.find(run_id)
    stem = found[1].stem if found else run_id
    rid = stem.rsplit("__", 1)[-1]
    result_file = paths.outbox / f"{stem}__RESULT.md"
    if not result_file.is_file() and "__" not in run_id and paths.outbox.is_dir():
        result_file = next(iter(sorted(paths.outbox.glob(f"*__{rid}__RESULT.md"))), result_file)
    ledger_row = _last_ledger_row(paths.ledger, stem, rid)
    if found:
        state = found[0]
    elif result_file.is_file():
        state = "done"
    else:
        state = ledger_row.get("status") if ledger_row else None
    return {
        "run_id": result_file.name.removesuffix("__RESULT.md") if not found and result_file.is_file() else stem,
        "state": state,
        "lane": found[0] if found else None,
        "path": str(found[1]) if found else None,
        "result": str(result_file) if result_file.is_file() else None,
        "ledger": ledger_row,
    }
