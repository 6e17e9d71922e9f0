"""Verify packs are never green on a broken or empty system (issue 15).

Against servers that are down or hung on 127.0.0.1 (tests/silent_server.py) and against an empty
root: a gate whose server cannot be reached FAILs (JUnit <error>, the kind named), SKIP is only for a
surface the stack contract declares not deployed, a run that verified nothing exits 1 with one line
saying what is missing, and --strict fails on any SKIP. The lab tests (tests/integration/
test_verify_lab.py) hold the same against the real servers.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.silent_server import closed_port, silent_listener
from tests.unit.test_verify_reports import JUNIT_XSD

COMMUNICATIONS = ["D901", "D902", "D903", "D904", "D905", "D906", "D907", "D908", "D909"]


def stack_root(tmp_path: Path, ports: dict[str, int], *, surfaces: dict | None = None, timeout: float = 2) -> Path:
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True)
    contract = {
        "version": 1,
        "pilot": {"ports": [{"host": p, "protocol": proto} for proto, p in ports.items()],
                  "mailboxes": [{"id": "ops", "address": "ops@spine.test"}]},
        "endpoints": {"host": "127.0.0.1", "server_name": "mail.spine.test", "timeout_seconds": timeout},
    }  # fmt: skip
    if surfaces is not None:
        contract["surfaces"] = surfaces
    (root / "bindings" / "communications.stack.contract.yaml").write_text(yaml.safe_dump(contract))
    return root


def reports(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "out" / "verify.xml", tmp_path / "out" / "verify.prom"


def junit_cases(junit: Path) -> tuple[dict, dict]:
    import xmlschema

    suite = xmlschema.XMLSchema(JUNIT_XSD).to_dict(str(junit))["testsuite"][0]
    return suite, {c["@name"].split()[0]: c for c in suite["testcase"]}


def prom_values(prom: Path) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f.samples for f in text_string_to_metric_families(prom.read_text())}


def test_an_empty_root_verifies_nothing_and_says_what_is_missing(cli, tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    junit, prom = reports(tmp_path)
    text = cli("verify.pack.run", "communications", "--root", str(root), "--junit", str(junit), "--prom", str(prom))
    assert text.exit_code == 1, text.stdout
    missing = [line for line in text.stdout.splitlines() if line.startswith("verify.run FAIL: nothing verified")]
    assert missing == ["verify.run FAIL: nothing verified: no gate could be verified: the root lacks "
                       "communications.dav.contract.yaml, communications.inbox.contract.yaml, "
                       "communications.mailauth.contract.yaml, communications.sieve.contract.yaml, "
                       "communications.stack.contract.yaml"], text.stdout  # fmt: skip
    assert text.stdout.rstrip().endswith("status: fail")

    data = cli("verify.pack.run", "communications", "--root", str(root), "--json").json()["data"]
    failing = [g for g in COMMUNICATIONS if g != "D906"]
    assert data["summary"]["failing_ids"] == failing == data["summary"]["not_evaluated_ids"]
    # The sync gate depends on the CalDAV gate: it does not run, and says why (the run is red already).
    assert data["summary"]["skipped_ids"] == ["D906"] and data["nothing_verified"]
    assert data["gates"][5]["detail"] == "not run: depends on D904 (FAIL)"
    assert {g["could_not_evaluate"] for g in data["gates"] if g["id"] != "D906"} == {"contract_absent"}

    suite, cases = junit_cases(junit)
    assert (suite["@errors"], suite["@failures"]) == (8, 1)  # eight gates not evaluated, and the run's verdict
    assert cases["D907"]["error"][0]["@type"] == "contract_absent" and "failure" not in cases["D907"]
    assert cases["run-verdict"]["failure"][0]["@type"] == "nothing-verified"
    samples = prom_values(prom)
    assert [s.value for s in samples["spine_comms_verify_run_success"]] == [0]
    assert [s.value for s in samples["spine_comms_verify_run_verified_gates"]] == [0]
    unevaluated = {s.labels["gate"]: s.labels["kind"] for s in samples["spine_comms_verify_gate_could_not_evaluate"]
                   if s.value == 1}  # fmt: skip
    assert unevaluated == dict.fromkeys(failing, "contract_absent")


def test_an_unreachable_server_fails_its_gate_as_an_error_and_only_a_declared_surface_skips(cli, tmp_path):
    surfaces = {"carddav": {"deployed": False, "reason": "contacts stay on the phones"}}
    root = stack_root(tmp_path, {"IMAPS": closed_port(), "SMTPS": closed_port()}, surfaces=surfaces)
    junit, prom = reports(tmp_path)
    result = cli("verify.pack.run", "communications", "--root", str(root), "--json", "--gate", "D903",
                 "--gate", "D905", "--gate", "D907", "--junit", str(junit), "--prom", str(prom))  # fmt: skip
    data = result.json()["data"]
    gates = {g["id"]: g for g in data["gates"]}
    assert result.exit_code == 1
    # The TLS gate FAILs when stack.status could not reach the endpoints; it never SKIPs.
    assert (gates["D903"]["status"], gates["D903"]["could_not_evaluate"], gates["D903"]["exit_code"]) == (
        "FAIL",
        "unreachable",
        3,
    )
    assert "stack.endpoint.reachable" in gates["D903"]["detail"]
    assert gates["D905"]["status"] == "SKIP" and gates["D905"]["detail"] == (
        "not deployed: the stack contract declares surfaces.carddav.deployed: false: contacts stay on the phones"
    )
    assert gates["D907"]["status"] == "FAIL" and gates["D907"]["could_not_evaluate"] == "contract_absent"
    assert "surfaces.inbox.deployed: false" in gates["D907"]["detail"]
    _, cases = junit_cases(junit)
    assert cases["D903"]["error"][0]["@type"] == "unreachable" and "skipped" in cases["D905"]
    status = {(s.labels["gate"], s.labels["status"]): s.value
              for s in prom_values(prom)["spine_comms_verify_gate_status"]}  # fmt: skip
    assert status[("D903", "fail")] == 1 and status[("D905", "skip")] == 1


def test_strict_fails_on_a_skip_and_a_declared_surface_alone_is_not_success(cli, tmp_path):
    everything_off = {s: {"deployed": False} for s in ("mail_auth", "caldav", "carddav", "calendar_sync", "inbox",
                                                       "sieve", "outbox")}  # fmt: skip
    root = stack_root(tmp_path, {"IMAPS": closed_port()}, surfaces=everything_off)
    only_declared = ["--gate", "D905", "--gate", "D906"]
    result = cli("verify.pack.run", "communications", "--root", str(root), "--json", *only_declared)
    data = result.json()["data"]
    assert [g["status"] for g in data["gates"]] == ["SKIP", "SKIP"]
    assert result.exit_code == 1 and data["nothing_verified"] == "no gate could be verified (2 SKIP)"

    junit, _ = reports(tmp_path)
    with silent_listener() as hung:  # D909 reads the outbox only: verified, so the run could be green ...
        root = stack_root(tmp_path / "two", {"IMAPS": hung}, surfaces={"carddav": {"deployed": False}})
        base = ["verify.pack.run", "communications", "--root", str(root), "--gate", "D905", "--gate", "D909"]
        assert cli(*base).exit_code == 0
        strict = cli(*base, "--strict", "--junit", str(junit))  # ... and --strict turns its SKIP red
    assert strict.exit_code == 1
    assert "verify.run FAIL: --strict and 1 gate(s) SKIP: D905" in strict.stdout
    _, cases = junit_cases(junit)
    assert cases["run-verdict"]["failure"][0]["@type"] == "strict"


@pytest.mark.parametrize("where", ["IMAPS", "SMTP", "ManageSieve"])
def test_a_hung_server_fails_the_gate_within_the_ring_budget(cli, tmp_path, where):
    with silent_listener() as hung:
        root = stack_root(tmp_path, {where: hung}, timeout=1)
        started = time.monotonic()
        result = cli("verify.pack.run", "communications", "--root", str(root), "--json", "--gate", "D903")
        took = time.monotonic() - started
    gate = result.json()["data"]["gates"][0]
    assert result.exit_code == 1 and gate["status"] == "FAIL" and gate["could_not_evaluate"] == "timeout", gate
    assert took < 15, took  # the contract's 1 s, not a protocol default of 15 or 30 s


def test_the_ring_budget_stops_a_gate_that_would_outlast_it(cli, tmp_path):
    """A gate's own timeout_seconds (45) is cut to what is left of the ring budget (5 s less a margin)."""
    root = stack_root(tmp_path, {"IMAPS": 1})
    gates = {"version": 1, "budgets": {"instant": 4},
             "gates": [{"id": "D950", "name": "slow", "description": "d", "severity": "high", "checks": "c",
                        "fix_hint": "f", "ring": "instant",
                        "run": {"capability": "communications.stack.status", "timeout_seconds": 45,
                                "args": ["--timeout", "30"]}}],
             "packs": {"core": {"gates": ["D950"]}}}  # fmt: skip
    (root / "bindings" / "verify.gates.yaml").write_text(yaml.safe_dump(gates))
    with silent_listener() as hung:
        stack = yaml.safe_load((root / "bindings" / "communications.stack.contract.yaml").read_text())
        stack["pilot"]["ports"] = [{"host": hung, "protocol": "IMAPS"}]
        (root / "bindings" / "communications.stack.contract.yaml").write_text(yaml.safe_dump(stack))
        started = time.monotonic()
        result = cli("verify.core.run", "--root", str(root), "--json")
        took = time.monotonic() - started
    data = result.json()["data"]
    gate = data["gates"][0]
    assert gate["status"] == "FAIL" and gate["could_not_evaluate"] == "timeout", gate
    assert "left of the ring budget" in gate["detail"] and took < 8, (took, gate["detail"])
    assert result.exit_code == 1
