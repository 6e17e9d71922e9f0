"""The verify engine: gates in flight together, dependencies, absent contracts, the gates contract itself."""

from __future__ import annotations

import threading

import pytest
import yaml
from pydantic import ValidationError

from spine_comms.contracts.verify import VerifyContract
from spine_comms.core.registry import load_registry
from spine_comms.verify.engine import RunReport, run_pack
from spine_comms.verify.gates import DEFAULT_GATES, FAIL, PASS, SKIP, verdict


def contract(gates: list[dict], packs: dict | None = None, **extra) -> VerifyContract:
    full = [{"name": f"gate-{g['id'].lower()}", "description": "d", "severity": "low", "checks": "c",
             "fix_hint": "f", "builtin": "contracts_valid", **g} for g in gates]  # fmt: skip
    return VerifyContract.model_validate(
        {"gates": full, "packs": packs or {"all": {"gates": [g["id"] for g in gates]}}, **extra}
    )


def test_independent_gates_are_in_flight_together_up_to_the_pool_size():
    gates = contract([{"id": f"D{i}"} for i in range(1, 7)]).gates
    barrier = threading.Barrier(3, timeout=20)

    def evaluate(gate):
        barrier.wait()  # returns only when three gates are being evaluated at the same moment
        return verdict(gate, PASS, "ok")

    results, _elapsed, most = run_pack(gates, evaluate, jobs=3)
    assert [r.status for r in results] == [PASS] * 6
    assert most == 3


def test_one_job_runs_the_gates_one_at_a_time_in_order():
    gates = contract([{"id": f"D{i}"} for i in range(1, 5)]).gates
    seen = []
    results, _elapsed, most = run_pack(gates, lambda g: seen.append(g.id) or verdict(g, PASS, "ok"), jobs=1)
    assert most == 1 and seen == ["D1", "D2", "D3", "D4"] and [r.id for r in results] == seen


def test_a_gate_runs_after_its_dependency_and_is_skip_when_it_did_not_pass():
    gates = contract([{"id": "D1"}, {"id": "D2", "depends_on": ["D1"]}, {"id": "D3", "depends_on": ["D2"]},
                      {"id": "D4"}]).gates  # fmt: skip
    finished, started = [], {}
    lock = threading.Lock()

    def evaluate(gate):
        with lock:
            started[gate.id] = list(finished)
        status = FAIL if gate.id == "D2" else PASS
        with lock:
            finished.append(gate.id)
        return verdict(gate, status, "judged")

    results, _elapsed, _most = run_pack(gates, evaluate, jobs=4)
    by_id = {r.id: r for r in results}
    assert "D1" in started["D2"]  # D2 started only once D1 had finished
    assert by_id["D2"].status == FAIL
    assert by_id["D3"].status == SKIP and "D3" not in started and by_id["D3"].detail == "not run: depends on D2 (FAIL)"
    assert by_id["D4"].status == PASS


def test_an_absent_contract_is_fail_not_evaluated_and_the_gate_is_not_run():
    """Nothing said the inbox is not deployed, so a missing inbox contract is the system not as it should be."""
    gates = contract([{"id": "D1", "needs": ["communications.inbox.contract.yaml"], "surface": "inbox"},
                      {"id": "D2"}]).gates  # fmt: skip
    ran = []
    results, *_ = run_pack(gates, lambda g: ran.append(g.id) or verdict(g, PASS, "ok"), jobs=2,
                           present=lambda name: name != "communications.inbox.contract.yaml")  # fmt: skip
    assert ran == ["D2"]
    assert results[0].status == FAIL and results[0].could_not_evaluate == "contract_absent"
    assert "communications.inbox.contract.yaml absent" in results[0].detail
    assert "surfaces.inbox.deployed: false" in results[0].detail  # it says how to declare it not deployed


def test_only_a_surface_declared_not_deployed_is_skip_and_it_wins_over_an_absent_contract():
    gates = contract([{"id": "D1", "needs": ["communications.dav.contract.yaml"], "surface": "carddav"},
                      {"id": "D2", "surface": "caldav"}]).gates  # fmt: skip
    ran = []
    results, *_ = run_pack(
        gates,
        lambda g: ran.append(g.id) or verdict(g, PASS, "ok"),
        jobs=2,
        present=lambda name: False,
        not_deployed=lambda g: "not deployed: no contacts here" if g.surface == "carddav" else None,
    )
    assert ran == ["D2"]
    assert (results[0].status, results[0].detail) == (SKIP, "not deployed: no contacts here")
    assert results[0].could_not_evaluate is None and results[1].status == PASS


def test_a_gate_that_breaks_is_a_fail_and_the_others_still_report():
    gates = contract([{"id": "D1"}, {"id": "D2"}]).gates

    def evaluate(gate):
        if gate.id == "D1":
            raise RuntimeError("boom")
        return verdict(gate, PASS, "ok")

    results, *_ = run_pack(gates, evaluate, jobs=2)
    assert [r.status for r in results] == [FAIL, PASS]
    assert "boom" in results[0].detail and "Exception" not in results[0].detail
    assert results[0].could_not_evaluate == "internal_error"


