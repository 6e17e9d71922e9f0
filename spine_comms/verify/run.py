"""verify.core.run and verify.pack.run: run a pack of gates and say, in the spine's words, what holds.

Text mode prints one `<ID> PASS|FAIL|SKIP: <detail>` line per gate (the spine's runner and failure
statistics read them), the `summary:` and `budget:` lines, and a table of the gates that did not
pass. --json carries the spine's summary keys and every gate's verdict. --junit and --prom leave
files for CI and monitoring. Exit 0 only when no gate fails, the ring budget held, at least one gate
was verified on evidence, and (with --strict) no gate is SKIP; 1 otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.result import Check, Result, Status

PackArg = Annotated[
    str,
    typer.Argument(
        metavar="PACK",
        help="The pack to run, as named in verify.gates.yaml: core, communications, hygiene-weekly ...",
    ),
]
JunitOpt = Annotated[
    Path | None,
    typer.Option("--junit", metavar="FILE", help="Also write a JUnit XML report here (a testcase per gate)."),
]
PromOpt = Annotated[
    Path | None,
    typer.Option(
        "--prom",
        metavar="FILE",
        help="Also write Prometheus metrics here, in the textfile-collector format (e.g. "
        "/var/lib/node_exporter/textfile/spine_comms_verify.prom); replaced atomically.",
    ),
]
JobsOpt = Annotated[
    int,
    typer.Option("--jobs", metavar="N", min=1, max=32, help="Gates run at once (the spine's runner uses 4)."),
]
GateOpt = Annotated[
    list[str] | None,
    typer.Option("--gate", metavar="ID", help="Only this gate of the pack (repeatable), e.g. --gate D908."),
]

CHECK_STATUS = {"PASS": Status.OK, "FAIL": Status.FAIL, "SKIP": Status.SKIP}


@capability("verify.core.run", safety="read-only", approval="auto")
def verify_core_run(
    ctx: RunContext, junit: JunitOpt = None, prom: PromOpt = None, jobs: JobsOpt = 4, gate: GateOpt = None
) -> Result:
    """Run the `core` pack (registry parity, contracts valid, receipts valid) within the instant ring's
    budget: one `<ID> PASS|FAIL|SKIP: <detail>` line per gate, --json with the spine's summary keys
    (total, pass, fail, skipped, failing_ids), --junit and --prom files. Exit 0 only when no gate fails
    and the budget held (with --strict: no SKIP either), 1 otherwise."""
    return run_verify(ctx, "core", junit=junit, prom=prom, jobs=jobs, only=gate)


@capability("verify.pack.run", safety="read-only", approval="auto")
def verify_pack_run(
    ctx: RunContext,
    pack: PackArg = "communications",
    junit: JunitOpt = None,
    prom: PromOpt = None,
    jobs: JobsOpt = 4,
    gate: GateOpt = None,
) -> Result:
    """Run a pack of the gates declared in bindings/verify.gates.yaml (or the toolkit's default set):
    live gates run their read-only capability, each writing its own receipt; receipt gates judge the
    latest receipt's status and age; independent gates run in parallel. A gate whose server is
    unreachable, hung or refusing, or whose contract is absent, is FAIL (could not evaluate); SKIP only
    when the stack contract declares its surface not deployed. Exit 0 only when no gate fails, the
    ring budget held and something was verified (with --strict: no SKIP either), 1 otherwise."""
    return run_verify(ctx, pack, junit=junit, prom=prom, jobs=jobs, only=gate)


def run_verify(ctx: RunContext, pack: str, *, junit: Path | None, prom: Path | None, jobs: int,
               only: list[str] | None) -> Result:  # fmt: skip
    from spine_comms.core.errors import UsageError
    from spine_comms.verify.engine import RunReport, run_pack
    from spine_comms.verify.gates import load_gates, pack_gates

    gate_set = load_gates(ctx)
    members, ring = pack_gates(gate_set, pack)
    if only:
        unknown = [g for g in only if g not in {m.id for m in members}]
        if unknown:
            raise UsageError(f"--gate {', '.join(unknown)}: not in pack {pack} ({' '.join(m.id for m in members)})")
        members = [m for m in members if m.id in only]
    budget = gate_set.contract.budget(ring)
    ctx.log(f"verify {pack}: {len(members)} gate(s), ring {ring} (budget {budget:g} s), {jobs} at once, "
            f"gates from {gate_set.source}")  # fmt: skip
    # A gate still running when the budget is spent is stopped there: the run has failed its budget
    # anyway, and a hung server must not hold the report back (each connection has its own timeout too).
    deadline = time.monotonic() + budget
    evaluate = _evaluator(ctx, deadline)
    not_deployed = _surface_switches(ctx)
    with ctx.progress(f"verify {pack}", total=len(members)) as advance:

        def on_done(result) -> None:
            advance(1)
            ctx.log(result.line(), level="debug")

        results, elapsed, most = run_pack(members, evaluate, jobs=jobs, present=ctx.contracts.exists,
                                          not_deployed=not_deployed, on_done=on_done)  # fmt: skip
    report = RunReport(pack, ring, budget, elapsed, results, most, gate_set.source, strict=ctx.options.strict)
    return _result(ctx, report, junit, prom)


def _surface_switches(ctx: RunContext):
    """not_deployed(gate) for the engine: the stack contract's `surfaces` switches, the one source of SKIP.
    No stack contract, or one that does not load, declares nothing (its gates then say what is wrong)."""
    from spine_comms.contracts.stack import STACK_CONTRACT, StackContract
    from spine_comms.core.errors import SpineCommsError

    stack = None
    if ctx.contracts.exists(STACK_CONTRACT):
        try:
            stack = ctx.contracts.load(STACK_CONTRACT, StackContract)
        except SpineCommsError as exc:
            ctx.log(f"surfaces: the stack contract does not load ({exc.message}); every surface counts as deployed")

    def not_deployed(gate) -> str | None:
        switch = stack.not_deployed(gate.surface) if stack is not None and gate.surface else None
        if switch is None:
            return None
        why = f": {switch.reason}" if switch.reason else ""
        return f"not deployed: the stack contract declares surfaces.{gate.surface}.deployed: false{why}"

    return not_deployed


def _evaluator(ctx: RunContext, deadline: float):
    from spine_comms.verify.builtin import BUILTINS
    from spine_comms.verify.evaluate import receipt_gate, run_gate

    root, env = ctx.root, ctx.env

    def evaluate(gate):
        if gate.run is not None:
            return run_gate(gate, root, env, deadline)
        if gate.receipt is not None:
            return receipt_gate(gate, root, ctx.clock())
        return BUILTINS[gate.builtin](gate, root)

    return evaluate


def _result(ctx: RunContext, report, junit: Path | None, prom: Path | None) -> Result:
    from spine_comms.core.atomic import write_atomic
    from spine_comms.verify.evaluate import last_success
    from spine_comms.verify.reports import budget_line, junit_xml, prometheus_text, verdict_lines

    keys = report.summary_keys()
    finished = ctx.clock()
    result = Result()
    result.summary = [r.line() for r in report.results]
    result.summary.append(f"summary: pass={keys['pass']} fail={keys['fail']} skipped={keys['skipped']}")
    result.summary.append(budget_line(report))
    for line in verdict_lines(report):
        result.summary.append(line)
    for r in report.results:
        result.add(Check(f"verify.gate.{r.id.lower()}", CHECK_STATUS[r.status], r.detail, r.name,
                         "PASS", r.status, {"capability": r.capability, "run_key": r.run_key,
                                            "age_seconds": r.age_seconds, "fix_hint": r.fix_hint,
                                            "kind": r.could_not_evaluate},
                         round(r.elapsed * 1000, 1)))  # fmt: skip
    result.add(Check("verify.budget", Status.FAIL if report.budget_exceeded else Status.OK, budget_line(report),
                     report.ring, f"<= {report.budget:g} s", round(report.elapsed, 3)))  # fmt: skip
    nothing = report.nothing_verified
    result.add(Check("verify.verified", Status.FAIL if nothing else Status.OK, nothing or
                     f"{sum(r.verified for r in report.results)} gate(s) verified on evidence", report.pack,
                     ">= 1 gate verified", sum(r.verified for r in report.results)))  # fmt: skip
    if report.strict:
        skipped = report.strict_skips
        result.add(Check("verify.strict", Status.FAIL if skipped else Status.OK,
                         f"--strict: {len(skipped)} gate(s) SKIP: {', '.join(skipped)}" if skipped
                         else "--strict: no gate SKIP", report.pack, "no SKIP", skipped))  # fmt: skip
    files = {}
    if junit is not None:
        write_atomic(junit, junit_xml(report, finished))
        files["junit"] = str(junit)
    if prom is not None:
        capabilities = sorted({r.capability for r in report.results if r.capability})
        successes = {c: last_success(ctx.root.receipts_dir, c) for c in capabilities}
        write_atomic(prom, prometheus_text(report, finished, successes))
        files["prom"] = str(prom)
    # The spine's summary keys sit in a mapping of their own: the text view prints top-level scalars as
    # `key: value`, and a line `fail: 0` is what the spine's mixed-status heuristic reads as `^FAIL:`.
    result.data = {
        "pack": report.pack,
        "summary": keys,
        "ring": report.ring,
        "budget_seconds": report.budget,
        "elapsed_seconds": round(report.elapsed, 3),
        "budget_exceeded": report.budget_exceeded,
        "nothing_verified": report.nothing_verified,
        "strict": report.strict,
        "max_in_flight": report.max_in_flight,
        "gates_source": report.source,
        "gates": [r.to_dict() for r in report.results],
        **files,
    }
    result.status = Status.FAIL if report.failed else Status.OK
    return result
