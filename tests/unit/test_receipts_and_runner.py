"""The run funnel and receipts: statuses, exit codes, the spine's runner, atomic writes."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from spine_comms.core import receipts
from spine_comms.core.context import GlobalOptions
from spine_comms.core.errors import ContractError, CouldNotEvaluate, Problem
from spine_comms.core.receipts import RUN_KEY_RE, list_receipts
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.runner import execute


def run(root: Path, function, *, json_out=True, strict=False, debug=False, env=None, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = execute(
        capability="test.frame.probe", safety="read-only", approval="auto", function=function, kwargs=kwargs,
        options=GlobalOptions(root=str(root), json=json_out, strict=strict, debug=debug),
        argv=["spine-comms", "test.frame.probe"], env=env or {}, stdout=out, stderr=err,
    )  # fmt: skip
    return code, out.getvalue(), err.getvalue()


def returning(status: Status | None = None, checks=()):
    def capability(ctx):
        return Result(data={"answer": 42}, checks=list(checks), status=status)

    return capability


@pytest.mark.parametrize(
    ("status", "strict", "code"),
    [(Status.OK, False, 0), (Status.WARN, False, 0), (Status.WARN, True, 1), (Status.FAIL, False, 1),
     (Status.PARTIAL, False, 1), (Status.ERROR, False, 3)],
)  # fmt: skip
def test_status_to_exit_code(root, status, strict, code):
    got, out, _ = run(root, returning(status), strict=strict)
    assert got == code
    assert json.loads(out)["status"] == str(status)


def test_status_is_the_worst_check(root):
    checks = [
        Check(id="t.a", status=Status.OK, detail="fine"),
        Check(id="t.b", status=Status.WARN, detail="hm"),
        Check(id="t.c", status=Status.SKIP, detail="later"),
    ]
    code, out, _ = run(root, returning(checks=checks))
    assert code == 0 and json.loads(out)["status"] == "warn"
    checks.append(Check(id="t.d", status=Status.ERROR, detail="no answer"))
    assert json.loads(run(root, returning(checks=checks))[1])["status"] == "error"
    checks.append(Check(id="t.e", status=Status.FAIL, detail="broken"))
    assert json.loads(run(root, returning(checks=checks))[1])["status"] == "fail"


def test_json_mode_prints_exactly_one_object_on_its_own_line(root):
    _, out, _ = run(root, returning(Status.OK))
    assert out.startswith("{\n")
    envelope = json.loads(out)
    assert list(envelope)[:5] == ["capability", "schema_version", "status", "generated_at", "data"]
    assert envelope["schema_version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", envelope["generated_at"])
    assert RUN_KEY_RE.match(envelope["run_key"])


def test_text_mode_ends_with_status_and_has_no_dash_rule(root):
    checks = [Check(id="t.a", status=Status.FAIL, detail="x" * 300, subject="s")]
    _, out, _ = run(root, returning(checks=checks), json_out=False)
    assert out.rstrip().splitlines()[-1] == "status: fail"
    assert not any(re.fullmatch(r"\s*[-─]{8,}\s*", line) for line in out.splitlines())


def test_an_exception_is_an_internal_error_without_traceback(root):
    def broken(ctx):
        raise ZeroDivisionError("boom")

    code, out, err = run(root, broken)
    assert code == 70
    envelope = json.loads(out)
    assert envelope["status"] == "error" and envelope["error"]["reference"] == "internal-error"
    assert "Traceback" not in out + err
    receipt = Path(envelope["receipt"])
    assert "| Exit Code | 70 |" in (receipt / "receipt.md").read_text()
    assert "| Status | failed |" in (receipt / "receipt.md").read_text()


def test_debug_shows_the_traceback_on_stderr(root):
    def broken(ctx):
        raise ZeroDivisionError("boom")

    code, out, err = run(root, broken, debug=True)
    assert code == 70 and "Traceback" in err and "ZeroDivisionError" in err
    assert "Traceback" not in out


def test_could_not_evaluate_is_exit_3(root):
    def unreachable(ctx):
        raise CouldNotEvaluate("mail.example: timed out after 5 s")

    code, out, err = run(root, unreachable)
    assert code == 3
    assert json.loads(out)["error"]["message"] == "mail.example: timed out after 5 s"
    assert "timed out" in err  # a person watching stderr sees it too


def test_a_full_disk_in_a_capability_is_exit_3_naming_the_path_and_any_other_oserror_is_70(root):
    def full(ctx):
        raise OSError(28, "No space left on device", "/srv/mailroom/state/x.json")

    code, out, err = run(root, full)
    error = json.loads(out)["error"]
    assert code == 3 and error["reference"] == "disk-full"
    assert error["message"] == "No space left on device: /srv/mailroom/state/x.json" and "df -i" in error["hint"]
    assert "Traceback" not in err

    def broken(ctx):
        raise OSError(5, "Input/output error")

    code, out, _ = run(root, broken)
    assert code == 70 and json.loads(out)["error"]["reference"] == "internal-error"


def test_contract_problems_are_exit_2_one_per_line(root):
    def invalid(ctx):
        raise ContractError(
            "bad", problems=[Problem("c.yaml", 3, "a.b", "wrong"), Problem("c.yaml", 9, "c", "missing")]
        )

    code, out, _ = run(root, invalid, json_out=False)
    assert code == 2
    assert "error: c.yaml:3: a.b: wrong\nerror: c.yaml:9: c: missing\n" in out


def test_receipt_directory_files_and_ledger(root):
    _, out, _ = run(root, returning(Status.OK))
    envelope = json.loads(out)
    directory = Path(envelope["receipt"])
    assert directory.parent == root / "receipts/sessions"
    assert directory.name == f"R{envelope['run_key']}"
    assert sorted(p.name for p in directory.iterdir()) == ["output.txt", "receipt.json", "receipt.md"]
    md = (directory / "receipt.md").read_text()
    for field in ("Run ID", "Generated", "Status", "Model", "Inputs", "Outputs", "| Capability | `test.frame.probe` |"):
        assert field in md  # what the spine's D9 and receipts-index-build read
    assert (directory / "output.txt").read_text() == out
    doc = json.loads((directory / "receipt.json").read_text())
    assert doc["envelope"] == envelope and doc["exit_code"] == 0
    rows = (root / "mailroom/state/ledger.csv").read_text().splitlines()
    assert rows[0].count(",") == 8 and rows[1].split(",")[4] == "done"
    assert not list((root / "receipts/sessions").glob(".staging-*"))


def test_the_ledger_follows_the_mailroom_runtime_contract_and_env(root, tmp_path):
    runtime = tmp_path / "runtime"
    (root / "bindings/mailroom.runtime.contract.yaml").write_text(f"runtime_root: {runtime}\nactive: true\n")
    run(root, returning(Status.OK))
    assert (runtime / "state/ledger.csv").is_file()
    state = tmp_path / "state-env"
    run(root, returning(Status.OK), env={"SPINE_STATE": str(state)})
    assert (state / "ledger.csv").read_text().count("\n") == 2


def test_under_the_spines_runner_only_receipt_json_is_written(root):
    key = "CAP-20260223-225853__test.frame.probe__R4acx50690"
    code, out, _ = run(root, returning(Status.OK), env={"SPINE_CAP_RUN_KEY": key})
    assert code == 0 and json.loads(out)["run_key"] == key
    directory = root / "receipts/sessions" / f"R{key}"
    assert [p.name for p in directory.iterdir()] == ["receipt.json"]
    assert json.loads((directory / "receipt.json").read_text())["spine_runner"] is True
    assert not (root / "mailroom/state/ledger.csv").exists()  # the runner writes its own row


def test_an_invalid_spine_run_key_is_not_adopted(root):
    _, out, _ = run(root, returning(Status.OK), env={"SPINE_CAP_RUN_KEY": "../../etc/passwd"})
    assert json.loads(out)["run_key"].startswith("CAP-")


@pytest.mark.parametrize("errno_, code_", [(28, 3), (122, 3), (5, 70)])  # ENOSPC, EDQUOT: the disk; EIO: a bug
def test_a_failed_write_leaves_no_directory(root, monkeypatch, errno_, code_):
    def explode(path, data, mode=0o644):
        if path.name == "receipt.md":
            raise OSError(errno_, "write failed")
        (path.parent).mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else data.decode())

    monkeypatch.setattr(receipts, "write_atomic", explode)
    code, _, err = run(root, returning(Status.OK))
    assert code == code_ and "could not write the receipt" in err
    assert ("the disk is full" in err) == (code_ == 3)
    # The chain's line goes in first (a reader that sees a receipt finds its line); no directory follows.
    assert [p.name for p in (root / "receipts/sessions").iterdir()] == [".chain.jsonl"]


def test_list_and_latest_read_both_our_receipts_and_the_spines(root, cli):
    run(root, returning(Status.OK))
    spine_dir = root / "receipts/sessions/RCAP-20200101-000000__test.frame.probe__Rold1"
    spine_dir.mkdir()
    (spine_dir / "receipt.md").write_text(
        "| Run ID | `CAP-20200101-000000__test.frame.probe__Rold1` |\n| Capability | `test.frame.probe` |\n"
        "| Status | failed |\n| Exit Code | 1 |\n| Generated | 2020-01-01T00:00:00Z |\n"
    )
    found = list_receipts(root / "receipts/sessions", "test.frame.probe")
    assert [r.status for r in found] == ["ok", "failed"]
    assert found[1].exit_code == 1
    listed = cli("receipts", "list", "test.frame.probe", "--root", str(root), "--json").json()
    assert listed["data"]["count"] == 2
    latest = cli("receipts", "latest", "test.frame.probe", "--root", str(root), "--json")
    assert latest.exit_code == 0 and json.loads(latest.stdout)["status"] == "ok"
    shown = cli("receipts", "show", found[1].run_key, "--root", str(root))
    assert "| Status | failed |" in shown.stdout
    missing = cli("receipts", "latest", "no.such.cap", "--root", str(root))
    assert missing.exit_code == 1 and "no receipt for no.such.cap" in missing.stderr
