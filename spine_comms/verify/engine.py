"""Running a pack: gates in parallel in a bounded pool, each after the gates it depends on.

A gate whose surface the stack contract declares not deployed is SKIP, saying so: the only SKIP
that stands for the system. A gate starts as soon as every gate it depends on has finished; when
one of them did not PASS, the gate does not run and is SKIP with that reason (its verdict would only
repeat a failure that already fails the run, goss-style). A gate whose contracts are absent is FAIL,
could not evaluate: nothing said that surface is not there. The run is timed against its ring's budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from spine_comms.contracts.verify import Gate
from spine_comms.verify.gates import FAIL, PASS, SKIP, GateResult, verdict

Evaluate = Callable[[Gate], GateResult]


@dataclass
class RunReport:
    pack: str
    ring: str
    budget: float
    elapsed: float
    results: list[GateResult]
    max_in_flight: int
    source: str = ""
    strict: bool = False  # --strict: a SKIP fails the run too

    @property
    def budget_exceeded(self) -> bool:
        return self.elapsed > self.budget

    @property
    def nothing_verified(self) -> str | None:
        """Why no gate reached a verdict on evidence (an empty root, every server down ...), or None."""
        if any(r.verified for r in self.results):
            return None
        absent = sorted({n for r in self.results if r.could_not_evaluate == "contract_absent"
                         for n in r.evidence.get("absent", [])})  # fmt: skip
        if absent:
            return f"no gate could be verified: the root lacks {', '.join(absent)}"
        reasons: dict[str, int] = {}
        for r in self.results:
            reason = r.could_not_evaluate or r.status
            reasons[reason] = reasons.get(reason, 0) + 1
        counted = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        return f"no gate could be verified ({counted or 'no gates'})"

    @property
    def strict_skips(self) -> list[str]:
        return self.ids(SKIP) if self.strict else []

    @property
    def failed(self) -> bool:
        """What decides the run: a FAIL, an overrun, nothing verified, or (with --strict) a SKIP."""
        return bool(self.ids(FAIL) or self.budget_exceeded or self.nothing_verified or self.strict_skips)

    def ids(self, status: str) -> list[str]:
        return [r.id for r in self.results if r.status == status]

    def summary_keys(self) -> dict[str, Any]:
        """The spine's verify summary keys (its skipped_inline/skipped_retired are one `skipped` here)."""
        return {
            "total": len(self.results),
            "pass": len(self.ids(PASS)),
            "fail": len(self.ids(FAIL)),
            "skipped": len(self.ids(SKIP)),
            "failing_ids": self.ids(FAIL),
            "skipped_ids": self.ids(SKIP),
            # FAIL gates that found no verdict (unreachable, timeout, contract absent ...): a subset of failing_ids.
            "not_evaluated_ids": [r.id for r in self.results if r.could_not_evaluate],
        }


class _InFlight:
    """Counts gates being evaluated at once: the measure of parallelism (wall time would be flaky)."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.now -= 1


def run_pack(
    gates: list[Gate],
    evaluate: Evaluate,
    *,
    jobs: int,
    present: Callable[[str], bool] = lambda name: True,
    not_deployed: Callable[[Gate], str | None] = lambda gate: None,
    on_done: Callable[[GateResult], None] = lambda result: None,
) -> tuple[list[GateResult], float, int]:
    """(results in the pack's order, elapsed seconds, most gates in flight at once).

    `not_deployed(gate)`: why the contracts say the gate's surface is not there (None: it is)."""
    in_pack = {g.id for g in gates}
    pending = {g.id: g for g in gates}
    done: dict[str, GateResult] = {}
    flight = _InFlight()

    def guarded(gate: Gate) -> GateResult:
        with flight:
            started = time.monotonic()
            try:
                result = evaluate(gate)
            except Exception as exc:  # one broken gate must not hide the verdicts of the others
                result = verdict(gate, FAIL, f"the gate could not run: {exc.__class__.__name__}: {exc}",
                                 could_not_evaluate="internal_error")  # fmt: skip
            result.elapsed = time.monotonic() - started
            return result

    def finish(result: GateResult) -> None:
        done[result.id] = result
        on_done(result)

    started = time.monotonic()
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="gate") as pool:
        while pending or running:
            for gate_id, gate in list(pending.items()):
                # A dependency outside the pack is not waited for: the pack chose not to run it.
                deps = [d for d in gate.depends_on if d in in_pack]
                if any(d not in done for d in deps):
                    continue
                del pending[gate_id]
                blocked = [d for d in deps if done[d].status != PASS]
                absent = [n for n in gate.needs if not present(n)]
                if (why := not_deployed(gate)) is not None:
                    finish(verdict(gate, SKIP, why))
                elif blocked:
                    finish(verdict(gate, SKIP, "not run: depends on " + ", ".join(f"{d} ({done[d].status})"
                                                                                   for d in blocked)))  # fmt: skip
                elif absent:
                    finish(verdict(gate, FAIL, f"contract {', '.join(absent)} absent from the root's bindings: "
                                               + _absent_fix(gate, absent), could_not_evaluate="contract_absent",
                                   evidence={"absent": absent}))  # fmt: skip
                else:
                    running[pool.submit(guarded, gate)] = gate_id
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                running.pop(future)
                finish(future.result())
    elapsed = time.monotonic() - started
    return [done[g.id] for g in gates], elapsed, flight.most


def _absent_fix(gate: Gate, absent: list[str]) -> str:
    """What to do about an absent contract: write it, or (when the stack contract is there to say so)
    declare the gate's surface not deployed."""
    from spine_comms.contracts.stack import STACK_CONTRACT

    if gate.surface and STACK_CONTRACT not in absent:
        return (f"write it, or declare `surfaces.{gate.surface}.deployed: false` in the stack contract if "
                f"{gate.surface} is not deployed here")  # fmt: skip
    return "write it"
