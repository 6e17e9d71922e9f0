"""The files a verify run leaves for CI and monitoring: JUnit XML and a Prometheus textfile.

JUnit: one <testsuite> per pack inside <testsuites>, one <testcase> per gate (classname
`spine-comms.<pack>`): <failure> for a FAIL with a verdict, <error> for a FAIL that could not
evaluate (unreachable, timeout, contract absent ...: the kind is its type), <skipped> for SKIP, with
the detail as message; a `ring-budget` testcase that fails when the run overran its budget, and a
`run-verdict` testcase that fails when nothing was verified or, with --strict, a gate was SKIP. Times
have at most three decimals, as the Surefire schema CI tools validate against demands.

Prometheus: the node_exporter textfile-collector format (one `.prom` file, written atomically so the
collector never reads half of it): per gate a one-hot status, whether it could not evaluate (and
why) and the age of its evidence, per capability the time of its last successful receipt, and the
run's own verdict (as its exit code decides it), duration and budget.
"""

from __future__ import annotations

import socket
from datetime import datetime
from xml.etree import ElementTree as ET

from spine_comms.verify.engine import RunReport
from spine_comms.verify.gates import FAIL, PASS, SKIP


def verdict_lines(report: RunReport) -> list[str]:
    """The lines, after summary and budget, that say why a run is red although no gate may have failed."""
    lines = []
    unevaluated = [r for r in report.results if r.could_not_evaluate]
    if unevaluated:
        lines.append("not evaluated: " + ", ".join(f"{r.id} ({r.could_not_evaluate})" for r in unevaluated))
    if report.nothing_verified:
        lines.append(f"verify.run FAIL: nothing verified: {report.nothing_verified}")
    if report.strict_skips:
        lines.append(f"verify.run FAIL: --strict and {len(report.strict_skips)} gate(s) SKIP: "
                     + ", ".join(report.strict_skips))  # fmt: skip
    return lines


