"""The one funnel: run a capability, render its result, write its receipt, pick the exit code.

Every run that reaches a root gets a receipt, whatever happened. An exception in
a capability becomes an `error` result (exit 3 for "could not evaluate", 2 for a
bad contract or secret, 70 for a bug); the traceback is shown only with --debug.
"""

from __future__ import annotations

import inspect
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from spine_comms import __version__
from spine_comms.core import output, receipts
from spine_comms.core.approval import Safety, SafetyFlags, decide
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError, ExitCode, SpineCommsError
from spine_comms.core.options import GlobalOptions, color_allowed
from spine_comms.core.result import Result, Status
from spine_comms.core.root import find_root


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def execute(
    *,
    capability: str,
    safety: str,
    approval: str,
    function: Callable[..., Result],
    kwargs: dict[str, Any],
    options: GlobalOptions,
    argv: list[str],
    default_mode: str | None = None,
    flags: SafetyFlags | None = None,
    env: dict[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    env = dict(os.environ) if env is None else env
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        root = find_root(options.root, env)
    except SpineCommsError as exc:  # no root, so nowhere to write a receipt
        for line in exc.lines():
            print(f"spine-comms: {line}", file=stderr)
        if options.json:
            problems = [str(p) for p in exc.problems]
            stdout.write(output.render_json(output.refusal_envelope(capability, exc.message, problems, exc.hint)))
            stdout.flush()
        return int(exc.exit_code)

    from rich.console import Console

    console = Console(file=stderr, no_color=not color_allowed(options, env), highlight=False)
    ctx = RunContext(capability=capability, root=root, options=options, env=env, stderr=console)
    started = ctx.clock()
    started_clock = time.monotonic()
    adopted = env.get("SPINE_CAP_RUN_KEY", "")
    spine_runner = bool(receipts.RUN_KEY_RE.match(adopted))
    run_key = adopted if spine_runner else receipts.new_run_key(capability, datetime.now().astimezone())

    result, error, exit_code, act = Result(), None, ExitCode.OK, None
    try:
        act = decide(capability, Safety(safety, approval, default_mode), flags or SafetyFlags(), env)
        result = _call(capability, function, ctx, kwargs, act)
        if not isinstance(result, Result):
            raise TypeError(f"{capability} returned {type(result).__name__}, not a Result")
        status = result.final_status
        exit_code = output.exit_code_for(status, strict=options.strict)
    except SpineCommsError as exc:
        status, exit_code = Status.ERROR, exc.exit_code
        error = exc.envelope_error()  # with `kind` when a server failed (core.outcomes)
        _debug_trace(options, ctx, exc)
    except KeyboardInterrupt:
        status, exit_code = Status.ERROR, ExitCode.INTERRUPTED
        error = {"reference": "interrupted", "message": "interrupted", "problems": [], "hint": None}
    except Exception as exc:
        status, exit_code = Status.ERROR, ExitCode.INTERNAL
        error = {
            "reference": "internal-error",
            "message": f"internal error: {exc.__class__.__name__}: {exc}",
            "problems": [],
            "hint": "run again with --debug to see the traceback, and report it",
        }
        _debug_trace(options, ctx, exc, always=True)

    finished = ctx.clock()
    receipt_dir = root.receipts_dir / f"R{run_key}"
    redact = ctx.redactor
    error = redact.redact_obj(error) if error else None
    env_doc = output.envelope(
        capability, str(status), _utc(finished), redact.redact_obj(result.data),
        [_redacted_check(c, redact) for c in result.checks], redact.redact_obj(result.summary),
        run_key, str(receipt_dir), error, dry_run=None if act is None else not act,
    )  # fmt: skip
    if options.json:
        shown = output.render_json(env_doc)
        stdout.write(shown)
    else:
        color = color_allowed(options, env) and stdout.isatty()
        width = output.width_for(env, stdout)
        stdout.write(output.render_text(env_doc, color=color, width=width))
        shown = output.render_text(env_doc, color=False, width=width)
    stdout.flush()
    if error and options.json:  # the envelope carries it; a person watching stderr should see it too
        for line in error["problems"] or [error["message"]]:
            print(f"spine-comms: {line}", file=stderr)

    document = {
        "receipt_version": "1.0",
        "run_key": run_key,
        "capability": capability,
        "status": str(status),
        "exit_code": int(exit_code),
        "safety": safety,
        "approval": approval,
        "dry_run": env_doc.get("dry_run"),
        "started_at": _utc(started),
        "finished_at": _utc(finished),
        "duration_ms": round((time.monotonic() - started_clock) * 1000, 1),
        "spine_runner": spine_runner,
        "envelope": env_doc,
        "checks": env_doc["checks"],
        "summary": env_doc["summary"],
        "contracts": [{"path": p, "sha256": h} for p, h in ctx.contracts.read.items()],
        "tool": {"name": "spine-comms", "version": __version__, "python": platform.python_version()},
        "invocation": {
            "argv": redact.redact_obj(argv),
            "cwd": os.getcwd(),
            "root": str(root.path),
            "layout": root.layout,
        },
        "error": error,
    }
    transcript = "\n".join(ctx.transcript)
    output_txt = redact((transcript + "\n" if transcript else "") + shown)
    try:
        row = [run_key, _utc(finished), _utc(started), _utc(finished), receipts.receipt_status(int(exit_code)),
               capability, "receipt.md", (error or {}).get("message", ""), "capability"]  # fmt: skip
        receipts.record_run(root.receipts_dir, document, output_txt=output_txt, printed=shown,
                            spine_runner=spine_runner, ledger=None if spine_runner else ctx.mailroom.ledger,
                            ledger_row=row, secrets=ctx.secrets, root=root.path, warn=stderr)  # fmt: skip
    except ContractError as exc:  # the mailroom runtime contract is the user's to fix
        for line in exc.lines():
            print(f"spine-comms: ledger row for {run_key} not written: {line}", file=stderr)
        return int(ExitCode.USAGE)
    except OSError as exc:
        print(f"spine-comms: could not write the receipt for {run_key}: {exc}", file=stderr)
        return int(ExitCode.INTERNAL)
    return int(exit_code)


def _call(capability: str, function: Callable[..., Result], ctx: RunContext, kwargs: dict[str, Any], act):
    """Run the capability in the mode the runner decided.

    A mutating capability that can plan takes a `dry_run` parameter, which only the runner
    fills. One that cannot is not run at all in a dry run: nothing it could do is safe."""
    if act is None:
        return function(ctx, **kwargs)
    if "dry_run" in inspect.signature(function).parameters:
        return function(ctx, **kwargs, dry_run=not act)
    if act:
        return function(ctx, **kwargs)
    given = {k: v for k, v in kwargs.items() if v not in (None, False, (), [])}
    return Result(
        data={"options": given},
        summary=[f"dry run: {capability} was not run and nothing was changed; add --execute to run it"],
    )


def _redacted_check(check, redact):
    check.detail = redact(check.detail)
    check.expected, check.actual, check.evidence = (
        redact.redact_obj(check.expected), redact.redact_obj(check.actual), redact.redact_obj(check.evidence)
    )  # fmt: skip
    return check


def _debug_trace(options: GlobalOptions, ctx: RunContext, exc: BaseException, always: bool = False) -> None:
    """The traceback goes to stderr only with --debug; output.txt gets it (redacted) for a bug."""
    text = "".join(traceback.format_exception(exc))
    if options.debug:
        ctx.stderr.print(ctx.redactor(text), markup=False, highlight=False)
    if always or options.debug:
        ctx.transcript.append(ctx.redactor(text) if options.debug else f"internal error: {exc.__class__.__name__}")
