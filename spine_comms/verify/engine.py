"""Running a pack: gates in parallel in a bounded pool, each after the gates it depends on.

A gate starts as soon as every gate it depends on has finished; when one of them did not PASS, the
gate is SKIP without running (its verdict would only repeat that failure, goss-style). A gate whose
contracts are absent is SKIP too. The run is timed against its ring's budget.
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

    @property
    def budget_exceeded(self) -> bool:
        return self.elapsed > self.budget

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
    on_done: Callable[[GateResult], None] = lambda result: None,
) -> tuple[list[GateResult], float, int]:
    """(results in the pack's order, elapsed seconds, most gates in flight at once)."""
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
                result = verdict(gate, FAIL, f"the gate could not run: {exc.__class__.__name__}: {exc}")
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
                if blocked:
                    finish(verdict(gate, SKIP, "depends on " + ", ".join(f"{d} ({done[d].status})" for d in blocked)))
                elif absent:
                    finish(verdict(gate, SKIP, f"contract {', '.join(absent)} absent from the root's bindings"))
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
