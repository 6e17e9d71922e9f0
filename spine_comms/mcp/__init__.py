"""The MCP server: one tool per capability, for agents that are MCP clients.

`tools` turns the registry and each capability's option spec (the one `cap show --json`
prints) into tool definitions and back into a command line; `server` speaks MCP with the
official SDK (the optional `mcp` extra) and runs every call as the CLI does, so the
runner's safety rules and receipts apply unchanged; `command` is `spine-comms mcp serve`.
"""
