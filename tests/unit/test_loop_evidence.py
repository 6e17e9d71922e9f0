"""loop.evidence: the scope parser, the contract, and the verdicts drawn from receipts.

Receipts here are written from a real one (a capabilities.verify run) with their capability,
status, time, arguments and data changed, then sealed and chained by the receipt writer itself (the
test plays the runner), so they stay valid against the receipt schema; the lab test
(tests/integration/test_loop_evidence_lab.py) proves the loop with receipts of real runs.
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spine_comms.core.receipts import record_run
from spine_comms.core.secrets import Redactor, Secrets
from spine_comms.governance.loop_evidence import SHIPPED
from spine_comms.governance.loop_scope import parse_scope

LOOP = "LOOP-COMMS-AGENTIC-LAYER-20260223"
SAMPLE = SHIPPED / f"{LOOP}.scope.md"

SCOPE = """---
loop_id: LOOP-TEST-20260101
status: active
---
# Loop Scope

### Phase 1: First
**Goal:** one

| Step | Action | Evidence |
|------|--------|----------|
| 1.1 | Do a thing | it shows |
| 1.2 | Enqueue | items appear |

**DoD:** the first is done.

### Phase 2: Second

| Step | Action | Evidence |
|------|--------|----------|
| 2.1 | Gate | PASS |

**DoD:** the second is done.

## Success Criteria

1. Inbox gate passes
2. DNS gate passes
"""

CONTRACT = """version: 1
loops:
  LOOP-TEST-20260101:
    max_age_hours: 24
    steps:
      "1.1": {capability: a.three, max_age_hours: 1}
      "1.2": {capability: a.four, args: [--enqueue]}
      "2.1": [a.one, {capability: a.five, status: [ok, warn]}]
    dod:
      "1": a.one
      "2": {capability: [a.two, a.twin]}
    criteria:
      "1": {capability: verify.pack.run, args: [communications], gate: D907}
      "2": {capability: verify.pack.run, args: [communications], gate: D901}
"""


def test_the_sample_scope_parses():
    scope = parse_scope(SAMPLE)
    assert scope.loop_id == LOOP and scope.front_matter["status"] == "planned"
    assert [p.number for p in scope.phases] == ["1", "2", "3", "4"]
    assert [len(p.steps) for p in scope.phases] == [5, 5, 5, 6]
    assert scope.phases[0].steps[3].id == "1.4"
    assert scope.phases[0].steps[3].evidence == "`Authentication-Results: dkim=pass`"
    assert scope.phases[2].dod.startswith("Email sent to `ops@spine.mintprints.co` is polled")
    assert [c.number for c in scope.criteria] == ["1", "2", "3", "4", "5"]
    assert scope.criteria[4].text == "Full verify suite passes clean"


@pytest.fixture
def template(cli, tmp_path) -> dict:
    """A real receipt.json, from a run of capabilities.verify on a scratch root."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cli("capabilities.verify", "--root", str(scratch), "--json")
    (doc,) = [json.loads(p.read_text()) for p in scratch.glob("receipts/sessions/*/receipt.json")]
    return doc


@pytest.fixture
def loop_root(root: Path) -> Path:
    (root / "bindings" / "loop.evidence.contract.yaml").write_text(CONTRACT)
    scopes = root / "mailroom" / "state" / "loop-scopes"
    scopes.mkdir(parents=True)
    (scopes / "LOOP-TEST-20260101.scope.md").write_text(SCOPE)
    return root


def receipt(root: Path, template: dict, capability: str, status: str = "ok", *, hours_ago: float = 0.1,
            args: tuple[str, ...] = (), data: dict | None = None) -> str:  # fmt: skip
    when = datetime.now(UTC) - timedelta(hours=hours_ago)
    run_key = f"CAP-{when:%Y%m%d-%H%M%S}__{capability}__R{secrets.token_hex(4)}"
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = copy.deepcopy(template)
    directory = root / "receipts" / "sessions" / f"R{run_key}"
    doc.update(run_key=run_key, capability=capability, status=status, started_at=stamp, finished_at=stamp,
               exit_code={"ok": 0, "warn": 0, "fail": 1, "error": 3}[status])  # fmt: skip
    doc["envelope"].update(capability=capability, status=status, generated_at=stamp, data=data or {},
                           run_key=run_key, receipt=str(directory))  # fmt: skip
    doc["invocation"]["argv"] = ["spine-comms", capability, *args]
    doc.pop("integrity", None)
    record_run(root / "receipts" / "sessions", doc, output_txt="", printed="", spine_runner=False, ledger=None,
               ledger_row=None, secrets=Secrets(Redactor(), {}), root=root)  # fmt: skip
    return run_key


