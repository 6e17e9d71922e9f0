"""Safety is the runner's: dry run by default, the same flags everywhere, approval asked once, from the registry."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from spine_comms.core.approval import Safety, SafetyFlags, decide
from spine_comms.core.context import GlobalOptions
from spine_comms.core.errors import UsageError
from spine_comms.core.registry import load_registry, safety_problems
from spine_comms.core.result import Result
from spine_comms.core.runner import execute

REGISTRY = load_registry()
MUTATING = sorted(cap for cap, spec in REGISTRY.capabilities.items() if spec.safety != "read-only")
READ_ONLY = sorted(cap for cap, spec in REGISTRY.capabilities.items() if spec.safety == "read-only")
NEEDS_APPROVAL = sorted(cap for cap in MUTATING if REGISTRY.capabilities[cap].approval != "auto")
# Where the spine's own capability of the name (or its agents' tool) acts by default, and draft.send, whose
# act is its manual approval (`--id D... --yes`, the command line); README lists them.
ACTS_BY_DEFAULT = {"mailroom.enqueue", "gaps.file", "communications.inbox.poll", "communications.draft.send"}


class Recorder:
    """A capability that records how the runner called it."""

    def __init__(self, plans: bool = True):
        self.calls: list[dict] = []
        if plans:

            def function(ctx, dry_run: bool = True):
                self.calls.append({"dry_run": dry_run})
                return Result(data={"dry_run": dry_run})
        else:

            def function(ctx):
                self.calls.append({})
                return Result(data={"acted": True})

        self.function = function


NO_FLAGS = SafetyFlags()


def run(root: Path, recorder: Recorder, *, safety="mutating", approval="auto", default_mode="dry-run",
        flags=NO_FLAGS, env=None):  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    code = execute(
        capability="test.safety.probe", safety=safety, approval=approval, default_mode=default_mode, flags=flags,
        function=recorder.function, kwargs={}, options=GlobalOptions(root=str(root), json=True),
        argv=["spine-comms", "test.safety.probe"], env=env or {}, stdout=out, stderr=err,
    )  # fmt: skip
    return code, json.loads(out.getvalue())


# The registry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", MUTATING)
def test_every_mutating_capability_declares_its_default(cap):
    spec = REGISTRY.capabilities[cap]
    assert spec.default_mode in ("dry-run", "execute"), f"{cap} declares no default_mode"
    assert safety_problems(spec) == []
    assert spec.acts_by_default == (cap in ACTS_BY_DEFAULT), f"{cap}: acts by default only where the spine's does"
    if spec.safety == "destructive":
        assert spec.default_mode == "dry-run" and not spec.acts_by_default


def test_read_only_capabilities_declare_no_default():
    assert all(REGISTRY.capabilities[cap].default_mode is None for cap in READ_ONLY)


def test_the_registry_checker_catches_a_missing_or_unsafe_default():
    spec = REGISTRY.capabilities["gaps.close"]
    from dataclasses import replace

    assert any("must declare default_mode" in p for p in safety_problems(replace(spec, default_mode=None)))
    assert any("never acts on a default" in p for p in safety_problems(replace(spec, default_mode="execute")))
    read_only = REGISTRY.capabilities[READ_ONLY[0]]
    assert safety_problems(replace(read_only, default_mode="dry-run"))


def test_no_capability_asks_for_approval_itself():
    """The runner asks; a capability that called require_approval (or took --yes) could forget."""
    source = Path(__file__).resolve().parents[2] / "spine_comms"
    offenders = [
        str(p.relative_to(source))
        for p in source.rglob("*.py")
        if p.name != "approval.py" and ("require_approval" in p.read_text() or "YesOpt" in p.read_text())
    ]
    assert offenders == []


# The command line: the same flags everywhere ---------------------------------------------------------


@pytest.mark.parametrize("cap", MUTATING)
def test_every_mutating_capability_has_the_same_flags(cli, cap):
    help_text = cli(cap, "--help").stdout
    assert "--execute" in help_text and "--dry-run" in help_text
    assert ("--yes" in help_text) == (cap in NEEDS_APPROVAL)


@pytest.mark.parametrize("cap", READ_ONLY)
def test_read_only_capabilities_have_no_safety_flags(cli, cap):
    result = cli(cap, "--execute", "--json")
    assert result.exit_code == 2 and "--execute" in result.json()["error"]["message"]


REQUIRED_OPTIONS = {"communications.draft.send": ["--id", "Dnone"]}  # so the refusal is the approval's, not Typer's


@pytest.mark.parametrize("cap", NEEDS_APPROVAL)
def test_the_runner_refuses_to_act_without_approval(cli, root, cap):
    result = cli(cap, "--root", str(root), "--json", "--execute", *REQUIRED_OPTIONS.get(cap, []))
    envelope = result.json()
    assert result.exit_code == 2 and envelope["status"] == "error"
    assert "needs approval" in envelope["error"]["message"], envelope["error"]
    receipt = json.loads((Path(envelope["receipt"]) / "receipt.json").read_text())
    assert receipt["exit_code"] == 2 and receipt["approval"] == REGISTRY.capabilities[cap].approval


@pytest.mark.parametrize("cap", NEEDS_APPROVAL)
def test_approval_by_yes_or_the_spines_variables_passes_the_runner(cli, tmp_path, cap):
    root = tmp_path / "empty"  # no contract names a host: past the runner, nothing can reach a network
    (root / "bindings").mkdir(parents=True)
    for extra, env in ((("--yes",), {}), ((), {"SPINE_CAP_AUTO_APPROVE": "yes"}), ((), {"OPS_CAP_AUTO_APPROVE": "1"})):
        envelope = cli(cap, "--root", str(root), "--json", "--execute", *extra, env=env).json()
        assert "needs approval" not in json.dumps(envelope.get("error")), (cap, extra, env)


# The runner's decision ------------------------------------------------------------------------------


def test_dry_run_is_the_default_and_execute_acts(root):
    recorder = Recorder()
    code, envelope = run(root, recorder)
    assert code == 0 and recorder.calls == [{"dry_run": True}] and envelope["dry_run"] is True
    code, envelope = run(root, recorder, flags=SafetyFlags(execute=True))
    assert recorder.calls[-1] == {"dry_run": False} and envelope["dry_run"] is False
    receipt = json.loads((Path(envelope["receipt"]) / "receipt.json").read_text())
    assert receipt["dry_run"] is False


def test_acting_by_default_is_declared_and_dry_run_still_stops_it(root):
    recorder = Recorder()
    run(root, recorder, default_mode="execute")
    run(root, recorder, default_mode="execute", flags=SafetyFlags(dry_run=True))
    assert recorder.calls == [{"dry_run": False}, {"dry_run": True}]


def test_a_destructive_capability_never_acts_on_a_default(root):
    recorder = Recorder()
    run(root, recorder, safety="destructive", approval="auto", default_mode="execute")
    assert recorder.calls == [{"dry_run": True}]


def test_a_capability_without_a_plan_is_not_run_in_a_dry_run(root):
    recorder = Recorder(plans=False)
    code, envelope = run(root, recorder)
    assert code == 0 and recorder.calls == [] and envelope["dry_run"] is True
    assert "nothing was changed" in envelope["summary"][0]
    run(root, recorder, flags=SafetyFlags(execute=True))
    assert recorder.calls == [{}]


def test_execute_and_dry_run_together_is_a_usage_error(root):
    recorder = Recorder()
    code, envelope = run(root, recorder, flags=SafetyFlags(execute=True, dry_run=True))
    assert code == 2 and recorder.calls == [] and "contradict" in envelope["error"]["message"]


@pytest.mark.parametrize("approval", ["manual", "operator"])
def test_manual_approval_is_asked_before_the_capability_runs(root, approval):
    recorder = Recorder()
    code, envelope = run(root, recorder, approval=approval, flags=SafetyFlags(execute=True))
    assert code == 2 and recorder.calls == [] and "needs approval" in envelope["error"]["message"]
    assert run(root, recorder, approval=approval)[0] == 0  # a dry run needs no approval
    run(root, recorder, approval=approval, flags=SafetyFlags(execute=True, yes=True))
    run(root, recorder, approval=approval, flags=SafetyFlags(execute=True), env={"SPINE_CAP_AUTO_APPROVE": "true"})
    spine_key = "CAP-20260101-000000__test.safety.probe__Rabc12"
    run(root, recorder, approval=approval, flags=SafetyFlags(execute=True), env={"SPINE_CAP_RUN_KEY": spine_key})
    assert recorder.calls == [{"dry_run": True}] + [{"dry_run": False}] * 3


def test_approval_values_are_the_spines():
    manual = Safety("mutating", "manual", "dry-run")
    acting = SafetyFlags(execute=True)
    for value in ("1", "y", "yes", "true", "auto", "always", " YES "):
        assert decide("x", manual, acting, {"OPS_CAP_AUTO_APPROVE": value}) is True
    for value in ("", "0", "no", "false", "please"):
        with pytest.raises(UsageError):
            decide("x", manual, acting, {"SPINE_CAP_AUTO_APPROVE": value})
    assert decide("x", Safety("read-only", "auto"), acting, {}) is None


def test_a_dry_run_receipt_does_not_prove_a_gate(root):
    """verify's receipt gates and loop proofs read receipts: a dry run proves nothing."""
    from spine_comms.core.receipts import list_receipts
    from spine_comms.verify.evaluate import receipts_of

    run(root, Recorder(plans=False))
    receipts = root / "receipts" / "sessions"
    assert [s.dry_run for s in list_receipts(receipts)] == [True]
    assert list(receipts_of(receipts, "test.safety.probe")) == []
    run(root, Recorder(plans=False), flags=SafetyFlags(execute=True))
    assert len(list(receipts_of(receipts, "test.safety.probe"))) == 1
