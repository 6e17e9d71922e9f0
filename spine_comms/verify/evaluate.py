"""Judging one gate: a capability run in its own process, or the latest receipt of one.

A `run` gate starts `spine-comms <capability> --root <root> --json [args]` exactly as cron would: it
writes its own receipt, and a gate that hangs or crashes cannot take the others with it. What the
capability reports decides the verdict:

- exit 0 (ok, or warn unless fail_on_warn), the judged checks passing, expect_data met: PASS;
- exit 1, or a judged check failing, or expect_data not met: FAIL;
- exit 3 because a server could not be reached or answered too slowly: SKIP, with the reason;
- exit 3 because a server refused the credentials: FAIL. The server answered and said no: that is
  the operator's configuration, wrong until someone fixes it, not an outage that will pass;
- exit 2 (a contract missing: SKIP; invalid: FAIL), anything else: FAIL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from spine_comms.contracts.verify import Gate
from spine_comms.core.receipt_seal import ReceiptVerifier
from spine_comms.core.receipts import ReceiptSummary, read_summary
from spine_comms.core.root import Root
from spine_comms.verify.gates import FAIL, PASS, SKIP, GateResult, verdict

# How an exit-3 message reads when the server answered and refused who we are.
_REFUSED = re.compile(
    r"\b(auth|authenticat\w*|login (refused|failed)|credentials?|password\w*|unauthori[sz]ed|forbidden|401|403)\b",
    re.I,
)
_DEFECTS = ("fail", "partial")
_SUCCESS = ("ok", "warn", "done")


def installed(capability: str) -> str | None:
    """Why `capability` cannot run here (None when it can): not registered, or its code not installed."""
    import importlib.util

    from spine_comms.core.registry import load_registry

    spec = load_registry().get(capability)
    if spec is None:
        return "not in the capability registry"
    try:
        found = importlib.util.find_spec(spec.module)
    except ImportError:
        found = None
    return None if found is not None else f"registered, but its code ({spec.module}) is not installed"


def run_gate(gate: Gate, root: Root, env: dict[str, str]) -> GateResult:
    spec = gate.run
    missing = installed(spec.capability)
    if missing is not None:
        # A typo in the gates contract is a defect; a capability whose code is not installed yet proves
        # nothing either way: SKIP, with the reason.
        return verdict(gate, FAIL if missing.startswith("not in") else SKIP, f"{spec.capability} is {missing}")
    argv = [sys.executable, "-m", "spine_comms", spec.capability, "--root", str(root.path), "--json", *spec.args]
    # The child must write a receipt of its own: with the spine's run key it would overwrite ours.
    child_env = {k: v for k, v in env.items() if k != "SPINE_CAP_RUN_KEY"}
    child_env["NO_COLOR"] = "1"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=spec.timeout_seconds, env=child_env,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        return verdict(gate, SKIP, f"{spec.capability} did not answer within {spec.timeout_seconds:g} s "
                                   "(a server too slow or unreachable)")  # fmt: skip
    try:
        envelope = json.loads(done.stdout)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or "status" not in envelope:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return verdict(gate, FAIL, f"{spec.capability} gave no JSON envelope (exit {done.returncode}): {tail[0]}",
                       exit_code=done.returncode)  # fmt: skip
    status, detail = judge_run(gate, done.returncode, envelope)
    return verdict(gate, status, detail, run_key=envelope.get("run_key"), receipt=envelope.get("receipt"),
                   age_seconds=0.0, exit_code=done.returncode)  # fmt: skip


def judge_run(gate: Gate, code: int, envelope: dict[str, Any]) -> tuple[str, str]:
    """(PASS|FAIL|SKIP, detail) from a capability's exit code and JSON envelope."""
    spec = gate.run
    cap = spec.capability
    error = envelope.get("error") or {}
    if code == 3 or (code not in (0, 1) and envelope.get("status") == "error" and error):
        unevaluated = [c for c in envelope.get("checks") or [] if c.get("status") == "error"]
        reasons = list(error.get("problems") or ([error["message"]] if error.get("message") else []))
        reasons += [f"{c.get('id')} {c.get('detail', '')}" for c in unevaluated[:3]]
        reason = "; ".join(reasons) or "could not evaluate"
        kinds = {str(c["evidence"].get("kind", "")) for c in unevaluated if isinstance(c.get("evidence"), dict)}
        said_no = "auth" in kinds or _REFUSED.search(f"{reason} {error.get('hint') or ''}")
        if error.get("reference") == "secret-unresolved" or said_no:
            return FAIL, f"{cap}: credentials refused or unresolved: {reason}"
        if code == 3:
            return SKIP, f"{cap} could not evaluate (dependency unreachable): {reason}"
        if any("contract not found" in p for p in error.get("problems") or []):
            return SKIP, f"{cap}: a contract it needs is absent: {reason}"
        return FAIL, f"{cap} exit {code}: {reason}"
    checks = envelope.get("checks") or []
    if spec.only_checks:
        checks = [c for c in checks if any(fnmatchcase(c.get("id", ""), p) for p in spec.only_checks)]
        judged = {c["status"] for c in checks}
        bad = [c for c in checks if c["status"] in _DEFECTS or (spec.fail_on_warn and c["status"] == "warn")]
        if bad:
            return FAIL, _failing(cap, bad, len(checks))
        if not checks or judged <= {"skip", "error"} or "error" in judged:
            unknown = [c for c in checks if c["status"] == "error"]
            why = _failing(cap, unknown, len(checks)) if unknown else "no matching check was evaluated"
            return SKIP, f"{cap} could not evaluate {', '.join(spec.only_checks)}: {why}"
        passed = f"{cap}: {len(checks)} {', '.join(spec.only_checks)} check(s) pass"
    else:
        status = envelope.get("status")
        if code != 0 or status in _DEFECTS or (spec.fail_on_warn and status == "warn"):
            bad = [c for c in checks if c.get("status") in (*_DEFECTS, "warn" if spec.fail_on_warn else "")]
            return FAIL, _failing(cap, bad, len(checks), status=status, code=code)
        warned = sum(1 for c in checks if c.get("status") == "warn")
        passed = f"{cap} {status}: {len(checks)} check(s)" + (f", {warned} warn" if warned else "")
    data = envelope.get("data") or {}
    wrong = [f"{path} is {_dig(data, path)!r}, expected {want!r}" for path, want in spec.expect_data.items()
             if _dig(data, path) != want]  # fmt: skip
    if wrong:
        return FAIL, f"{cap}: " + "; ".join(wrong)
    return PASS, passed + (f"; {', '.join(f'{p}={v!r}' for p, v in spec.expect_data.items())}" if spec.expect_data
                           else "")  # fmt: skip


