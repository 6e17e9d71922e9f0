"""What a verify run says: spine lines, verdicts from envelopes, JSON keys, JUnit, Prometheus, budgets.

The JUnit files are validated against JUNIT_XSD below: the Surefire/Jenkins JUnit format CI tools
read (the shape pytest's own tests check its junitxml output against), written here from its rules:
<testsuites> of <testsuite name tests failures errors [skipped time timestamp hostname]>, holding
<properties> and <testcase name [classname time]>, each with optional <failure>, <skipped>,
<error>, <system-out>; times with at most three decimals.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from spine_comms.contracts.verify import VerifyContract
from spine_comms.core.receipts import record_run
from spine_comms.core.root import Root
from spine_comms.core.secrets import Redactor, Secrets
from spine_comms.verify.evaluate import judge_run, receipt_gate
from spine_comms.verify.gates import spine_safe

JUNIT_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:simpleType name="seconds">
    <xs:restriction base="xs:string"><xs:pattern value="[0-9]+(\\.[0-9]{1,3})?"/></xs:restriction>
  </xs:simpleType>
  <xs:complexType name="verdict" mixed="true">
    <xs:attribute name="message" type="xs:string"/>
    <xs:attribute name="type" type="xs:string"/>
  </xs:complexType>
  <xs:element name="testcase">
    <xs:complexType>
      <xs:choice minOccurs="0" maxOccurs="unbounded">
        <xs:element name="failure" type="verdict"/>
        <xs:element name="error" type="verdict"/>
        <xs:element name="skipped" type="verdict"/>
        <xs:element name="system-out" type="xs:string"/>
        <xs:element name="system-err" type="xs:string"/>
      </xs:choice>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="classname" type="xs:string"/>
      <xs:attribute name="time" type="seconds"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuite">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="properties" minOccurs="0">
          <xs:complexType><xs:sequence>
            <xs:element name="property" minOccurs="0" maxOccurs="unbounded">
              <xs:complexType>
                <xs:attribute name="name" type="xs:string" use="required"/>
                <xs:attribute name="value" type="xs:string" use="required"/>
              </xs:complexType>
            </xs:element>
          </xs:sequence></xs:complexType>
        </xs:element>
        <xs:element ref="testcase" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
      <xs:attribute name="time" type="seconds"/>
      <xs:attribute name="timestamp" type="xs:dateTime"/>
      <xs:attribute name="hostname" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuites">
    <xs:complexType>
      <xs:sequence><xs:element ref="testsuite" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:attribute name="name" type="xs:string"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
      <xs:attribute name="time" type="seconds"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""
SPINE_LINE = re.compile(r"^D[0-9]+ (PASS|FAIL|SKIP): \S")


def mixed_status(output: str) -> bool:
    """The spine's receipt-integrity heuristic (verify-topology): a passing run whose output looks broken."""
    done = re.search(r"DONE|status: done|status: ok", output, re.I)
    passed = re.search(r"PASS|RESULT: PASS", output)
    alarming = re.search(
        r"failed to wait for command termination|^FAIL:|command not found|Traceback|Exception|"
        r"unbound variable|unexpected EOF|No such file or directory| ERROR:",
        output,
        re.I | re.M,
    )
    return bool(done and passed and alarming)


GATE = {"name": "g", "description": "d", "severity": "high", "checks": "c", "fix_hint": "f"}


