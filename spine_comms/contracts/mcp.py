"""The MCP contract: `communications.mcp.contract.yaml` (optional): which tools `mcp serve` offers agents.

The operator's upper bound on what an agent sees: `mcp serve` and `mcp tools` read it from the
root, and their --allow/--deny only narrow it further (a deny is added; an allow must match too).
`spine.install --mcp` registers the server in the spine under `server_name`.

    version: 1
    mcp:
      server_name: communications-agent
      allow: ["communications.*", "calendar.event.*"]
      deny: [communications.draft.send]
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from spine_comms.core.contracts import ContractModel

MCP_CONTRACT = "communications.mcp.contract.yaml"
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]-]{1,200}$")


def _patterns(values: list[str]) -> list[str]:
    bad = [v for v in values if not _PATTERN.match(v)]
    if bad:
        raise ValueError(f"not a capability id, tool name or glob: {', '.join(map(repr, bad))}")
    return values


class McpServer(ContractModel):
    """The MCP server and the tools it offers."""

    server_name: str = Field(default="communications-agent", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The server's name in the spine's agents.registry.yaml (runtime_bindings) and in .mcp.json."""
    allow: list[str] = Field(default_factory=list)
    """Offer only the capabilities matching one of these (a capability id or tool name, `*` globs). Empty:
    every capability that is not destructive. A destructive one is offered only when named exactly here."""
    deny: list[str] = Field(default_factory=list)
    """Never offer the capabilities matching one of these; wins over allow."""

    @field_validator("allow", "deny")
    @classmethod
    def _globs(cls, values: list[str]) -> list[str]:
        return _patterns(values)


class McpContract(ContractModel):
    """communications.mcp.contract.yaml: what agents reach through `spine-comms mcp serve`."""

    version: int | str
    """The contract's version."""
    mcp: McpServer = Field(default_factory=McpServer)
    """The MCP server's name and its tool lists."""
