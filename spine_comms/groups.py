"""The `cap` and `receipts` command groups: the registry and the receipts, for people and gates."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from spine_comms.core.errors import ExitCode, SpineCommsError
from spine_comms.core.options import GlobalOptions
from spine_comms.core.registry import CapabilitySpec, load_registry
from spine_comms.option_types import ClickException, JsonOpt, RootOpt

cap_app = typer.Typer(
    help="The capability registry: list, show and run capabilities.", no_args_is_help=True, rich_markup_mode=None
)
receipts_app = typer.Typer(help="Read receipts: list, show, latest.", no_args_is_help=True, rich_markup_mode=None)


def _options(ctx: typer.Context, json_flag: bool = False, root: str | None = None) -> GlobalOptions:
    parent = ctx.find_root().obj if isinstance(ctx.find_root().obj, GlobalOptions) else GlobalOptions()
    return parent.merged(GlobalOptions(root=root, json=json_flag))


def _print_json(name: str, data: dict[str, Any], status: str = "ok") -> None:
    envelope = {
        "capability": name,
        "schema_version": "1.0",
        "status": status,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data,
    }
    sys.stdout.write(json.dumps(envelope, indent=2, default=str) + "\n")


class Refused(ClickException):
    """A cap/receipts command that cannot answer: `spine-comms: <message>` on stderr, and with --json the
    one envelope on stdout too (the root group prints it, as for any usage error)."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = int(code)

    def show(self, file=None) -> None:
        print(f"spine-comms: {self.message}", file=file or sys.stderr)


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> Refused:
    return Refused(message, code)


