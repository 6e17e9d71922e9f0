"""One capability as a command: its own options, the shared ones, and the safety flags from the registry.

The root group (cli.py) and `cap show` (groups.py) both build commands here, so
neither imports the other. A mutating capability gets `--execute` and `--dry-run`,
a manual-approval one `--yes` too; what they mean is decided in core.approval by
the runner, never by the capability.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from spine_comms.core.approval import SafetyFlags
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
# Parameter names only the runner fills: a capability's `dry_run` is the runner's decision.
RUNNER_OWNED = ("dry_run",)

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


def _flags_from(values: dict[str, Any]) -> SafetyFlags:
    return SafetyFlags(
        execute=values.pop("opt_execute", False),
        dry_run=values.pop("opt_dry_run", False),
        yes=values.pop("opt_yes", False),
    )


def safety_options(spec: CapabilitySpec) -> dict[str, tuple[Any, Any]]:
    """The safety flags of a capability, with help that says what its default is."""
    if spec.safety == "read-only":
        return {}
    acts = spec.acts_by_default
    options = {
        "opt_execute": (
            Annotated[bool, typer.Option("--execute", help="Act (the default here)." if acts else
                                         "Act. Without it: a dry run that changes nothing.")],
            False,
        ),
        "opt_dry_run": (
            Annotated[bool, typer.Option("--dry-run", help="Change nothing: show what would be done." +
                                         ("" if acts else " The default here."))],
            False,
        ),
    }  # fmt: skip
    if spec.approval != "auto":
        options["opt_yes"] = (
            Annotated[bool, typer.Option(
                "--yes", help=f"Approve acting ({spec.approval} approval). Also approved by SPINE_CAP_AUTO_APPROVE or "
                "OPS_CAP_AUTO_APPROVE=yes, or when run by the spine's runner (SPINE_CAP_RUN_KEY).")],
            False,
        )  # fmt: skip
    return options


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
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation), kind=Parameter.KEYWORD_ONLY)
        for p in own
        if p.name not in RUNNER_OWNED
    ]
    shared = {**COMMON, **safety_options(spec)}
    params += [
        Parameter(name, Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, (ann, default) in shared.items()
    ]
    params.append(Parameter("typer_context", Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def run_capability(**values: Any) -> None:
        typer_context = values.pop("typer_context")
        options = _parent_options(typer_context).merged(_options_from(values))
        flags = _flags_from(values)
        code_ = execute(
            capability=spec.id,
            safety=spec.safety,
            approval=spec.approval,
            default_mode=spec.default_mode,
            flags=flags,
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