def junit_xml(report: RunReport, finished: datetime) -> str:
    keys = report.summary_keys()
    cases = len(report.results) + 2  # the gates, the budget and the run's verdict
    errors = len(keys["not_evaluated_ids"])
    run_red = bool(report.nothing_verified or report.strict_skips)
    failures = keys["fail"] - errors + (1 if report.budget_exceeded else 0) + (1 if run_red else 0)
    suites = ET.Element("testsuites", name="spine-comms verify", tests=str(cases), failures=str(failures),
                        errors=str(errors), time=_secs(report.elapsed))  # fmt: skip
    suite = ET.SubElement(suites, "testsuite", name=report.pack, tests=str(cases), failures=str(failures),
                          errors=str(errors), skipped=str(keys["skipped"]), time=_secs(report.elapsed),
                          timestamp=finished.strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname())  # fmt: skip
    props = ET.SubElement(suite, "properties")
    for name, value in (("ring", report.ring), ("budget_seconds", f"{report.budget:g}"), ("gates", report.source)):
        ET.SubElement(props, "property", name=name, value=value)
    classname = f"spine-comms.{report.pack}"
    for result in report.results:
        case = ET.SubElement(suite, "testcase", name=f"{result.id} {result.name}".strip(), classname=classname,
                             time=_secs(result.elapsed))  # fmt: skip
        if result.status == FAIL and result.could_not_evaluate:
            error = ET.SubElement(case, "error", message=result.detail, type=result.could_not_evaluate)
            error.text = f"{result.line()}\nfix: {result.fix_hint}"
        elif result.status == FAIL:
            failure = ET.SubElement(case, "failure", message=result.detail, type=result.severity or "fail")
            failure.text = f"{result.line()}\nfix: {result.fix_hint}"
        elif result.status == SKIP:
            ET.SubElement(case, "skipped", message=result.detail)
        out = ET.SubElement(case, "system-out")
        out.text = result.line() + (f"\nreceipt: {result.receipt}" if result.receipt else "")
    budget = ET.SubElement(suite, "testcase", name="ring-budget", classname=classname, time=_secs(report.elapsed))
    if report.budget_exceeded:
        ET.SubElement(budget, "failure", type="budget", message=budget_line(report))
    verdict = ET.SubElement(suite, "testcase", name="run-verdict", classname=classname, time="0.000")
    if report.nothing_verified:
        ET.SubElement(verdict, "failure", type="nothing-verified", message=report.nothing_verified)
    elif report.strict_skips:
        ET.SubElement(verdict, "failure", type="strict", message=f"--strict: SKIP {', '.join(report.strict_skips)}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _secs(seconds: float) -> str:
    return f"{max(seconds, 0):.3f}"


def budget_line(report: RunReport) -> str:
    if report.budget_exceeded:
        return (f"verify.run FAIL: budget exceeded: ring={report.ring} elapsed={report.elapsed:.2f}s "
                f"budget={report.budget:g}s")  # fmt: skip
    return f"budget: ring={report.ring} elapsed={report.elapsed:.2f}s budget={report.budget:g}s"


def prometheus_text(report: RunReport, finished: datetime, last_success: dict[str, datetime | None]) -> str:
    pack = report.pack
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        for labels, value in samples:
            shown = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{shown}}} {_number(value)}")

    status_samples, age_samples, duration_samples, unevaluated_samples = [], [], [], []
    for r in report.results:
        for status in (PASS, FAIL, SKIP):
            labels = {"pack": pack, "gate": r.id, "name": r.name, "severity": r.severity, "status": status.lower()}
            status_samples.append((labels, 1.0 if r.status == status else 0.0))
        unevaluated_samples.append(({"pack": pack, "gate": r.id, "kind": r.could_not_evaluate or ""},
                                    1.0 if r.could_not_evaluate else 0.0))  # fmt: skip
        if r.age_seconds is not None:
            age_samples.append(({"pack": pack, "gate": r.id}, r.age_seconds))
        duration_samples.append(({"pack": pack, "gate": r.id}, r.elapsed))
    family("spine_comms_verify_gate_status", "gauge",
           "The gate's verdict in the last run: 1 for its status (pass, fail, skip), 0 for the others.",
           status_samples)  # fmt: skip
    family("spine_comms_verify_gate_could_not_evaluate", "gauge",
           "1 when the gate FAILed without a verdict (unreachable, timeout, contract absent ...: the kind label).",
           unevaluated_samples)  # fmt: skip
    family("spine_comms_verify_gate_age_seconds", "gauge",
           "Age of the receipt the gate's verdict rests on, when it was judged.", age_samples)  # fmt: skip
    family("spine_comms_verify_gate_duration_seconds", "gauge", "Seconds the gate took.", duration_samples)
    family("spine_comms_capability_last_success_timestamp_seconds", "gauge",
           "Unix time of the newest ok, warn or done receipt of the capability.",
           [({"capability": c}, when.timestamp()) for c, when in sorted(last_success.items()) if when])  # fmt: skip
    keys = report.summary_keys()
    family("spine_comms_verify_gates", "gauge", "Gates of the last run by verdict.",
           [({"pack": pack, "status": s}, keys[k]) for s, k in (("pass", "pass"), ("fail", "fail"),
                                                               ("skip", "skipped"))])  # fmt: skip
    family("spine_comms_verify_run_success", "gauge",
           "1 when the last run exited 0: no FAIL, budget held, something verified (and no SKIP under --strict).",
           [({"pack": pack}, 0.0 if report.failed else 1.0)])  # fmt: skip
    family("spine_comms_verify_run_verified_gates", "gauge",
           "Gates of the last run that reached a verdict on evidence (0: nothing was verified).",
           [({"pack": pack}, float(sum(r.verified for r in report.results)))])  # fmt: skip
    family("spine_comms_verify_run_duration_seconds", "gauge", "Seconds the last run took.",
           [({"pack": pack, "ring": report.ring}, report.elapsed)])  # fmt: skip
    family("spine_comms_verify_run_budget_seconds", "gauge", "The ring budget the run had to keep.",
           [({"pack": pack, "ring": report.ring}, report.budget)])  # fmt: skip
    family("spine_comms_verify_run_budget_exceeded", "gauge", "1 when the last run overran its ring budget.",
           [({"pack": pack, "ring": report.ring}, 1.0 if report.budget_exceeded else 0.0)])  # fmt: skip
    family("spine_comms_verify_run_timestamp_seconds", "gauge", "Unix time the last run finished.",
           [({"pack": pack}, finished.timestamp())])  # fmt: skip
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))
