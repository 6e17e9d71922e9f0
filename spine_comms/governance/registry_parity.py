"""capabilities.verify: the spine's registry gates (D67, D63, D279) over this project or a spine checkout.

By default it reads this project's capabilities/ (or `--registry DIR` in the same
layout); with `--spine-root DIR` the spine's ops/capabilities.yaml,
ops/bindings/capability_map.yaml and ops/plugins/MANIFEST.yaml. One check per
rule, naming the offending capabilities; the summary carries the spine's own
lines (`D67 PASS: capability map covers all N capabilities`) so its readers
can parse ours. On top of the spine's rules: every command must run a
capability the spine-comms CLI has (`spine-comms <id>` here, or a shim written
by spine.install in a spine checkout).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError, Problem, UsageError
from spine_comms.core.registry_rules import (
    RegistryFiles,
    RuleOutcome,
    command_target,
    d63,
    d67,
    d279,
    spine_lines,
)
from spine_comms.core.result import Check, Result, Status
from spine_comms.governance import shim

SPINE_REGISTRY = "ops/capabilities.yaml"
SPINE_MAP = "ops/bindings/capability_map.yaml"
SPINE_MANIFEST = "ops/plugins/MANIFEST.yaml"

SpineRootOpt = Annotated[
    Path | None,
    typer.Option("--spine-root", metavar="DIR", help="Check this spine checkout (ops/capabilities.yaml, "
                 "ops/bindings/capability_map.yaml, ops/plugins/MANIFEST.yaml) instead of this project's registry."),
]  # fmt: skip
RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", metavar="DIR", help="A directory holding capabilities.yaml and capability_map.yaml "
                 "in this project's layout (default: the registry spine-comms itself is built from)."),
]  # fmt: skip


@capability("capabilities.verify", safety="read-only", approval="auto")
def capabilities_verify(ctx: RunContext, spine_root: SpineRootOpt = None, registry: RegistryOpt = None) -> Result:
    """The spine's registry gates: D67 (the same ids in registry and map), D63 (version, updated, description,
    command, safety and approval enums, outputs, requires, touches_api preconditions, arg_protocol, ./ command
    targets that exist and are executable) and, in a spine checkout, D279 (MANIFEST scripts and capabilities
    exist); plus every command running a capability the spine-comms CLI has. Prints the spine's `D67 PASS: ...`
    lines; exit 1 when a rule fails."""
    if spine_root is not None and registry is not None:
        raise UsageError("give --spine-root or --registry, not both")
    files = read_spine(spine_root) if spine_root is not None else read_project(registry)
    outcomes = [d67(files), *d63(files), d279(files), cli_commands(files)]
    result = Result()
    for outcome in outcomes:
        result.add(_check(outcome))
    lines = spine_lines(outcomes, files)
    for warning in files.warnings:  # the spine's tools accept these; say so without failing the run
        ctx.log(escape(warning), level="warn")
    result.summary = [f"{files.layout} registry {files.registry_path} ({len(files.caps)} capabilities)", *lines]
    result.summary += [f"warning: {w}" for w in files.warnings]
    if files.baseline_note:
        result.summary.append(f"arg_protocol: {files.baseline_note}")
    result.data = {
        "layout": files.layout,
        "registry": str(files.registry_path),
        "map": str(files.map_path),
        "manifest": str(files.manifest_path) if files.manifest_path else None,
        "capabilities": len(files.caps),
        "arg_protocol_baseline": files.baseline_note,
        "lines": lines,
        "failing_rules": [o.rule for o in outcomes if o.violations],
        "warnings": files.warnings,
    }
    return result


def _check(outcome: RuleOutcome) -> Check:
    if outcome.skipped:
        return Check(
            id=outcome.rule,
            status=Status.SKIP,
            detail=f"{outcome.gate}: not applied: {outcome.skipped}",
            subject=outcome.gate,
        )
    if not outcome.violations:
        return Check(
            id=outcome.rule,
            status=Status.OK,
            detail=f"{outcome.gate}: {outcome.title} ({outcome.checked} checked)",
            subject=outcome.gate,
            expected=outcome.title,
            actual="no violations",
        )
    shown = "; ".join(f"{c + ': ' if c else ''}{m}" for c, m in outcome.violations[:5])
    more = f" (+{len(outcome.violations) - 5} more)" if len(outcome.violations) > 5 else ""
    evidence = {"violations": [{"capability": c, "problem": m} for c, m in outcome.violations]}
    return Check(
        id=outcome.rule,
        status=Status.FAIL,
        detail=f"{outcome.gate}: {shown}{more}",
        subject=outcome.gate,
        expected=outcome.title,
        actual=outcome.offenders,
        evidence=evidence,
    )


def _mapping(path: Path, what: str, *, spine_owned: bool = False, warnings: list[str] | None = None,
             repeated: list[str] | None = None) -> dict:  # fmt: skip
    """A registry file's mapping. The spine's files are read as its gates read them (yq, PyYAML): a duplicate
    key is a warning (added to `warnings`) and the last one wins; a repeated capability id is added to
    `repeated` (yq lists it twice, so the spine's D67 counts it twice). This project's files stay strict."""
    from spine_comms.core.yamlfile import load_yaml

    doc = load_yaml(path, spine_owned=spine_owned)
    if warnings is not None:
        warnings += [str(w) for w in doc.warnings]
    if repeated is not None:
        repeated += [str(key[1]) for key in doc.repeated if len(key) == 2 and key[0] == "capabilities"]
    data = doc.data
    if not isinstance(data, dict):
        problem = Problem(str(path), 1, "", "expected a mapping")
        raise ContractError(f"{path}: {what} is not a mapping", problems=[problem])
    caps = data.get("capabilities")
    if what != "manifest" and not isinstance(caps, dict):
        problem = Problem(str(path), 1, "capabilities", "expected a mapping of capability ids")
        raise ContractError(f"{path}: no capabilities mapping", problems=[problem])
    return data


def read_project(directory: Path | None) -> RegistryFiles:
    from spine_comms.core.registry import REGISTRY_DIR

    directory = (directory or REGISTRY_DIR).expanduser()
    if not directory.is_dir():
        raise UsageError(f"registry directory {directory} does not exist")
    registry_path, map_path = directory / "capabilities.yaml", directory / "capability_map.yaml"
    return RegistryFiles(
        "project", directory, registry_path, map_path, _mapping(registry_path, "registry"), _mapping(map_path, "map"),
        baseline_note="required for every capability (this project's rule)",
    )  # fmt: skip


def read_spine(spine_root: Path) -> RegistryFiles:
    root = spine_root.expanduser().resolve()
    registry_path, map_path, manifest_path = root / SPINE_REGISTRY, root / SPINE_MAP, root / SPINE_MANIFEST
    if not registry_path.is_file():
        raise UsageError(f"{root} is not a spine checkout: {SPINE_REGISTRY} not found")
    warnings: list[str] = []
    repeated: dict[str, list[str]] = {"registry": [], "map": [], "manifest": []}

    def spine_file(path: Path, what: str) -> dict:
        return _mapping(path, what, spine_owned=True, warnings=warnings, repeated=repeated[what])

    files = RegistryFiles(
        "spine", root, registry_path, map_path, spine_file(registry_path, "registry"), spine_file(map_path, "map"),
        manifest_path if manifest_path.is_file() else None,
        spine_file(manifest_path, "manifest") if manifest_path.is_file() else None,
    )  # fmt: skip
    files.warnings, files.registry_repeated, files.map_repeated = warnings, repeated["registry"], repeated["map"]
    files.baseline, files.baseline_note = merge_base_capabilities(root)
    return files


def merge_base_capabilities(root: Path) -> tuple[dict | None, str]:
    """The registry's capabilities at `git merge-base HEAD origin/main`, as the spine's D63 compares.

    Exactly the spine's D63: the old registry is read as yq reads it (a duplicate key: the last wins), and
    when there is no merge-base, no registry there, or it does not parse, nothing counts as new or changed,
    so arg_protocol is required of no entry (None: the note says why)."""
    git = shutil.which("git")
    if git is None:
        return None, "not required (git not found, so no merge-base: the spine's D63 then requires it of none)"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([git, "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False)

    base = run("merge-base", "HEAD", "origin/main")
    if base.returncode != 0 or not base.stdout.strip():
        return None, "not required (no merge-base with origin/main: the spine's D63 then requires it of none)"
    sha = base.stdout.strip()
    shown = run("show", f"{sha}:{SPINE_REGISTRY}")
    if shown.returncode != 0:
        return None, f"not required (no registry at merge-base {sha[:12]}: the spine's D63 then requires it of none)"
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "capabilities.yaml"
        old.write_text(shown.stdout, encoding="utf-8")
        try:
            caps = _mapping(old, "registry", spine_owned=True).get("capabilities")
        except ContractError:
            caps = None
    if not caps:
        return (
            None,
            f"not required (the registry at merge-base {sha[:12]} does not parse: the spine's D63 then "
            "requires it of none)",
        )
    return caps, f"required on entries new or changed since merge-base {sha[:12]}"


def cli_commands(files: RegistryFiles) -> RuleOutcome:
    """Every command runs a capability the spine-comms CLI has, with code that loads."""
    out = RuleOutcome("registry.cli.command", "CLI", "commands run spine-comms capabilities")
    for cap_id, entry in files.caps.items():
        command = entry.get("command") if isinstance(entry, dict) else None
        if files.layout == "project":
            out.checked += 1
            try:
                tokens = shlex.split(str(command or ""))
            except ValueError:
                tokens = []
            if len(tokens) < 2 or tokens[0] != "spine-comms":
                out.violations.append((cap_id, f"command {command!r} does not run `spine-comms <capability>`"))
                continue
            runs = tokens[1]
        else:
            target = command_target(command)
            runs = shim.read_capability(files.base / target) if target else None
            if runs is None:
                continue  # one of the spine's own scripts
            out.checked += 1
            if runs != cap_id:
                out.violations.append((cap_id, f"its shim {target} runs {runs}"))
                continue
        problem = cli_problem(runs)
        if problem:
            out.violations.append((cap_id, problem))
    if not out.checked:
        out.skipped = "no spine-comms shim registered"
    return out


def cli_problem(cap_id: str) -> str | None:
    from spine_comms.core.registry import load_registry

    spec = load_registry().get(cap_id)
    if spec is None:
        return f"{cap_id} is not a spine-comms capability"
    try:
        spec.load()
    except (ImportError, LookupError) as exc:
        return f"its code does not load ({exc})"
    return None