def _spec_or_exit(cap_id: str) -> CapabilitySpec:
    spec = load_registry().get(cap_id)
    if spec is None:
        from difflib import get_close_matches

        close = get_close_matches(cap_id, list(load_registry().capabilities), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See `spine-comms cap list`."
        raise _fail(f"unknown capability {cap_id!r}.{hint}")
    return spec


def _listing(spec: CapabilitySpec) -> dict[str, Any]:
    entry = spec.entry
    return {
        "id": spec.id,
        "description": spec.description,
        "phase": load_registry().phases.get(spec.phase, spec.phase),
        "safety": spec.safety,
        "approval": spec.approval,
        "default_mode": spec.default_mode,
        "lifecycle": entry.get("lifecycle"),
        "domain": entry.get("domain"),
        "command": entry.get("command"),
    }


@cap_app.command("list")
def cap_list(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """List every capability, grouped by phase."""
    registry = load_registry()
    rows = [_listing(s) for s in registry.capabilities.values()]
    if _options(ctx, json_flag).json:
        _print_json("cap.list", {"count": len(rows), "capabilities": rows})
        return
    import os

    from rich.console import Console

    from spine_comms.core.output import fitted_table, plain, width_for

    width = width_for(dict(os.environ), sys.stdout)
    console = Console(no_color=_options(ctx).no_color, width=width, highlight=False, emoji=False)
    for phase, specs in registry.by_phase().items():
        console.print(plain(phase, "bold"))
        rows = [[s.id, s.safety, s.default_mode or "", s.approval, s.description] for s in specs]
        console.print(fitted_table(["capability", "safety", "default", "approval", "description"], rows, width))
        console.print()


@cap_app.command("show")
def cap_show(
    ctx: typer.Context, cap_id: Annotated[str, typer.Argument(metavar="CAPABILITY")], json_flag: JsonOpt = False
) -> None:
    """Show a capability's registry entry, map entry and options."""
    spec = _spec_or_exit(cap_id)
    from spine_comms.capability_command import COMMON, build_capability_command

    command = build_capability_command(spec)
    options = [
        {
            "name": p.name.removeprefix("opt_"),
            "flags": list(p.opts) + list(getattr(p, "secondary_opts", [])),
            "type": "flag" if p.name.startswith("opt_") else _type_name(spec.load().function, p.name),
            "multiple": bool(getattr(p, "multiple", False)),
            "required": p.required,
            "default": p.default if not callable(p.default) else None,
            "help": getattr(p, "help", None),
        }
        for p in command.params
        if p.name not in COMMON  # the shared options are the same everywhere; the safety flags are listed
    ]
    data = {**_listing(spec), "registry": spec.entry, "map": spec.map_entry, "options": options}
    if _options(ctx, json_flag).json:
        _print_json("cap.show", data)
        return
    print(spec.id)
    for key in ("description", "phase", "safety", "default_mode", "approval", "lifecycle", "domain", "command"):
        print(f"{key}: {data[key]}")
    print(f"map: plugin={spec.map_entry.get('plugin')} script={spec.map_entry.get('script')}")
    for opt in options:
        print(f"option: {', '.join(opt['flags']) or opt['name']} ({opt['type']}) {opt['help'] or ''}".rstrip())


@cap_app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
)
def cap_run(ctx: typer.Context, cap_id: Annotated[str, typer.Argument(metavar="CAPABILITY")]) -> None:
    """Run a capability: `spine-comms cap run <id> -- [options]` (the spine's calling form)."""
    _spec_or_exit(cap_id)
    args = list(ctx.args)
    if args[:1] == ["--"]:  # like the spine's cap.sh, strip one leading separator
        args = args[1:]
    root_group = ctx.find_root().command
    command = root_group.get_command(ctx.find_root(), cap_id)
    with command.make_context(cap_id, args, parent=ctx) as sub:
        sub.command.invoke(sub)


def _root_dir(ctx: typer.Context, root: str | None) -> Path:
    from spine_comms.core.root import find_root

    try:
        return find_root(_options(ctx, root=root).root).receipts_dir
    except SpineCommsError as exc:
        raise _fail(exc.message) from None


@receipts_app.command("list")
def receipts_list(
    ctx: typer.Context,
    capability: Annotated[str | None, typer.Argument(help="Only this capability.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 20,
    root: RootOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """List receipts, newest first."""
    from spine_comms.core.receipts import list_receipts

    found = list_receipts(_root_dir(ctx, root), capability)[:limit]
    if _options(ctx, json_flag).json:
        _print_json("receipts.list", {"count": len(found), "receipts": [r.to_dict() for r in found]})
        return
    for r in found:
        print(f"{r.generated:20}  {r.status:7}  exit={r.exit_code}  {r.capability}  {r.run_key}")
    if not found:
        print("no receipts", file=sys.stderr)


def _show(directory: Path, as_json: bool) -> None:
    doc, md = directory / "receipt.json", directory / "receipt.md"
    if as_json:
        if not doc.is_file():
            raise _fail(f"{directory} has no receipt.json (written by the spine's runner alone?)", ExitCode.FAIL)
        sys.stdout.write(doc.read_text(encoding="utf-8"))
        return
    sys.stdout.write(md.read_text(encoding="utf-8") if md.is_file() else doc.read_text(encoding="utf-8"))


@receipts_app.command("show")
def receipts_show(
    ctx: typer.Context,
    run_key: Annotated[str, typer.Argument(help="The run key (with or without the leading R).")],
    root: RootOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Show one receipt: receipt.md, or receipt.json with --json."""
    base = _root_dir(ctx, root)
    name = run_key if run_key.startswith("RCAP-") or run_key.startswith("RS") else f"R{run_key}"
    directory = base / name
    if "/" in run_key or not directory.is_dir():
        raise _fail(f"no receipt {run_key} under {base}", ExitCode.FAIL)
    _show(directory, _options(ctx, json_flag).json)


@receipts_app.command("latest")
def receipts_latest(
    ctx: typer.Context,
    capability: Annotated[str, typer.Argument(help="The capability id.")],
    root: RootOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Show the latest receipt of a capability (exit 1 when there is none)."""
    from spine_comms.core.receipts import list_receipts

    found = list_receipts(_root_dir(ctx, root), capability)
    if not found:
        raise _fail(f"no receipt for {capability}", ExitCode.FAIL)
    _show(found[0].directory, _options(ctx, json_flag).json)


def _type_name(function, name: str) -> str:
    """The option's Python type as written in the capability (str, float, list[str] ...)."""
    import types
    import typing

    hint = typing.get_type_hints(function).get(name)
    parts = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    names = [getattr(p, "__name__", None) if not typing.get_args(p) else str(p) for p in parts if p is not type(None)]
    return " | ".join(n or str(p) for n, p in zip(names, parts, strict=False)) or "flag"
