"""The command line, built from the registry.

`spine-comms <capability.id> [options]` for every registered capability, plus the
`cap` and `receipts` groups. Capability modules are imported only when their
command runs or shows its help, which keeps `spine-comms --help` fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from spine_comms import __version__
from spine_comms.core.options import GlobalOptions
from spine_comms.core.registry import CapabilitySpec, load_registry
from spine_comms.option_types import DebugOpt, JsonOpt, NoColorOpt, RootOpt, StrictOpt

COMMON = {
    "opt_root": (RootOpt, None),
    "opt_json": (JsonOpt, False),
    "opt_strict": (StrictOpt, False),
    "opt_debug": (DebugOpt, False),
    "opt_no_color": (NoColorOpt, False),
}

EXIT_CODES_HELP = (
    "Exit codes: 0 ok (and warn unless --strict), 1 fail or partial, 2 usage or invalid contract, "
    "3 could not evaluate, 70 internal error."
)


def _options_from(values: dict[str, Any]) -> GlobalOptions:
    return GlobalOptions(
        root=values.pop("opt_root", None),
        json=values.pop("opt_json", False),
        strict=values.pop("opt_strict", False),
        debug=values.pop("opt_debug", False),
        no_color=values.pop("opt_no_color", False),
    )


def _parent_options(ctx: typer.Context | None) -> GlobalOptions:
    root = ctx.find_root() if ctx else None
    return root.obj if root is not None and isinstance(root.obj, GlobalOptions) else GlobalOptions()


def _panel(spec: CapabilitySpec) -> str:
    registry = load_registry()
    return registry.phases.get(spec.phase, spec.phase or "Other")


def build_capability_command(spec: CapabilitySpec) -> typer.main.TyperCommand:
    """A Typer command whose options are the capability's own plus the shared ones."""
    import inspect
    import typing
    from inspect import Parameter

    from spine_comms.core.runner import execute

    code = spec.load()
    function = code.function
    hints = typing.get_type_hints(function, include_extras=True)
    own = list(inspect.signature(function).parameters.values())[1:]  # the first is the run context
    params = [p.replace(annotation=hints.get(p.name, p.annotation), kind=Parameter.KEYWORD_ONLY) for p in own]
    params += [
        Parameter(name, Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, (ann, default) in COMMON.items()
    ]
    params.append(Parameter("typer_context", Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def run_capability(**values: Any) -> None:
        typer_context = values.pop("typer_context")
        options = _parent_options(typer_context).merged(_options_from(values))
        code_ = execute(
            capability=spec.id,
            safety=code.safety,
            approval=code.approval,
            function=function,
            kwargs=values,
            options=options,
            argv=["spine-comms", *sys.argv[1:]],
        )
        raise typer.Exit(code_)

    run_capability.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run_capability.__annotations__ = {p.name: p.annotation for p in params}
    doc = inspect.cleandoc(function.__doc__ or spec.description)
    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command(
        name=spec.id,
        help=f"{doc}\n\n{EXIT_CODES_HELP}",
        short_help=spec.description,
        rich_help_panel=_panel(spec),
    )(run_capability)
    command = typer.main.get_command(app)
    for param in command.params:
        # Typer would show the Python type (<list[str]>, <float range>); the option's own name
        # in capitals (--domain DOMAIN) says what to write.
        if param.param_type_name == "option" and not param.is_flag and param.metavar is None:
            param.metavar = param.opts[0].lstrip("-").upper().replace("-", "_")
    return command


class LazyCapabilityCommand(TyperCommand):
    """Stands in for a capability in listings; loads the real command when it is used."""

    def __init__(self, spec: CapabilitySpec):
        super().__init__(name=spec.id, help=spec.description, short_help=spec.description, rich_help_panel=_panel(spec))
        self.spec = spec
        self._real = None

    def real(self):
        if self._real is None:
            self._real = build_capability_command(self.spec)
        return self._real

    def make_context(self, info_name, args, parent=None, **extra):
        return self.real().make_context(info_name, args, parent=parent, **extra)


class SpineGroup(TyperGroup):
    """The root group: fixed groups (cap, receipts) plus one lazy command per capability."""

    def list_commands(self, ctx) -> list[str]:
        return [*self.commands, *load_registry().capabilities]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        spec = load_registry().get(cmd_name)
        return LazyCapabilityCommand(spec) if spec else None

    def format_commands(self, ctx, formatter) -> None:
        """Commands grouped by phase, in registry order (plain text: rich help costs 100 ms a run)."""
        width = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        sections = {"Registry and receipts": [(n, c.get_short_help_str(width)) for n, c in self.commands.items()]}
        for title, specs in load_registry().by_phase().items():
            sections[title] = [(s.id, s.description) for s in specs]
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:  # a mistyped capability id: suggest the close ones
            from difflib import get_close_matches

            message = getattr(exc, "message", None)
            close = get_close_matches(args[0], self.list_commands(ctx), n=3) if args and message else []
            if close and "Did you mean" not in message:
                exc.message = f"{message.rstrip('.')}. Did you mean {', '.join(close)}?"
            raise


def _version(value: bool) -> None:
    if value:
        print(f"spine-comms {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    cls=SpineGroup,
    name="spine-comms",
    help=(
        "Make a self-hosted mail server the communications layer for AI agents, and prove that it works.\n\n"
        "Run a capability as `spine-comms <capability.id> [options]`; each writes a receipt under "
        "<root>/receipts/sessions/. " + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    opt_root: RootOpt = None,
    opt_json: JsonOpt = False,
    opt_strict: StrictOpt = False,
    opt_debug: DebugOpt = False,
    opt_no_color: NoColorOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(opt_root, opt_json, opt_strict, opt_debug, opt_no_color)


from spine_comms.bootstrap.init_root import init_command  # noqa: E402
from spine_comms.groups import cap_app, receipts_app  # noqa: E402
from spine_comms.mcp.command import mcp_app  # noqa: E402

app.add_typer(cap_app, name="cap", rich_help_panel="Registry and receipts")
app.add_typer(receipts_app, name="receipts", rich_help_panel="Registry and receipts")
app.command("init", rich_help_panel="Start here")(init_command)
app.add_typer(mcp_app, name="mcp", rich_help_panel="Agents")


def run() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
