"""Judging one gate: a capability run in its own process, or the latest receipt of one.

A `run` gate starts `spine-comms <capability> --root <root> --json [args]` exactly as cron would: it
writes its own receipt, and a gate that hangs or crashes cannot take the others with it. What the
capability reports decides the verdict, by exit code and by the kind the envelope carries (the
outcome vocabulary of core.outcomes), never by the wording of a message:

- exit 0 (ok, or warn unless fail_on_warn), the judged checks passing, expect_data met: PASS;
- exit 1, or a judged check failing, or expect_data not met: FAIL;
- exit 3 (unreachable, timeout, credentials refused, TLS untrusted ...), exit 2 (a contract absent
  or invalid, a secret unresolved), exit 70, no envelope, no answer within the gate's time: FAIL,
  could not evaluate, naming the kind. A server that is down is the system not being as it should.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from spine_comms.contracts.verify import Gate
from spine_comms.core.outcomes import FailureKind
from spine_comms.core.receipt_seal import ReceiptVerifier
from spine_comms.core.receipts import ReceiptSummary, read_summary
from spine_comms.core.root import Root
from spine_comms.verify.gates import FAIL, PASS, GateResult, verdict

_DEFECTS = ("fail", "partial")
_SUCCESS = ("ok", "warn", "done")
_KINDS = {str(k) for k in FailureKind}
# How long a gate's capability is given at least, when the ring budget is nearly spent.
_MIN_GATE_SECONDS = 1.0


class Judgement(NamedTuple):
    status: str  # PASS | FAIL
    detail: str
    could_not_evaluate: str | None = None  # for a FAIL that found no verdict: why (gates.NOT_EVALUATED)


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


def run_gate(gate: Gate, root: Root, env: dict[str, str], deadline: float | None = None) -> GateResult:
    """`deadline` (a time.monotonic() value): the end of the ring budget; the capability is stopped then
    at the latest, so that a hung server costs a FAIL within the budget, not an overrun."""
    spec = gate.run
    missing = installed(spec.capability)
    if missing is not None:
        # A typo in the gates contract is a defect; a capability whose code is not installed proves nothing.
        why = None if missing.startswith("not in") else "not_installed"
        return verdict(gate, FAIL, f"{spec.capability} is {missing}", could_not_evaluate=why)
    argv = [sys.executable, "-m", "spine_comms", spec.capability, "--root", str(root.path), "--json", *spec.args]
    # The child must write a receipt of its own: with the spine's run key it would overwrite ours.
    child_env = {k: v for k, v in env.items() if k != "SPINE_CAP_RUN_KEY"}
    child_env["NO_COLOR"] = "1"
    allowed, limit = spec.timeout_seconds, f"its {spec.timeout_seconds:g} s"
    if deadline is not None and deadline - time.monotonic() < allowed:
        allowed = max(deadline - time.monotonic(), _MIN_GATE_SECONDS)
        limit = f"the {allowed:.1f} s left of the ring budget"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=allowed, env=child_env,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        return verdict(gate, FAIL, f"{spec.capability} could not evaluate (timeout): no answer within {limit} "
                                   "(a server hung or too slow)", could_not_evaluate="timeout")  # fmt: skip
    try:
        envelope = json.loads(done.stdout)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or "status" not in envelope:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return verdict(gate, FAIL, f"{spec.capability} gave no JSON envelope (exit {done.returncode}): {tail[0]}",
                       exit_code=done.returncode, could_not_evaluate="no_envelope")  # fmt: skip
    judged = judge_run(gate, done.returncode, envelope)
    return verdict(gate, judged.status, judged.detail, run_key=envelope.get("run_key"),
                   receipt=envelope.get("receipt"), age_seconds=0.0, exit_code=done.returncode,
                   could_not_evaluate=judged.could_not_evaluate)  # fmt: skip


def _not_evaluated(cap: str, code: int, envelope: dict[str, Any]) -> Judgement:
    """A run that ended without a verdict (exit 2, 3, 70 ...): FAIL, with the kind it reported."""
    error = envelope.get("error") or {}
    unevaluated = [c for c in envelope.get("checks") or [] if c.get("status") == "error"]
    reasons = list(error.get("problems") or ([error["message"]] if error.get("message") else []))
    reasons += [f"{c.get('id')} {c.get('detail', '')}" for c in unevaluated[:3]]
    reason = "; ".join(reasons) or "could not evaluate"
    kinds = [str(error.get("kind") or "")]
    kinds += [str(c["evidence"].get("kind") or "") for c in unevaluated if isinstance(c.get("evidence"), dict)]
    kind = next((k for k in kinds if k in _KINDS), None)
    if kind is None:
        reference = error.get("reference") or ""
        if reference == "secret-unresolved":
            kind = "secret_unresolved"
        elif code == 2 and any("contract not found" in p for p in error.get("problems") or []):
            kind = "contract_absent"
        elif code == 2:
            kind = "contract_invalid"
        elif code == 70 or reference == "internal-error":
            kind = "internal_error"
        else:
            kind = "unknown"
    return Judgement(FAIL, f"{cap} could not evaluate ({kind}, exit {code}): {reason}", kind)


def judge_run(gate: Gate, code: int, envelope: dict[str, Any]) -> Judgement:
    """PASS or FAIL (with why it could not evaluate, when it could not) from a capability's exit code and
    JSON envelope."""
    spec = gate.run
    cap = spec.capability
    status = envelope.get("status")
    if code not in (0, 1) or status == "error":
        return _not_evaluated(cap, code, envelope)
    checks = envelope.get("checks") or []
    if spec.only_checks:
        checks = [c for c in checks if any(fnmatchcase(c.get("id", ""), p) for p in spec.only_checks)]
        bad = [c for c in checks if c["status"] in _DEFECTS or (spec.fail_on_warn and c["status"] == "warn")]
        if bad:
            return Judgement(FAIL, _failing(cap, bad, len(checks)))
        unknown = [c for c in checks if c["status"] == "error"]
        if unknown:
            return _not_evaluated(cap, 3, {"checks": unknown})
        if not [c for c in checks if c["status"] != "skip"]:
            # The judged checks were never reached: what stopped the run is the verdict (a refused endpoint
            # fails the TLS gate; it must never SKIP it).
            others = [c for c in envelope.get("checks") or [] if c.get("status") in (*_DEFECTS, "error")]
            why = _failing(cap, others, len(envelope.get("checks") or []), status=status, code=code) if others \
                else f"{cap} {status} (exit {code}) reported none"  # fmt: skip
            return Judgement(FAIL, f"no {', '.join(spec.only_checks)} check was evaluated: {why}")
        passed = f"{cap}: {len(checks)} {', '.join(spec.only_checks)} check(s) pass"
    else:
        if code != 0 or status in _DEFECTS or (spec.fail_on_warn and status == "warn"):
            bad = [c for c in checks if c.get("status") in (*_DEFECTS, "warn" if spec.fail_on_warn else "")]
            return Judgement(FAIL, _failing(cap, bad, len(checks), status=status, code=code))
        warned = sum(1 for c in checks if c.get("status") == "warn")
        passed = f"{cap} {status}: {len(checks)} check(s)" + (f", {warned} warn" if warned else "")
    data = envelope.get("data") or {}
    wrong = [f"{path} is {_dig(data, path)!r}, expected {want!r}" for path, want in spec.expect_data.items()
             if _dig(data, path) != want]  # fmt: skip
    if wrong:
        return Judgement(FAIL, f"{cap}: " + "; ".join(wrong))
    return Judgement(PASS, passed + (f"; {', '.join(f'{p}={v!r}' for p, v in spec.expect_data.items())}"
                                     if spec.expect_data else ""))  # fmt: skip


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