def _failing(cap: str, bad: list[dict], total: int, status: str | None = None, code: int | None = None) -> str:
    head = f"{cap}" + (f" {status} (exit {code})" if status is not None else "")
    if not bad:
        return f"{head}: {total} check(s), none failing named"
    shown = [f"{c.get('id')}" + (f" [{c['subject']}]" if c.get("subject") else "") + f" {c.get('detail', '')}"
             for c in bad[:3]]  # fmt: skip
    more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
    return f"{head}: {len(bad)} of {total} check(s) failing: " + "; ".join(shown) + more


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


# Receipts ------------------------------------------------------------------------------------------


def receipts_of(receipts_dir: Path, capability: str) -> Iterator[ReceiptSummary]:
    """Newest first, read one at a time: the caller usually stops at the first or the first success.
    A dry run is left out: it changed and proved nothing (a dry-run mail.auth.probe sent no probe)."""
    if not receipts_dir.is_dir():
        return
    marker = f"__{capability}__"
    names = [e for e in receipts_dir.iterdir() if e.name.startswith("R") and marker in e.name and e.is_dir()]
    # The run key starts with the local time to the second; the mtime orders runs within a second.
    names.sort(key=lambda e: (e.name.split("__", 1)[0], e.stat().st_mtime), reverse=True)
    for entry in names:
        summary = read_summary(entry)
        if summary is not None and summary.capability == capability and not summary.dry_run:
            yield summary


def receipt_time(summary: ReceiptSummary) -> datetime:
    try:
        when = datetime.fromisoformat(summary.generated.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(summary.directory.stat().st_mtime, UTC)


def last_success(receipts_dir: Path, capability: str) -> datetime | None:
    return next((receipt_time(s) for s in receipts_of(receipts_dir, capability) if s.status in _SUCCESS), None)


def receipt_gate(gate: Gate, root: Root, now: datetime) -> GateResult:
    spec = gate.receipt
    cap = spec.capability
    latest = next(receipts_of(root.receipts_dir, cap), None)
    if latest is None:
        return verdict(gate, FAIL, f"no receipt of {cap} under {root.receipts_dir}: it never ran here")
    age = (now - receipt_time(latest)).total_seconds()
    shown = _age(age)
    extra = {"run_key": latest.run_key, "receipt": str(latest.directory), "age_seconds": age,
             "exit_code": latest.exit_code}  # fmt: skip
    forged = ReceiptVerifier(root.receipts_dir, dict(os.environ), root.path).problems(latest.directory)
    if forged:  # an edited, copied or hand-written receipt proves nothing, whatever it says
        return verdict(gate, FAIL, f"latest {cap} receipt {latest.directory.name} refused: " + "; ".join(forged),
                       **extra)  # fmt: skip
    if latest.status not in spec.statuses:
        return verdict(gate, FAIL, f"latest {cap} is {latest.status} (exit {latest.exit_code}), {shown} ago: "
                                   f"{latest.run_key}", **extra)  # fmt: skip
    limit = spec.max_age_minutes * 60
    if age > limit:
        return verdict(gate, FAIL, f"latest {cap} is {latest.status} but stale: {shown} old, at most "
                                   f"{_age(limit)}: {latest.run_key}", **extra)  # fmt: skip
    return verdict(gate, PASS, f"latest {cap} is {latest.status}, {shown} old (at most {_age(limit)}): "
                               f"{latest.run_key}", **extra)  # fmt: skip


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
