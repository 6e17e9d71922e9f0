"""spine.install --mcp: register `spine-comms mcp serve` in the spine as its communications-agent.

Two files of the spine checkout, each only where it differs:

- ops/bindings/agents.registry.yaml, edited round-trip (core.yaml_roundtrip): the agent entry
  `communications-agent` (added when missing) gets `mcp_type: gateway`, a runtime binding
  `{surface: claude_desktop, server_name: <name>}`, its capability ids and an `mcp_tools` item per
  tool the server offers, named in snake_case with a safety each: read-only, mutating, or
  "governed (manual-approval, requires confirm)" for a tool the server refuses without confirm.
  What is there already stays (the operator's own tools, bindings, order); ours are appended, and
  a tool of ours listed with another safety is reported for a person to set, never rewritten.
- .mcp.json (Claude Code's project servers), `mcpServers.<name>`: the command and arguments that
  start the server on the spine's own root. Rewritten as JSON (two-space indent) only when it
  changes; the other servers in it stay as they are.

The tools are what `mcp serve --root <spine>` would offer: the registry less destructive
capabilities, bounded by the spine's communications.mcp.contract.yaml when it has one.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spine_comms.contracts.mcp import tool_name
from spine_comms.core.errors import UsageError

AGENTS = "ops/bindings/agents.registry.yaml"
MCP_JSON = ".mcp.json"
AGENT_ID = "communications-agent"
SURFACE = "claude_desktop"


@dataclass
class JsonFile:
    """A JSON file as loaded and as it will be written: what Edits needs of a document (text, diff, save)."""

    path: Path
    original: str
    text: str
    source: str

    def diff(self, label: str | None = None) -> str:
        name = label or self.source
        lines = difflib.unified_diff(self.original.splitlines(keepends=True), self.text.splitlines(keepends=True),
                                     f"a/{name}", f"b/{name}")  # fmt: skip
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    def save(self, path: Path) -> None:
        from spine_comms.core.atomic import write_atomic

        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        write_atomic(path, self.text, mode)


def needs_confirm(spec) -> bool:
    """Refused by the server without confirm=true (mcp/tools.py Tool.needs_confirm: the same rule)."""
    return spec.safety != "read-only" and spec.approval != "auto"


def tool_safety(spec) -> str:
    """The spine's words for a tool's safety in agents.registry.yaml."""
    if needs_confirm(spec):
        return f"governed ({spec.approval}-approval, requires confirm)"
    return spec.safety


def offered(root: Path) -> tuple[str, list]:
    """The server's name and the capabilities `mcp serve --root <spine>` offers as tools, in registry order."""
    from spine_comms.contracts.mcp import MCP_CONTRACT, McpContract, exposed
    from spine_comms.core.contracts import Contracts
    from spine_comms.core.registry import load_registry
    from spine_comms.core.root import Root

    contracts = Contracts(Root(root, "spine"))
    specs = list(load_registry().capabilities.values())
    allow: list[str] = []
    deny: list[str] = []
    name = AGENT_ID
    if contracts.exists(MCP_CONTRACT):
        contract = contracts.load(MCP_CONTRACT, McpContract)
        allow, deny, name = contract.mcp.allow, contract.mcp.deny, contract.mcp.server_name
    chosen, problems = exposed(specs, allow, deny)
    if problems:
        raise UsageError(f"{contracts.path(MCP_CONTRACT)}: " + "; ".join(p.removeprefix("--") for p in problems))
    return name, chosen


def apply(edits, root: Path, executable: str) -> dict:
    """Plan both files into `edits` (spine_edit.Edits); what the agent entry and the server will hold."""
    from spine_comms.core.yaml_roundtrip import RoundTripYaml

    name, specs = offered(root)
    if not (root / AGENTS).is_file():
        raise UsageError(f"{root} has no {AGENTS}: the spine's agent registry is where the server is registered")
    doc = RoundTripYaml.load(root / AGENTS)
    edits.docs[AGENTS] = doc
    _agent(edits, doc, name, specs)
    server = {"command": executable, "args": ["mcp", "serve", "--root", str(root)]}
    edits.docs[MCP_JSON] = _mcp_json(root, name, server)
    return {"server_name": name, "tools": [{"name": tool_name(s.id), "safety": tool_safety(s)} for s in specs],
            "server": server}  # fmt: skip


def _agent(edits, doc, name: str, specs: list) -> None:
    agents = doc.data.get("agents") if isinstance(doc.data, dict) else None
    if not isinstance(agents, list):
        edits.by_hand.append(f"add the {AGENT_ID} agent to {AGENTS} (it has no `agents:` list)")
        return
    wanted_tools = [{"name": tool_name(s.id), "safety": tool_safety(s), "description": _short(s.description)}
                    for s in specs]  # fmt: skip
    binding = {"surface": SURFACE, "server_name": name}
    index = next((i for i, a in enumerate(agents) if isinstance(a, dict) and a.get("id") == AGENT_ID), None)
    if index is None:
        doc.append_item(("agents",), {
            "id": AGENT_ID, "domain": "communications",
            "description": "Mail, calendars and contacts on the operator's own server (spine-comms), as MCP tools",
            "implementation": "spine-comms mcp serve", "implementation_status": "active", "mcp_type": "gateway",
            "runtime_bindings": [binding], "mcp_tools": wanted_tools, "capabilities": [s.id for s in specs],
        })  # fmt: skip
        return
    agent = agents[index]
    at = ("agents", index)
    left = doc.merge(at, {"mcp_type": "gateway"})
    bindings = agent.get("runtime_bindings")
    if not isinstance(bindings, list) or binding not in bindings:
        left += doc.merge(at, {"runtime_bindings": [*(bindings if isinstance(bindings, list) else []), binding]})
    have = agent.get("mcp_tools") if isinstance(agent.get("mcp_tools"), list) else []
    named = {t.get("name"): t for t in have if isinstance(t, dict)}
    for tool in wanted_tools:
        listed = named.get(tool["name"])
        if listed is not None and listed.get("safety") != tool["safety"]:
            edits.by_hand.append(f"{AGENT_ID}: set the safety of mcp_tools {tool['name']} to {tool['safety']!r} in "
                                 f"{AGENTS} (it is {listed.get('safety')!r})")  # fmt: skip
    missing = [t for t in wanted_tools if t["name"] not in named]
    if missing:
        left += doc.merge(at, {"mcp_tools": [*have, *missing]})
    caps = agent.get("capabilities") if isinstance(agent.get("capabilities"), list) else []
    new_caps = [s.id for s in specs if s.id not in caps]
    if new_caps:
        left += doc.merge(at, {"capabilities": [*caps, *new_caps]})
    edits.by_hand += [f"{AGENT_ID}: set `{where}` in {AGENTS} by hand (a flow list or another type)" for where in left]


def _short(text: str, limit: int = 200) -> str:
    """A registry description cut for a one-line tool description, at a word."""
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def _mcp_json(root: Path, name: str, server: dict[str, Any]) -> JsonFile:
    path = root / MCP_JSON
    original = path.read_text("utf-8") if path.is_file() else ""
    try:
        data = json.loads(original) if original.strip() else {}
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc}); fix it or move it away, then run again") from None
    if not isinstance(data, dict) or not isinstance(data.setdefault("mcpServers", {}), dict):
        raise UsageError(f"{path}: `mcpServers` is not an object")
    text = original
    if data["mcpServers"].get(name) != server:
        data["mcpServers"][name] = server
        text = json.dumps(data, indent=2) + "\n"
    return JsonFile(path, original, text, str(path))
