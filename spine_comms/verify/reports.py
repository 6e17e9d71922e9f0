"""The files a verify run leaves for CI and monitoring: JUnit XML and a Prometheus textfile.

JUnit: one <testsuite> per pack inside <testsuites>, one <testcase> per gate (classname
`spine-comms.<pack>`), <failure> for FAIL and <skipped> for SKIP with the detail as message, and a
`ring-budget` testcase that fails when the run overran its budget. Times have at most three
decimals, as the Surefire schema CI tools validate against demands.

Prometheus: the node_exporter textfile-collector format (one `.prom` file, written atomically so the
collector never reads half of it): per gate a one-hot status and the age of its evidence, per
capability the time of its last successful receipt, and the run's own duration and budget.
"""

from __future__ import annotations

import socket
from datetime import datetime
from xml.etree import ElementTree as ET

from spine_comms.verify.engine import RunReport
from spine_comms.verify.gates import FAIL, PASS, SKIP


def junit_xml(report: RunReport, finished: datetime) -> str:
    keys = report.summary_keys()
    cases = len(report.results) + 1  # the gates and the budget
    failures = keys["fail"] + (1 if report.budget_exceeded else 0)
    suites = ET.Element("testsuites", name="spine-comms verify", tests=str(cases), failures=str(failures),
                        errors="0", time=_secs(report.elapsed))  # fmt: skip
    suite = ET.SubElement(suites, "testsuite", name=report.pack, tests=str(cases), failures=str(failures),
                          errors="0", skipped=str(keys["skipped"]), time=_secs(report.elapsed),
                          timestamp=finished.strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname())  # fmt: skip
    props = ET.SubElement(suite, "properties")
    for name, value in (("ring", report.ring), ("budget_seconds", f"{report.budget:g}"), ("gates", report.source)):
        ET.SubElement(props, "property", name=name, value=value)
    classname = f"spine-comms.{report.pack}"
    for result in report.results:
        case = ET.SubElement(suite, "testcase", name=f"{result.id} {result.name}".strip(), classname=classname,
                             time=_secs(result.elapsed))  # fmt: skip
        if result.status == FAIL:
            failure = ET.SubElement(case, "failure", message=result.detail, type=result.severity or "fail")
            failure.text = f"{result.line()}\nfix: {result.fix_hint}"
        elif result.status == SKIP:
            ET.SubElement(case, "skipped", message=result.detail)
        out = ET.SubElement(case, "system-out")
        out.text = result.line() + (f"\nreceipt: {result.receipt}" if result.receipt else "")
    budget = ET.SubElement(suite, "testcase", name="ring-budget", classname=classname, time=_secs(report.elapsed))
    if report.budget_exceeded:
        ET.SubElement(budget, "failure", type="budget", message=budget_line(report))
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

    status_samples, age_samples, duration_samples = [], [], []
    for r in report.results:
        for status in (PASS, FAIL, SKIP):
            labels = {"pack": pack, "gate": r.id, "name": r.name, "severity": r.severity, "status": status.lower()}
            status_samples.append((labels, 1.0 if r.status == status else 0.0))
        if r.age_seconds is not None:
            age_samples.append(({"pack": pack, "gate": r.id}, r.age_seconds))
        duration_samples.append(({"pack": pack, "gate": r.id}, r.elapsed))
    family("spine_comms_verify_gate_status", "gauge",
           "The gate's verdict in the last run: 1 for its status (pass, fail, skip), 0 for the others.",
           status_samples)  # fmt: skip
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
