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
from fnmatch import fnmatchcase

from pydantic import Field, field_validator

from spine_comms.core.contracts import ContractModel
from spine_comms.core.registry import CapabilitySpec

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


# The exposure rules, shared by `mcp serve` (mcp/tools.py) and `spine.install --mcp` (governance/spine_mcp.py).


def tool_name(cap_id: str) -> str:
    """The spine's spelling of a capability as an MCP tool: dots become underscores."""
    return cap_id.replace(".", "_")


def _matches(spec: CapabilitySpec, pattern: str) -> bool:
    return fnmatchcase(spec.id, pattern) or fnmatchcase(tool_name(spec.id), pattern)


def exposed(specs: list[CapabilitySpec], allow: list[str], deny: list[str], *,
            destructive_chosen: bool = False) -> tuple[list[CapabilitySpec], list[str]]:  # fmt: skip
    """The capabilities an agent sees, and one problem per allow/deny entry that names nothing.

    Without --allow every capability that is not destructive; with it, those it matches (a
    capability id or tool name, `*` globs). A destructive capability is exposed only when an
    allow entry names it exactly, never through a glob; `destructive_chosen` says `specs` were
    already chosen that way (by the MCP contract), so here they are narrowed like any other.
    --deny wins over --allow."""
    problems = [f"--{flag} {p!r} matches no capability" for flag, patterns in (("allow", allow), ("deny", deny))
                for p in patterns if not any(_matches(s, p) for s in specs)]  # fmt: skip
    chosen = []
    for spec in specs:
        named = any(p in (spec.id, tool_name(spec.id)) for p in allow)
        if spec.safety == "destructive" and not named and not destructive_chosen:
            continue
        if allow and not any(_matches(spec, p) for p in allow):
            continue
        if any(_matches(spec, p) for p in deny):
            continue
        chosen.append(spec)
    return chosen, problems
