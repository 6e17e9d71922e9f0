"""Was it exactly this run? A receipt's recorded arguments, parsed by the capability's own options.

A proof names the run that counts (`verify.pack.run communications`, `sieve.apply --execute`); a
narrower or different run (`--gate D903`, `--rollback`, `--mailbox ops`) must never stand in for it.
Matching words on the command line cannot tell that (`communications` is on the line of a one-gate
run too), so both the proof's arguments and the run's are parsed with the capability's options and
every parameter must be equal, defaults included: a parameter the proof does not name must have
been left at its default. Only options that cannot narrow what a run proves are not compared:
the shared ones (--root, --json, --strict, --debug, --no-color), NEVER_NARROWING, and those the
proof itself allows (the content of a run, such as an event's --summary, rather than its scope).
"""

from __future__ import annotations

import enum
import inspect
import typing
from functools import cache
from inspect import Parameter
from pathlib import Path
from typing import Any

SHARED_FLAGS = ("--json", "--strict", "--debug", "--no-color")
SHARED_VALUED = ("--root",)
# Where reports go, how many at once, approval, a time limit: none makes a run prove less.
NEVER_NARROWING = ("--yes", "--junit", "--prom", "--jobs", "--timeout")
# The runner's safety flags (core.approval): not the capability's options. What they decide, acting or
# a dry run, is compared as a mode, the capability's default mode standing in when neither is given.
SAFETY_FLAGS = ("--execute", "--dry-run", "--yes")


def arguments_of(capability: str, argv: list[str]) -> list[str] | None:
    """The arguments after the capability id in a recorded argv (`spine-comms [shared] <id> ...` or
    `spine-comms cap run <id> -- ...`), shared options dropped; None when the id is not on it."""
    tokens = [str(t) for t in argv[1:]]
    if capability not in tokens:
        return None
    rest = tokens[tokens.index(capability) + 1 :]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    kept, skip = [], False
    for token in rest:
        if skip:
            skip = False
        elif token in SHARED_FLAGS or token.startswith(tuple(f"{o}=" for o in SHARED_VALUED)):
            continue
        elif token in SHARED_VALUED:
            skip = True
        else:
            kept.append(token)
    return kept


def same_run(capability: str, run_argv: list[str], proof_args: list[str], allow: list[str] = ()) -> bool:
    """True when the recorded run is exactly the run the proof names; options in `allow` (the proof's own
    list, for options that are a run's content rather than its scope) may take any value."""
    run = arguments_of(capability, run_argv)
    if run is None:
        return False
    command = _command(capability)
    if command is None:  # not a capability of this toolkit: the same words, all of them
        return sorted(run) == sorted(proof_args)
    if _mode(capability, proof_args) != _mode(capability, run):
        return False
    free = _names(command, allow)
    wanted, got = _parse(command, _unsafe(proof_args)), _parse(command, _unsafe(run))
    if wanted is None or got is None:
        return False
    return {k: v for k, v in wanted.items() if k not in free} == {k: v for k, v in got.items() if k not in free}


def proof_args_problem(capability: str, proof_args: list[str], allow: list[str] = ()) -> str | None:
    """Why a proof's own arguments cannot name a run of the capability (then nothing can prove it)."""
    command = _command(capability)
    if command is None:
        return None
    if _parse(command, _unsafe(proof_args)) is None:
        return f"{' '.join(proof_args) or '(no arguments)'} are not arguments {capability} accepts"
    unknown = [o for o in allow if not any(o in getattr(p, "opts", ()) for p in command.params)]
    if unknown:
        return f"allow: {', '.join(unknown)} not an option of {capability}"
    return None


def _unsafe(args: list[str]) -> list[str]:
    return [a for a in args if a not in SAFETY_FLAGS]


def _mode(capability: str, args: list[str]) -> str:
    """ "execute" or "dry-run": what the runner decides for these arguments."""
    from spine_comms.core.registry import load_registry

    spec = load_registry().get(capability)
    if spec is None or spec.safety == "read-only":
        return "read-only"
    if "--dry-run" in args:
        return "dry-run"
    if "--execute" in args:
        return "execute"
    return "execute" if spec.acts_by_default else "dry-run"


def _names(command: Any, options: list[str]) -> set[str]:
    return {p.name for p in command.params if set(getattr(p, "opts", ())) & set(options)}


def _parse(command: Any, args: list[str]) -> dict[str, Any] | None:
    """Every parameter's value, defaults included. Required options left out are not an error: a proof
    of a capability that needs --summary names none and allows any."""
    try:
        ctx = command.make_context(command.name, list(args))
    except Exception:  # the parser's usage errors (and --help's exit): these are not a run's arguments
        return None
    ignored = _names(command, list(NEVER_NARROWING))
    return {name: _plain(value) for name, value in ctx.params.items() if name not in ignored}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value] or None  # no value given and an empty list mean the same
    return value


@cache
def _command(capability: str) -> Any:
    """The capability's options as a click command (its own parameters, as the CLI declares them)."""
    import typer

    from spine_comms.core.registry import load_registry

    spec = load_registry().get(capability)
    if spec is None:
        return None
    try:
        function = spec.load().function
    except Exception:  # registered, but its code is not installed: compare words, as for others
        return None
    hints = typing.get_type_hints(function, include_extras=True)
    own = list(inspect.signature(function).parameters.values())[1:]  # the first is the run context
    params = [p.replace(annotation=hints.get(p.name, p.annotation), kind=Parameter.KEYWORD_ONLY) for p in own]

    def run(**values: Any) -> None:  # never called: only parsed against
        return None

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command(name=capability)(run)
    command = typer.main.get_command(app)
    for param in command.params:
        param.required = False  # a proof may leave out what a run must give (an event's --summary)
    return command