def evidence(cli, root: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    done = cli("loop.evidence", "--root", str(root), "--json", *args, env=env)
    assert done.stdout.startswith("{"), done.stderr
    return done.exit_code, done.json()


def verdicts(envelope: dict) -> dict[str, str]:
    data = envelope["data"]
    out = {f"step {s['id']}": s["verdict"] for p in data["phases"] for s in p["steps"]}
    out |= {f"dod {p['number']}": p["dod"]["verdict"] for p in data["phases"]}
    out |= {f"criterion {c['key']}": c["verdict"] for c in data["criteria"]}
    return out


def test_an_empty_root_proves_nothing_and_fails(cli, loop_root):
    code, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert code == 1 and envelope["status"] == "fail"
    assert set(verdicts(envelope).values()) == {"unproven"}
    assert envelope["data"]["dod_unproven"] == ["1", "2"]


def test_verdicts_follow_the_latest_matching_receipt(cli, loop_root, template):
    gates = {"gates": [{"id": "D901", "status": "PASS"}, {"id": "D907", "status": "FAIL"}]}
    proof_key = receipt(loop_root, template, "a.one")
    receipt(loop_root, template, "a.two", "ok", hours_ago=3)
    receipt(loop_root, template, "a.two", "fail", hours_ago=1)  # newer: it decides
    receipt(loop_root, template, "a.three", hours_ago=2)  # older than its 1 hour
    receipt(loop_root, template, "a.four")  # without --enqueue: not the run the step wants
    receipt(loop_root, template, "a.five", "warn")
    receipt(loop_root, template, "verify.pack.run", args=("communications",), data=gates)
    code, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert verdicts(envelope) == {
        "step 1.1": "stale", "step 1.2": "unproven", "step 2.1": "proven",
        "dod 1": "proven", "dod 2": "failing",
        "criterion 1": "failing", "criterion 2": "proven",
    }  # fmt: skip
    assert code == 1 and envelope["data"]["dod_unproven"] == ["2"]
    first = envelope["data"]["phases"][0]["dod"]["proofs"][0]
    assert first["run_key"] == proof_key and first["capability"] == "a.one" and first["status"] == "ok"
    assert first["age_seconds"] is not None and 300 <= first["age_seconds"] <= 3600
    checks = {c["id"]: c["status"] for c in envelope["checks"]}
    assert checks["loop.dod.1"] == "ok" and checks["loop.dod.2"] == "fail" and checks["loop.steps"] == "warn"

    receipt(loop_root, template, "a.twin", "ok")  # a receipt of either capability counts
    receipt(loop_root, template, "a.four", args=("--enqueue",))
    receipt(loop_root, template, "a.three")
    receipt(loop_root, template, "verify.pack.run", hours_ago=0.05, args=("communications",), data={"gates": [
        {"id": "D901", "status": "PASS"}, {"id": "D907", "status": "PASS"}]})  # fmt: skip
    code, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert set(verdicts(envelope).values()) == {"proven"}, verdicts(envelope)
    assert code == 0 and envelope["status"] == "ok"


def test_a_receipt_md_alone_is_refused_and_named(cli, loop_root, template):
    """The spine's runner has spine-comms write receipt.json too: a receipt.md alone is hand-written."""
    receipt(loop_root, template, "a.one", "fail", hours_ago=1)
    run_key = f"CAP-{datetime.now(UTC):%Y%m%d-%H%M%S}__a.one__Rhand1"
    directory = loop_root / "receipts/sessions" / f"R{run_key}"
    directory.mkdir(parents=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (directory / "receipt.md").write_text(
        f"# Receipt\n\n| Field | Value |\n|---|---|\n| Run ID | `{run_key}` |\n| Capability | `a.one` |\n"
        f"| Status | done |\n| Exit Code | 0 |\n| Generated | {stamp} |\n| Model | local |\n"
    )
    code, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert code == 1 and verdicts(envelope)["dod 1"] == "refused"
    refused = next(c for c in envelope["checks"] if c["id"] == "loop.evidence.receipts")
    assert refused["status"] == "fail" and refused["actual"] == [str(directory)]
    assert "no receipt.json" in refused["detail"] and run_key in refused["detail"]


def test_a_hand_written_or_edited_receipt_json_is_refused(cli, loop_root, template):
    good = receipt(loop_root, template, "a.one", "error", hours_ago=0.5)
    directory = loop_root / "receipts/sessions" / f"R{good}"
    doc = json.loads((directory / "receipt.json").read_text())
    doc["status"], doc["exit_code"], doc["envelope"]["status"] = "ok", 0, "ok"  # an error edited to ok
    (directory / "receipt.json").write_text(json.dumps(doc))
    code, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert code == 1 and verdicts(envelope)["dod 1"] == "refused"
    assert "changed after the run wrote it" in envelope["data"]["phases"][0]["dod"]["detail"]

    # A minimal hand-written receipt.json (newer still): no seal, no line in the chain.
    run_key = f"CAP-{datetime.now(UTC):%Y%m%d-%H%M%S}__a.one__Rhand2"
    (loop_root / "receipts/sessions" / f"R{run_key}").mkdir()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    minimal = {"run_key": run_key, "capability": "a.one", "status": "ok", "exit_code": 0, "finished_at": stamp,
               "invocation": {"argv": ["spine-comms", "a.one"]}}  # fmt: skip
    (loop_root / "receipts/sessions" / f"R{run_key}" / "receipt.json").write_text(json.dumps(minimal))
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    dod = envelope["data"]["phases"][0]["dod"]
    assert dod["verdict"] == "refused" and "carries no seal" in dod["detail"] and run_key in dod["detail"]

    # The same seal copied in whole under a newer name: its run key is not its directory's.
    copied = loop_root / "receipts/sessions" / f"R{run_key}"
    shutil.rmtree(copied)
    shutil.copytree(directory, copied)
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert "copied or renamed" in envelope["data"]["phases"][0]["dod"]["detail"]
    shutil.rmtree(copied)  # the forgeries go: every receipt left under tmp_path is audited as genuine
    shutil.rmtree(directory)


NARROW = """version: 1
loops:
  LOOP-TEST-20260101:
    dod:
      "1": {capability: verify.pack.run, args: [communications]}
      "2": {capability: sieve.apply, args: [--execute]}
"""


def dods(envelope: dict) -> dict[str, str]:
    return {k: v for k, v in verdicts(envelope).items() if k.startswith("dod")}


def test_a_narrower_run_never_stands_in_for_the_run_a_proof_names(cli, loop_root, template):
    (loop_root / "bindings" / "loop.evidence.contract.yaml").write_text(NARROW)
    receipt(loop_root, template, "verify.pack.run", "fail", hours_ago=1, args=("communications",))
    receipt(loop_root, template, "verify.pack.run", hours_ago=0.5, args=("communications", "--gate", "D903"))
    receipt(loop_root, template, "verify.pack.run", hours_ago=0.5, args=("core",))
    receipt(loop_root, template, "sieve.apply", "fail", hours_ago=1, args=("--execute", "--yes"))
    receipt(loop_root, template, "sieve.apply", hours_ago=0.5, args=("--execute", "--rollback", "--yes"))
    receipt(loop_root, template, "sieve.apply", hours_ago=0.5, args=("--execute", "--mailbox", "ops", "--yes"))
    receipt(loop_root, template, "sieve.apply", hours_ago=0.4)  # a dry run
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert dods(envelope) == {"dod 1": "failing", "dod 2": "failing"}

    # The full pack with only output and parallelism options, and the apply with --yes and a timeout: they count.
    receipt(loop_root, template, "verify.pack.run", hours_ago=0.2,
            args=("--jobs", "2", "communications", "--junit", "/tmp/x.xml", "--json"))  # fmt: skip
    receipt(loop_root, template, "sieve.apply", hours_ago=0.2, args=("--execute", "--yes", "--timeout", "5"))
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    assert dods(envelope) == {"dod 1": "proven", "dod 2": "proven"}
    assert {c["id"]: c["status"] for c in envelope["checks"]}["loop.dod.1"] == "ok"


def test_a_proof_whose_arguments_the_capability_does_not_take_is_unproven(cli, loop_root, template):
    (loop_root / "bindings" / "loop.evidence.contract.yaml").write_text(NARROW.replace("[--execute]", "[--exec]"))
    receipt(loop_root, template, "sieve.apply", args=("--exec",))
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    dod = envelope["data"]["phases"][1]["dod"]
    assert dod["verdict"] == "unproven" and "--exec are not arguments sieve.apply accepts" in dod["detail"]


def test_the_scope_is_found_under_the_mailroom_state_or_by_path(cli, loop_root, tmp_path):
    elsewhere = tmp_path / "state"
    (elsewhere / "loop-scopes").mkdir(parents=True)
    (elsewhere / "loop-scopes" / "LOOP-TEST-20260101.scope.md").write_text(SCOPE.replace("First", "Moved"))
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101", env={"SPINE_STATE": str(elsewhere)})
    assert envelope["data"]["phases"][0]["title"] == "Moved"
    path = loop_root / "mailroom/state/loop-scopes/LOOP-TEST-20260101.scope.md"
    assert evidence(cli, loop_root, str(path))[1]["data"]["loop_id"] == "LOOP-TEST-20260101"
    done = cli("loop.evidence", "--root", str(loop_root), "LOOP-NOWHERE-1")
    assert done.exit_code == 2 and "looked in" in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_the_shipped_contract_maps_every_part_of_the_sample_loop(cli, root):
    code, envelope = evidence(cli, root, str(SAMPLE))
    assert envelope["data"]["contract"].startswith(str(SHIPPED))
    assert code == 1 and "undeclared" not in verdicts(envelope).values()
    assert "loop.evidence.mapping" not in {c["id"] for c in envelope["checks"]}
    assert envelope["data"]["counts"] == {"dod": 4, "dod_proven": 0, "steps": 21, "steps_proven": 0,
                                          "criteria": 5, "criteria_proven": 0}  # fmt: skip


def test_mapping_keys_the_scope_lacks_are_named(cli, loop_root):
    contract = loop_root / "bindings" / "loop.evidence.contract.yaml"
    contract.write_text(CONTRACT.replace('"1.2":', '"1.9":'))
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    mapping = next(c for c in envelope["checks"] if c["id"] == "loop.evidence.mapping")
    assert mapping["status"] == "warn" and mapping["actual"] == ["steps.1.9"]
    assert verdicts(envelope)["step 1.2"] == "undeclared"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\nloops:\n  NOT-A-LOOP: {}\n", ":2: loops: 'NOT-A-LOOP' is not a loop id"),
        ("version: 1\nloops:\n  LOOP-TEST-20260101:\n    dod:\n      '1': {capability: a.one, status: [great]}\n",
         ":5: loops.LOOP-TEST-20260101.dod.1.status[0]"),
        ("version: 1\nloops:\n  LOOP-TEST-20260101:\n    max_age_hours: -1\n",
         ":4: loops.LOOP-TEST-20260101.max_age_hours"),
    ],
)  # fmt: skip
def test_an_invalid_contract_is_exit_2_with_file_and_line(cli, loop_root, text, where):
    contract = loop_root / "bindings" / "loop.evidence.contract.yaml"
    contract.write_text(text)
    done = cli("loop.evidence", "--root", str(loop_root), "LOOP-TEST-20260101")
    assert done.exit_code == 2 and "Traceback" not in done.stdout + done.stderr
    assert f"{contract}{where}" in done.stdout, done.stdout