def write_gates(root: Path, gates: list[dict], **extra) -> None:
    doc = {"version": 1, "gates": [{**GATE, **g} for g in gates],
           "packs": {"core": {"gates": [g["id"] for g in gates]}}, **extra}  # fmt: skip
    (root / "bindings" / "verify.gates.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


BUILTIN_GATES = [{"id": "D911", "builtin": "contracts_valid", "ring": "instant"},
                 {"id": "D912", "builtin": "receipts_valid", "ring": "instant"}]  # fmt: skip


# ---- lines and verdicts -----------------------------------------------------------------------------


def test_details_never_carry_the_words_of_the_mixed_status_heuristic():
    raw = ("Traceback (most recent call last):\n  ValueError: x\nException in thread; ERROR: bad; "
           "No such file or directory: /x; bash: foo: command not found; unbound variable; unexpected EOF")  # fmt: skip
    line = f"D901 PASS: {spine_safe(raw)}\nstatus: ok"
    assert "\n" not in spine_safe(raw) and not mixed_status(line)
    assert mixed_status(f"D901 PASS: {raw}\nstatus: ok"), "the heuristic itself must catch the raw text"
    assert len(spine_safe("x" * 5000)) == 400


def gate_model(run: dict):
    return VerifyContract.model_validate({"gates": [{**GATE, "id": "D1", "run": {"capability": "sieve.status", **run}}],
                                          "packs": {"p": {"gates": ["D1"]}}}).gates[0]  # fmt: skip


def envelope(status: str, checks: list[tuple[str, str]], data=None, error=None) -> dict:
    out = {"status": status, "checks": [{"id": i, "status": s, "subject": "ops", "detail": f"{i} said {s}"}
                                        for i, s in checks], "data": data or {}}  # fmt: skip
    if error:
        out["error"] = error
    return out


def kinded(kind: str | None, message: str = "a message", **extra) -> dict:
    return envelope("error", [], error={"message": message, "problems": [], **({"kind": kind} if kind else {}),
                                        **extra})  # fmt: skip


def error_check(check_id: str, kind: str) -> dict:
    out = envelope("error", [(check_id, "error")])
    out["checks"][0]["evidence"] = {"kind": kind}
    return out


TLS = {"only_checks": ["stack.tls.*"]}


@pytest.mark.parametrize(
    ("run", "code", "env", "status", "why", "words"),
    [
        ({}, 0, envelope("ok", [("a.b", "ok")]), "PASS", None, "sieve.status ok: 1 check(s)"),
        ({}, 0, envelope("warn", [("a.b", "warn")]), "PASS", None, "1 warn"),
        ({"fail_on_warn": True}, 0, envelope("warn", [("a.b", "warn")]), "FAIL", None, "a.b [ops] a.b said warn"),
        ({}, 1, envelope("fail", [("a.b", "ok"), ("a.c", "fail")]), "FAIL", None, "1 of 2 check(s) failing: a.c"),
        # Exit 3 is FAIL whatever the reason, and the reason is the envelope's kind, never its wording:
        (
            {},
            3,
            kinded("unreachable", "ManageSieve 127.0.0.1:9: connection refused"),
            "FAIL",
            "unreachable",
            "could not evaluate (unreachable, exit 3)",
        ),
        ({}, 3, kinded("timeout"), "FAIL", "timeout", "(timeout, exit 3)"),
        (
            {},
            3,
            kinded("credentials_refused", "ops: the server said nothing about passwords"),
            "FAIL",
            "credentials_refused",
            "credentials_refused",
        ),
        # A refused login worded like an outage, and an outage worded like a refused login: the kind decides.
        ({}, 3, kinded("credentials_refused", "connection refused"), "FAIL", "credentials_refused", "refused"),
        ({}, 3, kinded("unreachable", "authentication failed: password 401 forbidden"), "FAIL", "unreachable", "401"),
        ({}, 3, kinded(None, "authentication failed"), "FAIL", "unknown", "authentication failed"),
        (
            {},
            3,
            error_check("carddav.account.reachable", "tls_untrusted"),
            "FAIL",
            "tls_untrusted",
            "carddav.account.reachable",
        ),
        (
            {},
            2,
            kinded(None, "env:X is not set", reference="secret-unresolved"),
            "FAIL",
            "secret_unresolved",
            "is not set",
        ),
        (
            {},
            2,
            envelope("error", [], error={"message": "invalid", "problems": ["c.yaml:3: x: bad"]}),
            "FAIL",
            "contract_invalid",
            "c.yaml:3",
        ),
        (
            {},
            2,
            envelope("error", [], error={"message": "x", "problems": ["bindings/c.yaml: contract not found"]}),
            "FAIL",
            "contract_absent",
            "contract not found",
        ),
        (
            {},
            70,
            kinded(None, "internal error: KeyError: 'x'", reference="internal-error"),
            "FAIL",
            "internal_error",
            "exit 70",
        ),
        (
            TLS,
            1,
            envelope("fail", [("stack.tls.expiry", "ok"), ("stack.endpoint.reachable", "fail")]),
            "PASS",
            None,
            "1 stack.tls.* check(s) pass",
        ),
        (TLS, 1, envelope("fail", [("stack.tls.expiry", "fail")]), "FAIL", None, "stack.tls.expiry"),
        # The TLS gate never SKIPs because stack.status could not reach the endpoints: it FAILs.
        (
            TLS,
            3,
            error_check("stack.endpoint.reachable", "unreachable"),
            "FAIL",
            "unreachable",
            "stack.endpoint.reachable",
        ),
        (TLS, 1, envelope("fail", [("stack.tls.trusted", "error")]), "FAIL", "unknown", "stack.tls.trusted"),
        (
            TLS,
            1,
            envelope("fail", [("stack.endpoint.protocol", "fail")]),
            "FAIL",
            None,
            "no stack.tls.* check was evaluated: sieve.status fail (exit 1): 1 of 1 check(s) failing",
        ),
        (TLS, 0, envelope("ok", [("stack.endpoint.reachable", "ok")]), "FAIL", None, "reported none"),
        (
            {"expect_data": {"summary.planned": 0}},
            0,
            envelope("ok", [], {"summary": {"planned": 2}}),
            "FAIL",
            None,
            "summary.planned is 2, expected 0",
        ),
        (
            {"expect_data": {"summary.planned": 0}},
            0,
            envelope("ok", [], {"summary": {"planned": 0}}),
            "PASS",
            None,
            "summary.planned=0",
        ),
    ],
)
def test_a_capability_run_is_judged_by_exit_code_checks_data_and_kind(run, code, env, status, why, words):
    got = judge_run(gate_model(run), code, env)
    assert (got.status, got.could_not_evaluate, words in got.detail) == (status, why, True), got.detail


def test_a_receipt_gate_judges_the_newest_receipt_status_and_age(tmp_path_factory):
    # Not under tmp_path: these receipt.json files hold only what the gate reads, not the whole schema.
    root = Root(tmp_path_factory.mktemp("receipts"), "project")
    receipt_check = {"capability": "mail.auth.probe", "max_age_minutes": 60}
    gates = [{**GATE, "id": "D2", "receipt": receipt_check}]
    gate = VerifyContract.model_validate({"gates": gates, "packs": {"p": {"gates": ["D2"]}}}).gates[0]
    now = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
    assert receipt_gate(gate, root, now).status == "FAIL"  # never ran

    def receipt(stamp: str, status: str, finished: datetime) -> None:
        key = f"CAP-{stamp}__mail.auth.probe__Rabc{stamp[-2:]}"
        directory = root.receipts_dir / f"R{key}"
        directory.mkdir(parents=True)
        doc = {"run_key": key, "capability": "mail.auth.probe", "status": status, "exit_code": 0 if status == "ok"
               else 1, "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
        # Sealed and chained by the receipt writer (the spine runner's form: receipt.json alone).
        record_run(root.receipts_dir, doc, output_txt="", printed="", spine_runner=True, ledger=None,
                   ledger_row=None, secrets=Secrets(Redactor(), {}), root=root.path)  # fmt: skip

    receipt("20310301-100000", "ok", now - timedelta(hours=2))
    stale = receipt_gate(gate, root, now)
    assert stale.status == "FAIL" and "stale: 2.0 h old" in stale.detail and stale.age_seconds == 7200
    receipt("20310301-115000", "fail", now - timedelta(minutes=10))
    failed = receipt_gate(gate, root, now)
    assert failed.status == "FAIL" and "is fail (exit 1)" in failed.detail
    receipt("20310301-115500", "ok", now - timedelta(minutes=5))
    fresh = receipt_gate(gate, root, now)
    assert fresh.status == "PASS" and fresh.run_key.endswith("__Rabc00") and fresh.age_seconds == 300


# ---- runs through the CLI -----------------------------------------------------------------------------


def test_core_run_prints_spine_lines_and_json_keys_and_valid_reports(cli, root, tmp_path):
    import xmlschema
    from prometheus_client.parser import text_string_to_metric_families

    write_gates(root, BUILTIN_GATES)
    cli("mailroom.status", "--root", str(root))  # a receipt for receipts_valid to judge
    junit, prom = tmp_path / "out" / "v.xml", tmp_path / "out" / "v.prom"
    text = cli("verify.core.run", "--root", str(root), "--junit", str(junit), "--prom", str(prom))
    lines = [line for line in text.stdout.splitlines() if SPINE_LINE.match(line)]
    assert [line.split()[:2] for line in lines] == [["D911", "PASS:"], ["D912", "PASS:"]], text.stdout
    assert "summary: pass=2 fail=0 skipped=0" in text.stdout and "budget: ring=instant" in text.stdout
    assert text.exit_code == 0 and text.stdout.rstrip().endswith("status: ok")
    assert not mixed_status(text.stdout + text.stderr), text.stdout + text.stderr

    result = cli("verify.core.run", "--root", str(root), "--json")
    data = result.json()["data"]
    keys = data["summary"]
    assert {"total", "pass", "fail", "skipped", "failing_ids"} <= set(keys)
    assert (keys["total"], keys["pass"], keys["fail"], keys["skipped"], keys["failing_ids"]) == (2, 2, 0, 0, [])
    gate = data["gates"][0]
    assert {"id", "status", "detail", "elapsed", "capability", "run_key", "age_seconds"} <= set(gate)

    xmlschema.XMLSchema(JUNIT_XSD).validate(str(junit))
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    status = {(s.labels["gate"], s.labels["status"]): s.value
              for s in families["spine_comms_verify_gate_status"].samples}  # fmt: skip
    assert status[("D911", "pass")] == 1 and status[("D911", "fail")] == 0
    assert families["spine_comms_verify_run_budget_exceeded"].samples[0].value == 0
    assert not list(prom.parent.glob(".*tmp")), "written atomically, no temporary left behind"


def test_a_run_over_its_ring_budget_fails_even_when_every_gate_passes(cli, root, tmp_path):
    import xmlschema

    write_gates(root, BUILTIN_GATES, budgets={"instant": 0.000001})
    junit = tmp_path / "v.xml"
    result = cli("verify.core.run", "--root", str(root), "--junit", str(junit))
    assert result.exit_code == 1
    assert "summary: pass=1 fail=0 skipped=1" in result.stdout  # receipts_valid: no receipts yet
    assert re.search(r"^verify\.run FAIL: budget exceeded: ring=instant elapsed=\S+s budget=1e-06s$",
                     result.stdout, re.M), result.stdout  # fmt: skip
    data = cli("verify.core.run", "--root", str(root), "--json").json()["data"]
    assert data["budget_exceeded"] is True and data["summary"]["fail"] == 0 and data["summary"]["failing_ids"] == []
    suite = xmlschema.XMLSchema(JUNIT_XSD).to_dict(str(junit))["testsuite"][0]
    budget = next(c for c in suite["testcase"] if c["@name"] == "ring-budget")
    assert suite["@failures"] == 1 and "budget exceeded" in budget["failure"][0]["@message"]


def test_invalid_contracts_and_receipts_fail_their_builtin_gates(cli, root):
    write_gates(root, BUILTIN_GATES)
    cli("mailroom.status", "--root", str(root))
    (root / "bindings" / "communications.inbox.contract.yaml").write_text("version: 1\nmailboxes: []\n")
    receipt = next((root / "receipts" / "sessions").glob("R*mailroom.status*/receipt.json"))
    doc = json.loads(receipt.read_text())
    doc["status"] = "splendid"
    receipt.write_text(json.dumps(doc))
    result = cli("verify.core.run", "--root", str(root), "--json")
    data = result.json()["data"]
    assert result.exit_code == 1 and data["summary"]["failing_ids"] == ["D911", "D912"]
    contracts, receipts = data["gates"]
    assert "communications.inbox.contract.yaml:2: mailboxes:" in contracts["detail"]
    assert "mailroom.status" in receipts["detail"] and "status" in receipts["detail"]
    receipt.unlink()  # leave the tmp root's receipts valid for the autouse audit
    shutil.rmtree(receipt.parent)


def test_a_gate_whose_contract_is_absent_fails_and_an_unknown_pack_is_a_usage_error(cli, root):
    result = cli("verify.pack.run", "communications", "--root", str(root), "--json", "--gate", "D907")
    gate = result.json()["data"]["gates"][0]
    assert result.exit_code == 1 and gate["status"] == "FAIL" and gate["could_not_evaluate"] == "contract_absent"
    assert gate["detail"].startswith("contract communications.inbox.contract.yaml absent from the root's bindings")
    bad = cli("verify.pack.run", "nightly", "--root", str(root))
    assert bad.exit_code == 2 and "no verify pack 'nightly'" in bad.stdout + bad.stderr


def test_a_live_gate_writes_its_own_receipt_even_under_the_spines_runner(cli, root):
    # Under the spine's runner verify adopts SPINE_CAP_RUN_KEY; the gate's capability must not adopt it too,
    # or its receipt.json would replace verify's own.
    write_gates(root, [{"id": "D920", "run": {"capability": "mailroom.status"}, "ring": "instant"}])
    adopted = "CAP-20310301-120000__verify.core.run__Rspine001"
    (root / "receipts" / "sessions" / f"R{adopted}").mkdir(parents=True)
    result = cli("verify.core.run", "--root", str(root), "--json", env={"SPINE_CAP_RUN_KEY": adopted})
    gate = result.json()["data"]["gates"][0]
    assert result.exit_code == 0 and gate["status"] == "PASS", gate
    assert gate["run_key"] != adopted and "__mailroom.status__" in gate["run_key"]
    assert json.loads((Path(gate["receipt"]) / "receipt.json").read_text())["capability"] == "mailroom.status"
    mine = json.loads((root / "receipts" / "sessions" / f"R{adopted}" / "receipt.json").read_text())
    assert mine["capability"] == "verify.core.run" and mine["run_key"] == adopted


def test_a_failing_gate_is_a_junit_failure_with_its_fix_hint(cli, root, tmp_path):
    import xmlschema

    write_gates(root, [{"id": "D921", "run": {"capability": "mailroom.status", "expect_data": {"nothing.here": 1}},
                        "ring": "instant", "fix_hint": "put something here"}])  # fmt: skip
    junit = tmp_path / "v.xml"
    result = cli("verify.core.run", "--root", str(root), "--junit", str(junit))
    assert result.exit_code == 1 and "D921 FAIL: mailroom.status: nothing.here is None, expected 1" in result.stdout
    suite = xmlschema.XMLSchema(JUNIT_XSD).to_dict(str(junit))["testsuite"][0]
    case = suite["testcase"][0]
    assert case["@name"] == "D921 g" and case["failure"][0]["@type"] == "high"
    assert "fix: put something here" in case["failure"][0]["$"]