@pytest.mark.parametrize(
    ("gates", "packs", "message"),
    [
        ([{"id": "D1"}, {"id": "D1"}], None, "gate id D1 declared twice"),
        ([{"id": "D1"}], {"p": {"gates": ["D2"]}}, "pack p lists unknown gate D2"),
        ([{"id": "D1", "depends_on": ["D9"]}], None, "depends on unknown gate D9"),
        ([{"id": "D1", "depends_on": ["D2"]}, {"id": "D2", "depends_on": ["D1"]}], None, "in a circle"),
        ([{"id": "D1", "run": {"capability": "sieve.status"}}], None, "exactly one way"),
        ([{"id": "X1"}], None, "String should match pattern"),
    ],
)
def test_the_gates_contract_refuses_what_cannot_run(gates, packs, message):
    with pytest.raises(ValidationError) as caught:
        contract(gates, packs)
    assert message in str(caught.value)


def test_the_default_gates_cover_every_phase_with_read_only_capabilities():
    model = VerifyContract.model_validate(yaml.safe_load(DEFAULT_GATES.read_text()))
    assert {"core", "communications", "hygiene-weekly"} <= set(model.packs)
    registry = load_registry()
    ran = {g.capability for g in model.gates if g.run}
    assert {"dns.mail.status", "communications.stack.status", "calendar.caldav.status", "contacts.carddav.status",
            "calendar.sync.plan", "communications.inbox.health", "sieve.status", "communications.outbox.status",
            "capabilities.verify"} == ran  # fmt: skip
    for gate in model.gates:
        if gate.run:  # a verify run must never change anything
            assert registry.get(gate.run.capability).safety == "read-only", gate.id
    assert {g.builtin for g in model.gates if g.builtin} == {"contracts_valid", "receipts_valid"}
    assert [g.receipt.capability for g in model.gates if g.receipt] == ["mail.auth.probe"]
    assert model.packs["core"].ring == "instant" and model.budget("instant") == 5
    assert model.budget("standard") == 60
    assert set(model.packs["hygiene-weekly"].gates) == {g.id for g in model.gates}


def report(statuses: list[tuple[str, str | None]], *, strict: bool = False) -> RunReport:
    gates = contract([{"id": f"D{i}"} for i in range(1, len(statuses) + 1)]).gates
    results = [
        verdict(g, status, "x", could_not_evaluate=why) for g, (status, why) in zip(gates, statuses, strict=True)
    ]
    return RunReport("p", "standard", 60, 1.0, results, 1, strict=strict)


@pytest.mark.parametrize(
    ("statuses", "strict", "failed", "nothing"),
    [
        ([(PASS, None), (SKIP, None)], False, False, None),
        ([(PASS, None), (SKIP, None)], True, True, None),  # --strict fails on any SKIP
        ([(SKIP, None), (SKIP, None)], False, True, "2 SKIP"),  # nothing verified is not success
        ([(FAIL, "unreachable"), (FAIL, "timeout")], False, True, "1 timeout, 1 unreachable"),
        ([(FAIL, None), (SKIP, None)], False, True, None),  # a FAIL on evidence is a verdict
    ],
)
def test_a_run_is_green_only_when_something_was_verified_and_nothing_failed(statuses, strict, failed, nothing):
    run = report(statuses, strict=strict)
    assert run.failed is failed
    assert (run.nothing_verified or "").endswith(f"({nothing})") if nothing else run.nothing_verified is None


def test_nothing_verified_names_the_contracts_the_root_lacks():
    gates = contract([{"id": "D1", "needs": ["a.yaml"]}, {"id": "D2", "needs": ["b.yaml", "a.yaml"]}]).gates
    results, elapsed, most = run_pack(gates, lambda g: verdict(g, PASS, "ok"), jobs=2, present=lambda n: False)
    run = RunReport("p", "standard", 60, elapsed, results, most)
    assert run.nothing_verified == "no gate could be verified: the root lacks a.yaml, b.yaml"
    assert run.failed and run.summary_keys()["not_evaluated_ids"] == ["D1", "D2"]


def test_a_gate_result_refuses_an_unknown_reason_for_not_evaluating():
    gate = contract([{"id": "D1"}]).gates[0]
    with pytest.raises(ValueError, match="unknown reason"):
        verdict(gate, FAIL, "x", could_not_evaluate="server looked sad")


def test_the_default_gates_name_a_surface_for_every_gate_a_site_may_not_deploy():
    model = VerifyContract.model_validate(yaml.safe_load(DEFAULT_GATES.read_text()))
    surfaces = {g.id: g.surface for g in model.gates}
    assert {k: str(v) for k, v in surfaces.items() if v} == {
        "D901": "mail_auth", "D902": "mail_auth", "D904": "caldav", "D905": "carddav", "D906": "calendar_sync",
        "D907": "inbox", "D908": "sieve", "D909": "outbox"}  # fmt: skip
