"""Capabilities as MCP tools: names, input schemas, who sees which, and the command line a call runs.

Everything here is derived from the registry and from `option_spec` (the argument spec
`cap show --json` prints), never written by hand: a new option of a capability is a new
property of its tool's schema the next time the server starts. No MCP import here, so the
mapping is tested without the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spine_comms.contracts.mcp import exposed, tool_name  # noqa: F401 (the exposure rules are the contract's)
from spine_comms.core.registry import CapabilitySpec

# The runner's approval flag is `--yes`; to an agent it is the spine gateway's `confirm`.
ARGUMENT_FOR_OPTION = {"yes": "confirm"}
OPTION_FOR_ARGUMENT = {v: k for k, v in ARGUMENT_FOR_OPTION.items()}
CONFIRM = "confirm"
JSON_TYPES = {"bool": "boolean", "flag": "boolean", "int": "integer", "float": "number"}


class ToolArgumentError(ValueError):
    """A call's arguments do not fit the tool's schema: one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Tool:
    name: str
    capability: str
    description: str
    safety: str
    approval: str
    options: list[dict[str, Any]] = field(compare=False)
    input_schema: dict[str, Any] = field(compare=False)

    @property
    def needs_confirm(self) -> bool:
        """Mutating with manual (or operator) approval: refused unless the call says confirm=true."""
        return self.safety != "read-only" and self.approval != "auto"


def _argument(option: dict[str, Any]) -> str:
    return ARGUMENT_FOR_OPTION.get(option["name"], option["name"])


def _positional(option: dict[str, Any]) -> bool:
    return not any(flag.startswith("-") for flag in option["flags"])


def _json_default(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_default(v) for v in value] or None
    return str(value)  # a Path, an enum: as the command line would spell it


def _property(option: dict[str, Any]) -> dict[str, Any]:
    scalar = JSON_TYPES.get(option["type"].removeprefix("list[").removesuffix("]"), "string")
    prop: dict[str, Any] = {"type": "array", "items": {"type": scalar}} if option["multiple"] else {"type": scalar}
    if option.get("help"):
        prop["description"] = option["help"]
    default = _json_default(option.get("default"))
    if default is not None and not (scalar == "boolean" and default is False and len(option["flags"]) == 1):
        prop["default"] = default
    return prop


def input_schema(spec: CapabilitySpec, options: list[dict[str, Any]]) -> dict[str, Any]:
    properties = {_argument(o): _property(o) for o in options}
    if spec.safety != "read-only" and spec.approval != "auto" and CONFIRM not in properties:
        properties[CONFIRM] = {"type": "boolean"}
    if CONFIRM in properties:
        properties[CONFIRM]["description"] = (
            f"Approve this {spec.approval}-approval capability (the CLI's --yes). Without it the call is refused."
        )
    required = [_argument(o) for o in options if o["required"]]
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def describe(spec: CapabilitySpec) -> str:
    """The registry's description, and the safety an agent must know before calling."""
    rule = spec.safety
    if spec.safety != "read-only" and spec.approval != "auto":
        rule += f", {spec.approval} approval: refused unless confirm=true"
    return f"{spec.description} [{spec.id}; {rule}; result: the capability's JSON envelope with its run_key]"


def make_tool(spec: CapabilitySpec, options: list[dict[str, Any]]) -> Tool:
    return Tool(tool_name(spec.id), spec.id, describe(spec), spec.safety, spec.approval, options,
                input_schema(spec, options))  # fmt: skip


def _check(tool: Tool, arguments: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(tool.input_schema).iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        where = lambda e: ".".join(str(p) for p in e.path) or "arguments"  # noqa: E731
        raise ToolArgumentError([f"{tool.name}: {where(e)}: {e.message}" for e in errors])


def command_arguments(tool: Tool, arguments: dict[str, Any]) -> list[str]:
    """The capability's own command-line arguments for a call (after `spine-comms <id>`).

    Values go as `--flag=value`, so a value that starts with a dash stays a value; positional
    arguments go last, after `--`. `confirm` becomes `--yes` where the capability takes it."""
    _check(tool, arguments)
    flags, positional = [], []
    for option in tool.options:
        value = arguments.get(_argument(option))
        if value is None:
            continue
        if _positional(option):
            positional.append(str(value))
            continue
        long = next((f for f in option["flags"] if f.startswith("--")), option["flags"][0])
        if option["type"] in ("bool", "flag"):
            if value:
                flags.append(option["flags"][0])
            elif len(option["flags"]) > 1:  # --x/--no-x: false is said, not left to the default
                flags.append(option["flags"][-1])
            continue
        for item in value if option["multiple"] else [value]:
            flags.append(f"{long}={item}")
    return flags + (["--", *positional] if positional else [])
