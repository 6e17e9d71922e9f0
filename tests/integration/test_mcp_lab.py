"""`spine-comms mcp serve` through the official SDK's client over stdio, against the lab's servers.

The client spawns the server as an agent's host would; the tests compare what it lists and
returns with what `cap show --json` and the CLI say for the same capability and arguments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from spine_comms.core.registry import load_registry
from tests.cli_process import SPINE_COMMS, clean_env, run_capability

pytestmark = pytest.mark.lab
JSON_TYPES = {"bool": "boolean", "int": "integer", "float": "number", "flag": "boolean"}


def session(root: Path, work, *serve_args: str, env: dict[str, str] | None = None):
    """Run `work(client)` in one MCP session with `spine-comms mcp serve --root root`."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "spine_comms", "mcp", "serve", "--root", str(root), *serve_args],
        env=clean_env(env),
    )

    async def main():
        async with Client(params, read_timeout_seconds=120) as client:
            return await work(client)

    return anyio.run(main)


def cap_show(cap_id: str) -> dict:
    import subprocess

    done = subprocess.run([SPINE_COMMS, "cap", "show", cap_id, "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["data"]


def test_the_tools_are_the_registry_less_destructive_with_cap_shows_options_as_schema(lab_root):
    async def work(client):
        return (await client.list_tools()).tools

    tools = {t.name: t for t in session(lab_root, work)}
    registry = load_registry().capabilities
    expected = {cap.replace(".", "_") for cap, spec in registry.items() if spec.safety != "destructive"}
    assert set(tools) == expected
    assert "gaps_close" not in tools
    # Each tool against what `cap show --json` prints (a sample across types, arguments and approvals).
    for cap_id in ("communications.stack.status", "communications.mail.send", "calendar.event.create",
                   "sieve.apply", "loop.evidence", "calendar.sync.execute"):  # fmt: skip
        shown, listed = cap_show(cap_id), tools[cap_id.replace(".", "_")]
        assert listed.description.startswith(shown["description"])
        assert listed.annotations.read_only_hint is (shown["safety"] == "read-only")
        props = listed.input_schema["properties"]
        names = {"confirm" if o["name"] == "yes" else o["name"] for o in shown["options"]}
        gated = shown["safety"] != "read-only" and shown["approval"] != "auto"
        assert set(props) == names | ({"confirm"} if gated else set()), cap_id
        for option in shown["options"]:
            prop = props["confirm" if option["name"] == "yes" else option["name"]]
            scalar = JSON_TYPES.get(option["type"], "string")
            assert prop["type"] == ("array" if option["multiple"] else scalar), (cap_id, option)
            if option["name"] != "yes":  # confirm says what the server does with it instead
                assert prop.get("description") == option["help"]
        if gated:
            assert "refused" in props["confirm"]["description"]
        required = {o["name"] for o in shown["options"] if o["required"]}
        assert set(listed.input_schema.get("required", [])) == required


def test_allow_and_deny_choose_the_tools_and_only_an_exact_allow_shows_a_destructive_one(lab_root):
    async def work(client):
        return sorted(t.name for t in (await client.list_tools()).tools)

    assert session(lab_root, work, "--allow", "gaps.*", "--allow", "gaps.close", "--deny", "gaps_file") == [
        "gaps_close",
        "gaps_list",
    ]


def test_read_only_tools_give_the_clis_result_and_their_own_receipt(lab_root):
    arguments = {"only": ["IMAPS", "SMTP"]}

    async def work(client):
        return [await client.call_tool("communications_stack_status", arguments),
                await client.call_tool("mailroom_status", {})]  # fmt: skip

    stack, mailroom = session(lab_root, work)
    cli = run_capability(lab_root, "communications.stack.status", "--only", "IMAPS", "--only", "SMTP")
    got = stack.structured_content
    assert stack.is_error is False and got["exit_code"] == cli.code == 0
    assert got["status"] == cli.envelope["status"] == "ok"
    assert [(c["id"], c["status"]) for c in got["checks"]] == [(c["id"], c["status"]) for c in cli.envelope["checks"]]
    assert {r["protocol"] for r in got["data"]["endpoints"]} == {"IMAPS", "SMTP"}
    assert got["run_key"] != cli.envelope["run_key"]
    receipt = json.loads((Path(got["receipt"]) / "receipt.json").read_text())
    assert receipt["run_key"] == got["run_key"] and receipt["capability"] == "communications.stack.status"
    assert json.loads(stack.content[0].text)["run_key"] == got["run_key"]
    assert mailroom.structured_content["capability"] == "mailroom.status"
    assert mailroom.structured_content["status"] == run_capability(lab_root, "mailroom.status").envelope["status"]


def test_a_failing_verdict_is_a_result_and_matches_the_cli(lab_root):
    arguments = {"only": ["IMAPS"], "server_name": "mail.example.org"}

    async def work(client):
        return await client.call_tool("communications_stack_status", arguments)

    result = session(lab_root, work)
    cli = run_capability(lab_root, "communications.stack.status", "--only", "IMAPS", "--server-name",
                         "mail.example.org")  # fmt: skip
    got = result.structured_content
    assert (got["status"], got["exit_code"]) == (cli.envelope["status"], cli.code) == ("fail", 1)
    assert result.is_error is False  # the call worked; the verdict is fail
    assert [(c["id"], c["status"]) for c in got["checks"]] == [(c["id"], c["status"]) for c in cli.envelope["checks"]]


def receipts_of(root: Path, cap_id: str) -> int:
    return sum(json.loads(p.read_text())["capability"] == cap_id for p in (root / "receipts").rglob("receipt.json"))


def test_a_manual_tool_is_refused_without_confirm_whatever_the_servers_environment(lab_root):
    before = receipts_of(lab_root, "sieve.apply")

    async def work(client):
        return [await client.call_tool("sieve_apply", {"execute": True}),
                await client.call_tool("sieve_apply", {"confirm": True})]  # fmt: skip

    # Approval variables in the server's environment must not approve an agent's call.
    refused, confirmed = session(lab_root, work, env={"SPINE_CAP_AUTO_APPROVE": "yes"})
    assert refused.is_error is True
    error = refused.structured_content["error"]
    assert error["reference"] == "approval-required" and "confirm=true" in error["message"]
    assert refused.structured_content["run_key"] is None
    assert receipts_of(lab_root, "sieve.apply") == before + 1  # only the confirmed call ran
    ran = confirmed.structured_content
    assert ran["capability"] == "sieve.apply" and ran["run_key"]
    receipt = json.loads((Path(ran["receipt"]) / "receipt.json").read_text())
    assert "--yes" in receipt["invocation"]["argv"]


def test_streamable_http_on_loopback_serves_the_same_tools(lab_root):
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [SPINE_COMMS, "mcp", "serve", "--root", str(lab_root), "--http-port", str(port), "--allow", "*status"]
    server = subprocess.Popen(argv, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as knock:
                if knock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()[-2000:]
            time.sleep(0.2)

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                return names, await client.call_tool("mailroom_status", {})

        names, result = anyio.run(main)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "mailroom_status" in names and "communications_mail_send" not in names
    assert result.structured_content["capability"] == "mailroom.status" and result.structured_content["run_key"]


def test_an_agent_searches_mail_and_gets_what_the_cli_gets(lab_root, send_mail):
    import time
    import uuid

    token = uuid.uuid4().hex[:12]
    message_id = send_mail("alerts", "ops", subject=f"mcp {token}", body=f"for the agent {token}\n")
    arguments = {"mailbox": "ops", "query": token, "body_chars": 100}
    for _ in range(50):  # delivery is asynchronous
        cli = run_capability(lab_root, "communications.mail.search", "--mailbox", "ops", "--query", token,
                             "--body-chars", "100")  # fmt: skip
        if cli.envelope["data"]["total"]:
            break
        time.sleep(0.2)

    async def work(client):
        return await client.call_tool("communications_mail_search", arguments)

    got = session(lab_root, work).structured_content
    assert got["status"] == cli.envelope["status"] == "ok" and got["exit_code"] == 0
    assert got["data"]["messages"] == cli.envelope["data"]["messages"]
    assert [m["message_id"] for m in got["data"]["messages"]] == [message_id]
    assert got["data"]["messages"][0]["body"]["untrusted"] is True
