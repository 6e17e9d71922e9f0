"""The command line, built from the registry.

`spine-comms <capability.id> [options]` for every registered capability, plus the
`cap` and `receipts` groups. Capability modules are imported only when their
command runs or shows its help, which keeps `spine-comms --help` fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from spine_comms import __version__
from spine_comms.bootstrap.init_root import init_command
from spine_comms.capability_command import EXIT_CODES_HELP, LazyCapabilityCommand
from spine_comms.core.options import GlobalOptions
from spine_comms.core.registry import load_registry
from spine_comms.groups import cap_app, receipts_app
from spine_comms.option_types import ClickException, DebugOpt, JsonOpt, NoColorOpt, RootOpt, StrictOpt


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

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, but a command line the option parser refuses still gets its one envelope with --json."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = sys.argv[1:] if args is None else list(args)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            if "--json" in argv:
                _refused_envelope(argv, exc)
            else:
                exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

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


def _refused_envelope(argv: list[str], exc: ClickException) -> None:
    """The usage error as the one JSON envelope on stdout (no receipt: the run never started), and on stderr."""
    from spine_comms.core.output import refusal_envelope, render_json

    message = exc.format_message()
    exc.show()
    hint = None
    context = getattr(exc, "ctx", None)
    if context is not None:
        hint = f"see `{context.command_path} --help`"
    envelope = refusal_envelope(_named_command(argv), message, [message], hint, exit_code=exc.exit_code)
    sys.stdout.write(render_json(envelope))
    sys.stdout.flush()


def _named_command(argv: list[str]) -> str:
    """The capability (or cap/receipts command) the refused command line names, as well as it can be told."""
    words = [a for a in argv[: argv.index("--")] if not a.startswith("-")] if "--" in argv else argv
    words = [a for a in words if not a.startswith("-")]
    registry = load_registry()
    for word in words:
        if word in registry.capabilities:
            return word
    if words[:1] in (["cap"], ["receipts"]):
        return ".".join(words[:2])
    return "spine-comms"


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


app.add_typer(cap_app, name="cap", rich_help_panel="Registry and receipts")
app.add_typer(receipts_app, name="receipts", rich_help_panel="Registry and receipts")
app.command("init", rich_help_panel="Start here")(init_command)


def run() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
