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
from collections import Counter
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
    # The capabilities at the merge-base with origin/main. None: in this project's layout every entry needs
    # arg_protocol; in a spine checkout none does (the spine's D63 has nothing to compare with then).
    baseline: dict[str, Any] | None = None
    baseline_note: str = ""
    # Warnings from reading the spine's files (duplicate keys, read as yq reads them).
    warnings: list[str] = field(default_factory=list)
    # Capability ids a file repeats (a duplicate key): yq's `keys` lists each occurrence, so D67 counts them.
    registry_repeated: list[str] = field(default_factory=list)
    map_repeated: list[str] = field(default_factory=list)

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
    """As the spine's D67 compares `yq '.capabilities | keys'` of both files with `comm`: key occurrences, so
    an id one file repeats more often than the other counts as missing (or phantom) once per extra time."""
    listed = Counter([*map(str, files.caps), *files.registry_repeated])
    mapped = Counter([*map(str, files.mapped), *files.map_repeated])
    out = RuleOutcome("registry.d67.map_parity", "D67", "registry and map list the same capabilities")
    out.checked = sum(listed.values())
    for where, counted in (("source", listed), ("map", mapped)):
        if not counted:
            out.violations.append(("", f"no capabilities found in {where}"))
    out.violations += [(cap, "MISSING from map") for cap in sorted((listed - mapped).elements())]
    out.violations += [(cap, "PHANTOM in map") for cap in sorted((mapped - listed).elements())]
    return out


def listed_count(files: RegistryFiles) -> int:
    """How many capabilities the spine's D67 says the registry lists (yq counts a repeated id each time)."""
    return len(files.caps) + len(files.registry_repeated)


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
    if not str(version or ""):  # the spine's test: a falsy version (0 included) is missing
        out.violations.append(("", "version is empty or missing"))
    if not _DATE.fullmatch(str(updated or "")):
        out.violations.append(("", f"updated {updated!r} is not YYYY-MM-DD"))
    return out


def _each(caps: dict, rule: str, title: str, test: Callable[[Any], list[str]]) -> RuleOutcome:
    out = RuleOutcome(rule, "D63", title, checked=len(caps))
    for cap_id, entry in caps.items():
        problems = [f"entry is {type(entry).__name__}, not a mapping"] if not isinstance(entry, dict) else test(entry)
        out.violations += [(str(cap_id), p) for p in problems]
    return out


def _required(entry: dict) -> list[str]:
    return [f"{name} missing or empty" for name in ("description", "command") if not str(entry.get(name) or "")]


def _enum(entry: dict, name: str, allowed: tuple[str, ...]) -> list[str]:
    value = entry.get(name)
    return [] if str(value or "") in allowed else [f"{name} {value!r} not in {'|'.join(allowed)}"]


def _outputs(entry: dict) -> list[str]:
    outputs = entry.get("outputs")
    return [] if isinstance(outputs, list) and outputs else [f"outputs {outputs!r} is not a non-empty list"]


def _requires(entry: dict, caps: dict) -> list[str]:
    requires = entry.get("requires")
    if requires is None:
        return []
    if not isinstance(requires, list):
        return [f"requires {requires!r} is not a list"]
    named = [str(r or "").strip() for r in requires]
    return [f"requires unknown capability {r}" for r in named if r and r not in caps]


def _touches_api(entry: dict) -> list[str]:
    if not entry.get("touches_api"):  # the spine's test is truthiness
        return []
    listed = entry.get("requires") if isinstance(entry.get("requires"), list) else []
    requires = [str(r or "").strip() for r in listed]
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
        given = str(value).strip() if value is not None else ""  # the spine's test: blank is missing
        if given and given not in ARG_PROTOCOLS:
            out.violations.append((cap_id, f"arg_protocol {value!r} not in {'|'.join(ARG_PROTOCOLS)}"))
        elif not given:
            if base is None:
                if files.layout == "project":  # this project's rule: every entry declares it
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
    """As the spine's D279: every plugin has a name and a path that exists, its listed scripts exist, and
    its listed capabilities are in capabilities.yaml with a non-empty command."""
    out = RuleOutcome("registry.d279.manifest", "D279", "MANIFEST scripts exist, MANIFEST capabilities exist")
    if files.manifest is None:
        out.skipped = "no ops/plugins/MANIFEST.yaml" if files.layout == "spine" else "a spine checkout's rule"
        return out
    plugins = files.manifest.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        out.violations.append(("", "manifest has zero plugins"))
        return out
    for index, plugin in enumerate(plugins):
        plugin = plugin if isinstance(plugin, dict) else {}
        name, path = str(plugin.get("name") or ""), str(plugin.get("path") or "")
        if not name:
            out.violations.append(("", f"plugin[{index}] missing name"))
            continue
        if not path:
            out.violations.append(("", f"plugin {name!r} missing path"))
            continue
        directory = files.base / path
        out.checked += 1
        if not directory.is_dir():
            out.violations.append(("", f"plugin {name!r} path missing: {path}"))
        for script in _listed(plugin.get("scripts")):
            out.checked += 1
            if not (directory / script).is_file():
                out.violations.append(("", f"plugin {name!r} missing script file: {path}/{script}"))
        for cap in _listed(plugin.get("capabilities")):
            out.checked += 1
            entry = files.caps.get(cap)
            if not (isinstance(entry, dict) and str(entry.get("command") or "")):
                out.violations.append((cap, f"plugin {name!r} capability missing in ops/capabilities.yaml: {cap}"))
    return out


def _listed(value: Any) -> list[str]:
    """A MANIFEST list as `yq '.x[]? // ""'` gives it: its non-empty items as text (a scalar is one item)."""
    items = value if isinstance(value, list) else ([] if value is None else [value])
    return [text for text in ("" if item is None else _yq_text(item) for item in items) if text]


def _yq_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def changed_capabilities(files: RegistryFiles) -> int:
    """The spine's D63 `changed_caps`: entries new or different since the merge-base (0 without one)."""
    if files.baseline is None:
        return 0
    missing = object()
    return sum(files.baseline.get(cap, missing) != entry for cap, entry in files.caps.items())


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
            # The spine's own words: counts as `yq keys` gives them (a repeated id counted each time).
            where = f"(source={listed_count(files)} map={len(files.mapped) + len(files.map_repeated)})"
            lines.append(
                f"D67 FAIL: map drift: {len(missing)} missing, {len(phantom)} phantom {where}"
                if violations
                else f"D67 PASS: capability map covers all {listed_count(files)} capabilities"
            )
            continue
        lines += [f"  violation: {c + ': ' if c else ''}{m}" for c, m in violations]
        if not applied:
            lines.append(f"{gate} SKIP: {group[0].skipped}")
        elif violations:
            failing = ", ".join(o.rule for o in group if o.violations)
            lines.append(f"{gate} FAIL: {len(violations)} violation(s)" + ("" if gate == "D279" else f" in {failing}"))
        else:
            lines.append(f"{gate} PASS: {_pass_text(gate, files, sum(o.checked for o in applied))}")
    return lines


def _pass_text(gate: str, files: RegistryFiles, checked: int) -> str:
    # The spine's own PASS lines, word for word.
    if gate == "D63":
        changed = changed_capabilities(files)
        return f"capabilities metadata valid (changed_caps={changed})" if changed else "capabilities metadata valid"
    if gate == "D279":
        return "plugins manifest high-churn parity lock enforced"
    return f"every command runs a spine-comms capability ({checked} checked)"