def test_a_file_that_is_not_a_scope_is_exit_2(cli, loop_root, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nnothing here\n")
    done = cli("loop.evidence", "--root", str(loop_root), str(notes))
    assert done.exit_code == 2 and "no `### Phase N: title` heading" in done.stdout
    notes.write_text("---\nloop_id: LOOP-X\n# never closed\n")
    done = cli("loop.evidence", "--root", str(loop_root), str(notes))
    assert done.exit_code == 2 and "opening --- without a closing ---" in done.stdout


def test_allowed_options_may_take_any_value_but_a_dry_run_never_counts(cli, loop_root, template):
    contract = NARROW.replace(
        '"2": {capability: sieve.apply, args: [--execute]}',
        '"2": {capability: calendar.event.create, args: [--execute], allow: [--summary, --start, --attendee]}',
    )
    (loop_root / "bindings" / "loop.evidence.contract.yaml").write_text(contract)
    content = ("--summary", "review", "--start", "2031-03-24T09:00", "--attendee", "Ada <ada@example.org>", "--execute")
    receipt(loop_root, template, "calendar.event.create", hours_ago=0.5, args=content)
    receipt(loop_root, template, "calendar.event.create", "fail", hours_ago=0.4,
            args=("--summary", "x", "--start", "2031-03-24T09:00", "--calendar", "other", "--execute"))  # fmt: skip
    receipt(loop_root, template, "calendar.event.create", "fail", hours_ago=0.3,
            args=("--summary", "x", "--start", "2031-03-24T09:00", "--dry-run"))  # fmt: skip
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    dod = envelope["data"]["phases"][1]["dod"]
    assert dod["verdict"] == "proven", dod  # the --calendar and --dry-run runs are other runs

    (loop_root / "bindings" / "loop.evidence.contract.yaml").write_text(contract.replace("--attendee]", "--atendee]"))
    _, envelope = evidence(cli, loop_root, "LOOP-TEST-20260101")
    dod = envelope["data"]["phases"][1]["dod"]
    assert dod["verdict"] == "unproven" and "--atendee not an option of calendar.event.create" in dod["detail"]
