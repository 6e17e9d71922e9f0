"""`spine-comms mcp serve` and `spine-comms mcp tools`: the capabilities, as tools for MCP clients."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.core.errors import ExitCode, SpineCommsError
from spine_comms.option_types import JsonOpt, RootOpt

mcp_app = typer.Typer(
    help="Serve the capabilities to agents as MCP tools (needs the `mcp` extra).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

AllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        help="Expose only the capabilities matching this id or tool name (`*` globs; repeatable). "
        "A destructive capability is exposed only when named exactly here.",
    ),
]
DenyOpt = Annotated[
    list[str] | None,
    typer.Option("--deny", help="Hide the capabilities matching this (repeatable); wins over --allow."),
]


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    print(f"spine-comms: {message}", file=sys.stderr)
    return typer.Exit(int(code))


def _tools(allow: list[str], deny: list[str], root=None):
    """The tools the contract (when the root has one) allows, narrowed by --allow/--deny."""
    from spine_comms.contracts.mcp import MCP_CONTRACT
    from spine_comms.core.registry import load_registry
    from spine_comms.groups import option_spec
    from spine_comms.mcp.tools import exposed, make_tool

    specs = list(load_registry().capabilities.values())
    contract = _contract(root) if root is not None else None
    problems: list[str] = []
    if contract is not None:
        specs, found = exposed(specs, contract.mcp.allow, contract.mcp.deny)
        problems += [f"{MCP_CONTRACT}: {line.removeprefix('--')}" for line in found]
    chosen, found = exposed(specs, allow, deny, destructive_chosen=contract is not None)
    problems += found
    if problems:
        for line in problems:
            print(f"spine-comms: {line}", file=sys.stderr)
        raise typer.Exit(int(ExitCode.USAGE))
    tools = [make_tool(spec, option_spec(spec)) for spec in chosen]
    return {t.name: t for t in tools}


def _contract(root):
    """The root's communications.mcp.contract.yaml, or None; an invalid one is exit 2, one line per problem."""
    from spine_comms.contracts.mcp import MCP_CONTRACT, McpContract
    from spine_comms.core.contracts import Contracts

    contracts = Contracts(root)
    if not contracts.exists(MCP_CONTRACT):
        return None
    try:
        return contracts.load(MCP_CONTRACT, McpContract)
    except SpineCommsError as exc:
        for problem in exc.problems or []:
            print(f"spine-comms: {problem}", file=sys.stderr)
        raise _fail(exc.message, exc.exit_code) from None


def _root(ctx: typer.Context, root: str | None, *, optional: bool = False):
    """The root; with `optional`, None when none was named and the working directory is not one (a listing
    without a root shows the registry's tools, with no contract to bound them)."""
    import os

    from spine_comms.core.options import GlobalOptions
    from spine_comms.core.root import find_root, looks_like_root

    parent = ctx.find_root().obj if isinstance(ctx.find_root().obj, GlobalOptions) else GlobalOptions()
    named = root or parent.root or os.environ.get("SPINE_ROOT")
    if optional and not named and not looks_like_root(Path.cwd()):
        return None
    try:
        return find_root(named)
    except SpineCommsError as exc:
        raise _fail(exc.message, exc.exit_code) from None


@mcp_app.command("tools")
def tools_command(
    ctx: typer.Context, root: RootOpt = None, allow: AllowOpt = None, deny: DenyOpt = None, json_flag: JsonOpt = False
) -> None:
    """List the tools `mcp serve` would expose (the root's communications.mcp.contract.yaml, narrowed by
    --allow/--deny), with their input schemas (--json)."""
    tools = _tools(allow or [], deny or [], _root(ctx, root, optional=True))
    if json_flag:
        rows = [{"name": t.name, "capability": t.capability, "safety": t.safety, "approval": t.approval,
                 "description": t.description, "input_schema": t.input_schema} for t in tools.values()]  # fmt: skip
        sys.stdout.write(json.dumps({"count": len(rows), "tools": rows}, indent=2) + "\n")
        return
    for t in tools.values():
        gate = " (confirm)" if t.needs_confirm else ""
        print(f"{t.name:40} {t.safety}/{t.approval}{gate}")


@mcp_app.command("serve")
def serve_command(
    ctx: typer.Context,
    root: RootOpt = None,
    allow: AllowOpt = None,
    deny: DenyOpt = None,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", min=1, max=65535, help="Serve streamable HTTP on 127.0.0.1:PORT/mcp, not stdio."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Stop a tool call that runs longer than this (seconds).")
    ] = 300.0,
) -> None:
    """Serve one MCP tool per capability, over stdio (default) or streamable HTTP on 127.0.0.1.

    Every call runs the capability as `spine-comms <id> --root R --json` does and returns its
    envelope (with the receipt's run_key). Manual-approval tools are refused without confirm=true;
    destructive ones are exposed only when named in --allow. The root's communications.mcp.contract.yaml,
    when there is one, bounds the tools; --allow and --deny narrow them further."""
    found = _root(ctx, root)
    base = found.path
    tools = _tools(allow or [], deny or [], found)
    try:
        from spine_comms.mcp.server import build_server, serve_http, serve_stdio

        server = build_server(tools, base, timeout)
    except ImportError as exc:
        missing = f"the MCP server needs the mcp extra ({exc.name} is missing): pip install 'spine-comms[mcp]'"
        raise _fail(missing) from None
    if http_port is None:
        serve_stdio(server)
    else:
        serve_http(server, http_port)
