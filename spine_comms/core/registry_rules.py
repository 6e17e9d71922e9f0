"""The spine's registry gates as pure rules over loaded data: D67, D63 and D279.

D67: capabilities.yaml and capability_map.yaml list the same ids.
D63: version and updated stamps; per capability description, command, safety and
approval enums, outputs a non-empty list, requires naming existing capabilities,
touches_api requiring secrets.binding and secrets.auth.status, arg_protocol valid
(and present on new or changed entries), a `./` command target that exists and
is executable.
D279: the plugin MANIFEST lists scripts that exist and capabilities that exist.

Each rule returns its violations as (capability id, message) pairs, so the
capability can make one check per rule and print the spine's own lines.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAFETY = ("read-only", "mutating", "destructive")
APPROVAL = ("auto", "manual", "operator")
ARG_PROTOCOLS = ("passthrough", "argparse", "positional", "none")
SECRETS_PRECONDITIONS = ("secrets.binding", "secrets.auth.status")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class RegistryFiles:
    """One registry as read from disk: this project's layout or a spine checkout's."""

    layout: str  # "project" | "spine"
    base: Path  # `./` commands resolve against it (the spine checkout)
    registry_path: Path
    map_path: Path
    registry: dict[str, Any]
    cmap: dict[str, Any]
    manifest_path: Path | None = None
    manifest: dict[str, Any] | None = None
    # The capabilities at the merge-base with origin/main; None: every entry needs arg_protocol.
    baseline: dict[str, Any] | None = None
    baseline_note: str = ""

    @property
    def caps(self) -> dict[str, Any]:
        caps = self.registry.get("capabilities")
        return caps if isinstance(caps, dict) else {}

    @property
    def mapped(self) -> dict[str, Any]:
        caps = self.cmap.get("capabilities")
        return caps if isinstance(caps, dict) else {}


@dataclass
class RuleOutcome:
    rule: str  # the stable check id, e.g. registry.d63.outputs
    gate: str  # D67 | D63 | D279 | CLI
    title: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    checked: int = 0
    skipped: str | None = None  # why the rule did not apply

    @property
    def offenders(self) -> list[str]:
        return sorted({cap for cap, _ in self.violations if cap})


def d67(files: RegistryFiles) -> RuleOutcome:
    listed, mapped = set(files.caps), set(files.mapped)
    out = RuleOutcome("registry.d67.map_parity", "D67", "registry and map list the same capabilities")
    out.checked = len(listed | mapped)
    out.violations += [(cap, "MISSING from map") for cap in sorted(listed - mapped)]
    out.violations += [(cap, "PHANTOM in map") for cap in sorted(mapped - listed)]
    return out


def d63(files: RegistryFiles) -> list[RuleOutcome]:
    caps = files.caps
    rules = [
        _header(files),
        _each(caps, "registry.d63.required_fields", "description and command present", _required),
        _each(caps, "registry.d63.safety", "safety is read-only, mutating or destructive",
              lambda e: _enum(e, "safety", SAFETY)),
        _each(caps, "registry.d63.approval", "approval is auto, manual or operator",
              lambda e: _enum(e, "approval", APPROVAL)),
        _each(caps, "registry.d63.outputs", "outputs is a non-empty list", _outputs),
        _each(caps, "registry.d63.requires", "requires lists existing capabilities", lambda e: _requires(e, caps)),
        _each(caps, "registry.d63.touches_api", "touches_api requires secrets.binding and secrets.auth.status",
              _touches_api),
        _arg_protocol(files),
        _command_targets(files),
    ]  # fmt: skip
    return rules


def _header(files: RegistryFiles) -> RuleOutcome:
    out = RuleOutcome("registry.d63.header", "D63", "version non-empty, updated YYYY-MM-DD", checked=2)
    version, updated = files.registry.get("version"), files.registry.get("updated")
    if version in (None, ""):
        out.violations.append(("", "version is empty or missing"))
    if not _DATE.match(str(updated or "")):
        out.violations.append(("", f"updated {updated!r} is not YYYY-MM-DD"))
    return out


def _each(caps: dict, rule: str, title: str, test: Callable[[Any], list[str]]) -> RuleOutcome:
    out = RuleOutcome(rule, "D63", title, checked=len(caps))
    for cap_id, entry in caps.items():
        problems = [f"entry is {type(entry).__name__}, not a mapping"] if not isinstance(entry, dict) else test(entry)
        out.violations += [(str(cap_id), p) for p in problems]
    return out


def _required(entry: dict) -> list[str]:
    return [f"{name} missing or empty" for name in ("description", "command") if not str(entry.get(name) or "").strip()]


def _enum(entry: dict, name: str, allowed: tuple[str, ...]) -> list[str]:
    value = entry.get(name)
    return [] if value in allowed else [f"{name} {value!r} not in {'|'.join(allowed)}"]


def _outputs(entry: dict) -> list[str]:
    outputs = entry.get("outputs")
    return [] if isinstance(outputs, list) and outputs else [f"outputs {outputs!r} is not a non-empty list"]


def _requires(entry: dict, caps: dict) -> list[str]:
    requires = entry.get("requires")
    if requires is None:
        return []
    if not isinstance(requires, list):
        return [f"requires {requires!r} is not a list"]
    return [f"requires unknown capability {r}" for r in requires if r not in caps]


def _touches_api(entry: dict) -> list[str]:
    if entry.get("touches_api") is not True:
        return []
    requires = entry.get("requires") if isinstance(entry.get("requires"), list) else []
    return [f"touches_api: true but requires lacks {need}" for need in SECRETS_PRECONDITIONS if need not in requires]


def _arg_protocol(files: RegistryFiles) -> RuleOutcome:
    caps = files.caps
    out = RuleOutcome("registry.d63.arg_protocol", "D63", "arg_protocol valid, present on new or changed entries")
    out.checked = len(caps)
    base = files.baseline
    for cap_id, entry in caps.items():
        if not isinstance(entry, dict):
            continue
        value = entry.get("arg_protocol")
        if value is not None and value not in ARG_PROTOCOLS:
            out.violations.append((cap_id, f"arg_protocol {value!r} not in {'|'.join(ARG_PROTOCOLS)}"))
        elif value is None:
            if base is None:
                out.violations.append((cap_id, "arg_protocol missing"))
            elif cap_id not in base:
                out.violations.append((cap_id, "arg_protocol missing on a capability new since the merge-base"))
            elif base[cap_id] != entry:
                out.violations.append((cap_id, "arg_protocol missing on a capability changed since the merge-base"))
    return out


def command_target(command: Any) -> str | None:
    """The first token of a command when it is a `./` path (the only kind D63 checks on disk)."""
    try:
        tokens = shlex.split(str(command or ""))
    except ValueError:
        return None
    return tokens[0] if tokens and tokens[0].startswith("./") else None


def _command_targets(files: RegistryFiles) -> RuleOutcome:
    out = RuleOutcome("registry.d63.command_target", "D63", "a ./ command target exists and is executable")
    for cap_id, entry in files.caps.items():
        target = command_target(entry.get("command")) if isinstance(entry, dict) else None
        if target is None:
            continue
        out.checked += 1
        path = files.base / target
        if not path.is_file():
            out.violations.append((cap_id, f"command target {target} does not exist"))
        elif not os.access(path, os.X_OK):
            out.violations.append((cap_id, f"command target {target} is not executable"))
    if not out.checked:
        out.skipped = "no command starts with ./"
    return out


def d279(files: RegistryFiles) -> RuleOutcome:
    out = RuleOutcome("registry.d279.manifest", "D279", "MANIFEST scripts exist, MANIFEST capabilities exist")
    if files.manifest is None:
        out.skipped = "no ops/plugins/MANIFEST.yaml" if files.layout == "spine" else "a spine checkout's rule"
        return out
    plugins = files.manifest.get("plugins")
    if not isinstance(plugins, list):
        out.violations.append(("", "plugins is not a list"))
        return out
    for plugin in plugins:
        if not isinstance(plugin, dict):
            out.violations.append(("", f"plugin entry {plugin!r} is not a mapping"))
            continue
        name = str(plugin.get("name") or "?")
        directory = files.base / str(plugin.get("path") or f"ops/plugins/{name}")
        for script in plugin.get("scripts") or []:
            out.checked += 1
            if not (directory / str(script)).is_file():
                out.violations.append(("", f"plugin {name}: script {script} does not exist"))
        for cap in plugin.get("capabilities") or []:
            out.checked += 1
            if cap not in files.caps:
                out.violations.append((str(cap), f"plugin {name}: capability {cap} is not in capabilities.yaml"))
    return out


def spine_lines(outcomes: list[RuleOutcome], files: RegistryFiles) -> list[str]:
    """The lines the spine's gates print, so its failure statistics can read ours."""
    lines: list[str] = []
    by_gate: dict[str, list[RuleOutcome]] = {}
    for outcome in outcomes:
        by_gate.setdefault(outcome.gate, []).append(outcome)
    for gate, group in by_gate.items():
        violations = [v for o in group for v in o.violations]
        applied = [o for o in group if not o.skipped]
        if gate == "D67":
            missing = [c for c, m in violations if m.startswith("MISSING")]
            phantom = [c for c, m in violations if m.startswith("PHANTOM")]
            lines += [f"  MISSING from map: {c}" for c in missing] + [f"  PHANTOM in map: {c}" for c in phantom]
            where = f"(source={files.registry_path} map={files.map_path})"
            lines.append(
                f"D67 FAIL: map drift: {len(missing)} missing, {len(phantom)} phantom {where}"
                if violations
                else f"D67 PASS: capability map covers all {len(files.caps)} capabilities"
            )
            continue
        lines += [f"  violation: {c + ': ' if c else ''}{m}" for c, m in violations]
        if not applied:
            lines.append(f"{gate} SKIP: {group[0].skipped}")
        elif violations:
            failing = ", ".join(o.rule for o in group if o.violations)
            lines.append(f"{gate} FAIL: {len(violations)} violation(s) in {failing}")
        else:
            lines.append(f"{gate} PASS: {_pass_text(gate, files, sum(o.checked for o in applied))}")
    return lines


def _pass_text(gate: str, files: RegistryFiles, checked: int) -> str:
    if gate == "D63":
        return f"capabilities metadata valid ({len(files.caps)} capabilities)"
    if gate == "D279":
        return f"plugin manifest parity ({checked} listed scripts and capabilities exist)"
    return f"every command runs a spine-comms capability ({checked} checked)"
