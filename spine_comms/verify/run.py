"""verify.core.run and verify.pack.run: run a pack of gates and say, in the spine's words, what holds.

Text mode prints one `<ID> PASS|FAIL|SKIP: <detail>` line per gate (the spine's runner and failure
statistics read them), the `summary:` and `budget:` lines, and a table of the gates that did not
pass. --json carries the spine's summary keys and every gate's verdict. --junit and --prom leave
files for CI and monitoring. Exit 0 only when no gate fails and the ring budget held.
"""

from __future__ import annotations

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
    and the budget held, 1 otherwise."""
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
    unreachable, or whose contract is absent, is SKIP with the reason, never PASS; refused credentials
    are FAIL. Exit 0 only when no gate fails and the pack's ring budget held, 1 otherwise."""
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
    evaluate = _evaluator(ctx)
    with ctx.progress(f"verify {pack}", total=len(members)) as advance:

        def on_done(result) -> None:
            advance(1)
            ctx.log(result.line(), level="debug")

        results, elapsed, most = run_pack(members, evaluate, jobs=jobs, present=ctx.contracts.exists, on_done=on_done)
    report = RunReport(pack, ring, budget, elapsed, results, most, gate_set.source)
    return _result(ctx, report, junit, prom)


def _evaluator(ctx: RunContext):
    from spine_comms.verify.builtin import BUILTINS
    from spine_comms.verify.evaluate import receipt_gate, run_gate

    root, env = ctx.root, ctx.env

    def evaluate(gate):
        if gate.run is not None:
            return run_gate(gate, root, env)
        if gate.receipt is not None:
            return receipt_gate(gate, root, ctx.clock())
        return BUILTINS[gate.builtin](gate, root)

    return evaluate


def _result(ctx: RunContext, report, junit: Path | None, prom: Path | None) -> Result:
    from spine_comms.core.atomic import write_atomic
    from spine_comms.verify.evaluate import last_success
    from spine_comms.verify.reports import budget_line, junit_xml, prometheus_text

    keys = report.summary_keys()
    finished = ctx.clock()
    result = Result()
    result.summary = [r.line() for r in report.results]
    result.summary.append(f"summary: pass={keys['pass']} fail={keys['fail']} skipped={keys['skipped']}")
    result.summary.append(budget_line(report))
    for r in report.results:
        result.add(Check(f"verify.gate.{r.id.lower()}", CHECK_STATUS[r.status], r.detail, r.name,
                         "PASS", r.status, {"capability": r.capability, "run_key": r.run_key,
                                            "age_seconds": r.age_seconds, "fix_hint": r.fix_hint},
                         round(r.elapsed * 1000, 1)))  # fmt: skip
    result.add(Check("verify.budget", Status.FAIL if report.budget_exceeded else Status.OK, budget_line(report),
                     report.ring, f"<= {report.budget:g} s", round(report.elapsed, 3)))  # fmt: skip
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
        "max_in_flight": report.max_in_flight,
        "gates_source": report.source,
        "gates": [r.to_dict() for r in report.results],
        **files,
    }
    failed = keys["fail"] or report.budget_exceeded
    result.status = Status.FAIL if failed else Status.OK
    return result
