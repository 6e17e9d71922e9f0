"""spine.install --mcp: the MCP server registered as the spine's communications-agent, on a synthetic checkout.

The agent registry here is written by hand in the shape of the spine's ops/bindings/agents.registry.yaml
(a banner, `version`, `agents:` entries with mcp_type, mcp_tools {name, safety, description},
capabilities, then `routing_rules:`); what must hold: a dry run writes nothing, the file changes only by
inserted lines, the operator's own entries and tools stay, a second run changes nothing, and the tools
listed are the ones `mcp serve` offers, with the safety the server enforces.
"""

from __future__ import annotations

import json

import pytest
import yaml

from spine_comms.core.registry import load_registry
from tests.spine_checkout import build_spine_checkout
from tests.unit.test_spine_install import install, only, only_insertions, snapshot

AGENTS = "ops/bindings/agents.registry.yaml"
REGISTRY_HEAD = """\
# Agent Registry (synthetic, in the shape of the spine's file)
version: 2
updated: "2026-02-17"

agents:
  - id: files-agent
    domain: files
    description: "Another domain's agent: must stay as it is"
    mcp_type: custom
    mcp_tools:
      - name: files_status
        safety: read-only
        description: "Read-only files status."
    capabilities:
      - files.status
"""
OPERATORS_AGENT = """\
  - id: communications-agent
    domain: communications
    description: "Communications stack"
    mcp_tools:
      - name: communications_stack_status
        safety: read-only
        description: "Stack status."
      - name: communications_mail_send_test
        safety: "governed (manual-approval, requires confirm)"
        description: "The operator's own test send."
      - name: communications_draft_send
        safety: mutating
        description: "Listed with the wrong safety."
    capabilities:
      - communications.stack.status
"""
ROUTING = """\

# Routing rules
routing_rules:
  - agent: files-agent
    keywords:
      - files
"""


@pytest.fixture
def spine(tmp_path):
    checkout = build_spine_checkout(tmp_path / "spine")
    (checkout / AGENTS).write_text(REGISTRY_HEAD + ROUTING)
    return checkout


def _agent(spine) -> dict:
    agents = yaml.safe_load((spine / AGENTS).read_text())["agents"]
    (agent,) = [a for a in agents if a["id"] == "communications-agent"]
    return agent


def test_a_dry_run_shows_both_files_and_writes_nothing(cli, root, spine):
    before = snapshot(spine)
    code, envelope = install(cli, root, spine, "--mcp", *only("sieve.status"))
    assert code == 0 and snapshot(spine) == before
    data = envelope["data"]
    assert {AGENTS, ".mcp.json"} <= set(data["files_changed"]) and data["written"] == []
    assert "+  - id: communications-agent" in data["diff"] and "+    mcp_type: gateway" in data["diff"]
    assert {c["id"]: c["status"] for c in envelope["checks"]}["install.mcp"] == "warn"


def test_the_agent_and_the_server_are_registered_by_inserted_lines_once(cli, root, spine):
    before = (spine / AGENTS).read_text()
    code, envelope = install(cli, root, spine, "--mcp", "--execute", "--yes", *only("sieve.status"))
    assert code == 0, envelope["checks"]
    after = (spine / AGENTS).read_text()
    assert only_insertions(before, after) and after.endswith(ROUTING)
    agent = _agent(spine)
    assert agent["mcp_type"] == "gateway"
    assert agent["runtime_bindings"] == [{"surface": "claude_desktop", "server_name": "communications-agent"}]
    tools = {t["name"]: t["safety"] for t in agent["mcp_tools"]}
    registry = load_registry().capabilities
    assert set(tools) == {cap.replace(".", "_") for cap, spec in registry.items() if spec.safety != "destructive"}
    assert tools["communications_mail_search"] == "read-only" and tools["communications_mail_draft"] == "mutating"
    assert tools["communications_draft_send"] == "governed (manual-approval, requires confirm)"
    assert "gaps_close" not in tools and "communications.draft.send" in agent["capabilities"]
    server = json.loads((spine / ".mcp.json").read_text())["mcpServers"]["communications-agent"]
    assert server["args"] == ["mcp", "serve", "--root", str(spine.resolve())]
    assert server["command"].endswith("spine-comms")
    written = snapshot(spine)
    code, again = install(cli, root, spine, "--mcp", "--execute", "--yes", *only("sieve.status"))
    assert code == 0 and again["data"]["files_changed"] == [] and snapshot(spine) == written
    assert {c["id"]: c["status"] for c in again["checks"]}["install.mcp"] == "ok"


def test_the_operators_entry_keeps_its_own_tools_and_a_wrong_safety_is_reported_not_rewritten(cli, root, spine):
    (spine / AGENTS).write_text(REGISTRY_HEAD + OPERATORS_AGENT + ROUTING)
    (spine / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}, indent=2) + "\n")
    code, envelope = install(cli, root, spine, "--mcp", "--execute", "--yes", *only("sieve.status"))
    assert code == 0, envelope["checks"]
    agent = _agent(spine)
    names = [t["name"] for t in agent["mcp_tools"]]
    assert names[:3] == ["communications_stack_status", "communications_mail_send_test", "communications_draft_send"]
    assert names.count("communications_draft_send") == 1 and "communications_mail_draft" in names
    assert agent["mcp_tools"][2]["safety"] == "mutating"  # the operator's value, for a person to change
    assert any("communications_draft_send" in line and "requires confirm" in line
               for line in envelope["data"]["by_hand"])  # fmt: skip
    assert agent["capabilities"][0] == "communications.stack.status" and agent["mcp_type"] == "gateway"
    assert set(json.loads((spine / ".mcp.json").read_text())["mcpServers"]) == {"other", "communications-agent"}


def test_the_spines_mcp_contract_chooses_the_tools_and_the_name(cli, root, spine):
    (spine / "ops" / "bindings" / "communications.mcp.contract.yaml").write_text(
        'version: 1\nmcp:\n  server_name: comms\n  allow: ["communications.mail.*"]\n'
    )
    code, envelope = install(cli, root, spine, "--mcp", "--execute", "--yes", *only("sieve.status"))
    assert code == 0, envelope["checks"]
    agent = _agent(spine)
    assert {t["name"] for t in agent["mcp_tools"]} == {
        "communications_mail_search", "communications_mail_send", "communications_mail_draft"}  # fmt: skip
    assert agent["runtime_bindings"] == [{"surface": "claude_desktop", "server_name": "comms"}]
    assert set(json.loads((spine / ".mcp.json").read_text())["mcpServers"]) == {"comms"}


def test_without_an_agent_registry_or_with_bad_json_it_is_exit_2_and_writes_nothing(cli, root, spine):
    (spine / AGENTS).unlink()
    before = snapshot(spine)
    code, envelope = install(cli, root, spine, "--mcp", "--execute", "--yes", *only("sieve.status"))
    assert code == 2 and "agents.registry.yaml" in envelope["error"]["message"] and snapshot(spine) == before
    (spine / AGENTS).write_text(REGISTRY_HEAD)
    (spine / ".mcp.json").write_text("{not json")
    before = snapshot(spine)
    code, envelope = install(cli, root, spine, "--mcp", "--execute", "--yes", *only("sieve.status"))
    assert code == 2 and ".mcp.json" in envelope["error"]["message"] and snapshot(spine) == before
