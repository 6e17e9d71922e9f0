"""--json prints exactly one envelope, whatever refused the run; text output prints one status line."""

from __future__ import annotations

import json
import re

import pytest

from spine_comms.core.output import render_text
from spine_comms.core.registry import load_registry

CAPABILITIES = sorted(load_registry().capabilities)


def one_envelope(stdout: str) -> dict:
    """stdout is one JSON object, starting on its own line, and nothing else."""
    assert stdout.startswith("{"), stdout[:500]
    decoder = json.JSONDecoder()
    envelope, end = decoder.raw_decode(stdout)
    assert stdout[end:].strip() == "", f"more than one thing on stdout: {stdout[end:][:300]!r}"
    return envelope


@pytest.mark.parametrize("cap", CAPABILITIES)
def test_a_bad_option_with_json_is_one_parseable_envelope(cli, cap):
    result = cli(cap, "--json", "--no-such-option")
    envelope = one_envelope(result.stdout)
    assert result.exit_code == 2
    assert envelope["capability"] == cap and envelope["status"] == "error"
    assert envelope["schema_version"] == "1.0" and envelope["run_key"] is None and envelope["receipt"] is None
    assert "--no-such-option" in envelope["error"]["message"]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("communications.stack.status", "--timeout", "nope", "--json"),  # a bad value
        ("--json", "communications.stack.status", "--bogus"),  # --json before the command
        ("cap", "run", "communications.stack.status", "--", "--json", "--bogus"),  # the spine's calling form
        ("communications.stack.statsu", "--json"),  # no such capability
        ("cap", "show", "no.such.cap", "--json"),
        ("receipts", "latest", "communications.stack.status", "--json", "--root", "/nonexistent/root"),
    ],
)
def test_every_refusal_with_json_is_one_envelope(cli, args):
    result = cli(*args)
    envelope = one_envelope(result.stdout)
    assert result.exit_code in (1, 2) and envelope["status"] in ("error", "fail")
    assert envelope["error"]["message"]
    assert "Traceback" not in result.stdout + result.stderr


def test_no_root_with_json_is_one_envelope(cli, tmp_path):
    missing = tmp_path / "nowhere"
    result = cli("communications.stack.status", "--root", str(missing), "--json")
    envelope = one_envelope(result.stdout)
    assert result.exit_code == 2 and envelope["status"] == "error" and envelope["receipt"] is None


def test_without_json_a_bad_option_prints_nothing_on_stdout(cli):
    result = cli("communications.stack.status", "--no-such-option")
    assert result.exit_code == 2 and result.stdout == "" and "--no-such-option" in result.stderr


def _envelope(data=None, summary=None):
    return {
        "capability": "test.cap", "status": "ok", "data": data or {}, "summary": summary or [], "checks": [],
        "run_key": "CAP-20260101-000000__test.cap__Rabc12", "receipt": "/r",
    }  # fmt: skip


def test_one_status_line_even_when_the_data_has_a_status():
    """communications.mail.send's data.status (dry-run, sent...) printed a second `status:` line."""
    text = render_text(_envelope(data={"status": "dry-run", "run_key": "x", "count": 3}), color=False)
    assert [line for line in text.splitlines() if re.match(r"\s*status:", line)] == ["status: ok"]
    assert "data.status: dry-run" in text and "count: 3" in text
    assert text.splitlines()[-1] == "status: ok"


def test_a_real_process_prints_the_envelope_too():
    """The installed entry point (cron, the spine's runner), not only the in-process runner."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "spine-comms"
    done = subprocess.run([str(script), "sieve.apply", "--json", "--rollbak"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    envelope = one_envelope(done.stdout)
    assert done.returncode == 2 and envelope["capability"] == "sieve.apply" and envelope["status"] == "error"
    assert "--rollbak" in envelope["error"]["message"] and "Traceback" not in done.stderr
