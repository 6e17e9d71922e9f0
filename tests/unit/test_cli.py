"""The command line as people and scripts meet it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from spine_comms import __version__
from spine_comms.core.registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "spine-comms"
# A probe of one endpoint where nothing listens: quick, and always `fail`.
OFFLINE_PROBE = ("--host", "127.0.0.1", "--only", "993", "--timeout", "0.5")


def sh(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    full_env.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60)


def test_help_groups_capabilities_by_phase_and_explains_exit_codes():
    done = sh("--help", env={"COLUMNS": "200"})
    assert done.returncode == 0
    registry = load_registry()
    for spec in registry.capabilities.values():
        assert spec.id in done.stdout
        assert registry.phases[spec.phase] in done.stdout
    flat = " ".join(done.stdout.split())
    assert "3 could not evaluate" in flat and "Registry and receipts:" in flat


def test_version_and_python_dash_m():
    assert sh("--version").stdout.strip() == f"spine-comms {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "spine_comms", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"spine-comms {__version__}"


def test_cap_list_json_lists_every_capability(cli):
    result = cli("cap", "list", "--json")
    data = result.json()["data"]
    assert result.exit_code == 0
    assert {c["id"] for c in data["capabilities"]} == set(load_registry().capabilities)
    stack = next(c for c in data["capabilities"] if c["id"] == "communications.stack.status")
    assert stack["safety"] == "read-only" and stack["approval"] == "auto"


def test_global_json_before_the_command_counts_too(cli):
    assert cli("--json", "cap", "list").json()["capability"] == "cap.list"


def test_cap_show_exports_the_options(cli):
    result = cli("cap", "show", "communications.stack.status", "--json")
    options = {o["name"]: o for o in result.json()["data"]["options"]}
    assert {"host", "server_name", "ca_file", "timeout", "only"} <= set(options)
    assert options["timeout"]["flags"] == ["--timeout"]


def test_unknown_capability_suggests_close_ids(cli):
    result = cli("cap", "show", "communications.stack.statu")
    assert result.exit_code == 2
    assert "Did you mean communications.stack.status" in result.stderr
    direct = sh("communications.stack.statsu")
    assert direct.returncode == 2 and "communications.stack.status" in direct.stderr


def test_cap_run_passes_options_after_the_separator(cli, root):
    result = cli("cap", "run", "communications.stack.status", "--", "--root", str(root), "--json", *OFFLINE_PROBE)
    envelope = result.json()
    assert envelope["capability"] == "communications.stack.status"
    assert [r["port"] for r in envelope["data"]["endpoints"]] == [993]
    assert result.exit_code == 3  # nothing listens on 127.0.0.1:993 here: could not evaluate


def test_bad_option_is_a_usage_error_without_traceback(cli):
    result = cli("communications.stack.status", "--timeout", "nope")
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr


def test_no_color_and_NO_COLOR(root):
    args = ("communications.stack.status", "--root", str(root), *OFFLINE_PROBE)
    for env, extra in (({"NO_COLOR": "1"}, ()), ({}, ("--no-color",))):
        done = sh(*args, *extra, env={**env, "TERM": "xterm-256color"})
        assert "\x1b[" not in done.stdout + done.stderr
        assert done.stdout.rstrip().endswith("status: error")


def test_shell_completion_offers_capability_ids():
    done = sh(
        env={
            "_SPINE_COMMS_COMPLETE": "complete_bash",
            "COMP_WORDS": "spine-comms communications.sta",
            "COMP_CWORD": "1",
        }
    )
    assert "communications.stack.status" in done.stdout


def test_json_output_from_a_real_process_is_one_object(root):
    done = sh("communications.stack.status", "--root", str(root), "--json", *OFFLINE_PROBE)
    assert done.stdout.startswith("{")
    envelope = json.loads(done.stdout)
    assert envelope["status"] == "error" and done.returncode == 3
    assert Path(envelope["receipt"], "receipt.json").is_file()
