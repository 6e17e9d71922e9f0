"""The registry as data: `capabilities/capabilities.yaml` and `capability_map.yaml`.

The CLI is built from it without importing any capability module, so `--help`
stays fast; a module is imported only when its command runs or shows its help.
The map's `plugin` names the package under spine_comms and `script` the module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from spine_comms.core.capability import CapabilityCode, code_for

# Inside the package, so an installed wheel reads the same registry as the checkout (whose top-level
# capabilities/ is a link to it).
REGISTRY_DIR = Path(__file__).resolve().parents[1] / "registry"


@dataclass(frozen=True)
class CapabilitySpec:
    id: str
    description: str
    safety: str
    approval: str
    phase: str
    plugin: str
    script: str
    entry: dict[str, Any] = field(default_factory=dict, compare=False)
    map_entry: dict[str, Any] = field(default_factory=dict, compare=False)
    default_mode: str | None = None  # dry-run | execute, for mutating ones (core.approval)

    @property
    def acts_by_default(self) -> bool:
        from spine_comms.core.approval import Safety

        return Safety(self.safety, self.approval, self.default_mode).acts_by_default

    @property
    def module(self) -> str:
        return f"spine_comms.{self.plugin}.{self.script}"

    def load(self) -> CapabilityCode:
        importlib.import_module(self.module)
        code = code_for(self.id)
        if code is None:
            raise LookupError(f"{self.module} does not define capability {self.id}")
        return code


@dataclass(frozen=True)
class Registry:
    version: str
    phases: dict[str, str]
    capabilities: dict[str, CapabilitySpec]
    raw: dict[str, Any]
    raw_map: dict[str, Any]

    def get(self, cap_id: str) -> CapabilitySpec | None:
        return self.capabilities.get(cap_id)

    def by_phase(self) -> dict[str, list[CapabilitySpec]]:
        out: dict[str, list[CapabilitySpec]] = {title: [] for title in self.phases.values()}
        for spec in self.capabilities.values():
            out.setdefault(self.phases.get(spec.phase, spec.phase), []).append(spec)
        return {k: v for k, v in out.items() if v}


def _read(directory: Path) -> tuple[dict, dict]:
    """The two YAML files, through a JSON cache keyed by their size and mtime.

    Importing and running a YAML parser costs more than the rest of `--help`; the
    cache (under $XDG_CACHE_HOME/spine-comms) is rebuilt whenever a file changes.
    """
    import json
    import os
    import zlib

    files = [directory / "capabilities.yaml", directory / "capability_map.yaml"]
    stamp = ";".join(f"{f}:{f.stat().st_mtime_ns}:{f.stat().st_size}" for f in files)
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spine-comms"
    cache = cache_dir / f"registry-{zlib.crc32(str(directory).encode()):08x}.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("stamp") == stamp:
            return cached["registry"], cached["map"]
    except (OSError, ValueError, AttributeError):
        pass
    from spine_comms.core.yamlfile import load_yaml

    raw, raw_map = load_yaml(files[0]).data, load_yaml(files[1]).data
    try:
        from spine_comms.core.atomic import write_atomic

        write_atomic(cache, json.dumps({"stamp": stamp, "registry": raw, "map": raw_map}, default=str))
    except (OSError, TypeError, ValueError):
        pass  # a read-only home only costs speed
    return raw, raw_map


@cache
def load_registry(directory: Path = REGISTRY_DIR) -> Registry:
    raw, raw_map = _read(directory)
    caps = {}
    mapped = raw_map.get("capabilities") or {}
    for cap_id, entry in (raw.get("capabilities") or {}).items():
        link = mapped.get(cap_id) or {}
        caps[cap_id] = CapabilitySpec(
            id=cap_id,
            description=str(entry.get("description", "")),
            safety=str(entry.get("safety", "")),
            approval=str(entry.get("approval", "")),
            phase=str(entry.get("phase", "")),
            plugin=str(link.get("plugin", "")),
            script=str(link.get("script", "")),
            entry=entry,
            map_entry=link,
            default_mode=str(entry["default_mode"]) if entry.get("default_mode") is not None else None,
        )
    phases = {str(k): str(v) for k, v in (raw.get("phases") or {}).items()}
    return Registry(str(raw.get("version", "")), phases, caps, raw, raw_map)


def discover_code() -> dict[str, CapabilityCode]:
    """Import every module of the package and return every capability the code defines."""
    import pkgutil

    import spine_comms
    from spine_comms.core import capability as marks

    for info in pkgutil.walk_packages(spine_comms.__path__, "spine_comms."):
        if info.name not in ("spine_comms.__main__", "spine_comms.cli"):
            importlib.import_module(info.name)
    return dict(marks._BY_ID)


# This project's own rules on top of the spine's D67/D63 (core/registry_rules.py): every
# entry carries the fields the spine makes optional, with the spine's enums.
PROJECT_FIELDS = ("lifecycle", "outputs", "domain", "plane", "arg_protocol")
PROJECT_ENUMS = {
    "lifecycle": ("ready", "experimental"),
    "plane": ("fabric", "domain_external"),
}


def parity_problems(registry: Registry) -> list[str]:
    """Where the YAML registry, the map and the code disagree.

    The spine's D67 (map parity) and D63 (metadata) rules, the fields this project
    always fills, and the code: every capability in the code registered, with the
    registry's safety and approval."""
    from spine_comms.core.registry_rules import RegistryFiles, d63, d67

    files = RegistryFiles("project", Path("."), Path("capabilities.yaml"), Path("capability_map.yaml"),
                          registry.raw, registry.raw_map, baseline_note="required for every capability")  # fmt: skip
    problems = []
    for outcome in [d67(files), *d63(files)]:
        for cap_id, message in outcome.violations:
            problems.append(f"{message}: {cap_id}" if outcome.gate == "D67" else f"{cap_id}: {message}")
    mapped = set(files.mapped)
    problems += [f"UNREGISTERED in code: {cap}" for cap in sorted(set(discover_code()) - set(registry.capabilities))]
    for cap_id, spec in sorted(registry.capabilities.items()):
        entry = spec.entry
        problems += [f"{cap_id}: missing {name}" for name in PROJECT_FIELDS if entry.get(name) in (None, "", [])]
        for name, allowed in PROJECT_ENUMS.items():
            if entry.get(name) is not None and entry[name] not in allowed:
                problems.append(f"{cap_id}: {name} {entry[name]!r} not in {allowed}")
        problems += safety_problems(spec)
        if spec.phase and spec.phase not in registry.phases:
            problems.append(f"{cap_id}: unknown phase {spec.phase!r}")
        if cap_id not in mapped:
            continue
        if spec.map_entry.get("safety") != spec.safety:
            problems.append(
                f"{cap_id}: safety {spec.safety!r} in the registry, {spec.map_entry.get('safety')!r} in the map"
            )
        try:
            code = spec.load()
        except (ImportError, LookupError) as exc:
            problems.append(f"{cap_id}: no code ({exc})")
            continue
        if (code.safety, code.approval) != (spec.safety, spec.approval):
            problems.append(
                f"{cap_id}: code says {code.safety}/{code.approval}, registry says {spec.safety}/{spec.approval}"
            )
        problems += _runner_owned_parameters(spec, code)
    return problems


def safety_problems(spec: CapabilitySpec) -> list[str]:
    """The runner's safety rules (core.approval) as the registry must state them."""
    from spine_comms.core.approval import DEFAULT_MODES, DESTRUCTIVE, READ_ONLY

    if spec.safety == READ_ONLY:
        return [f"{spec.id}: read-only but declares default_mode"] if spec.default_mode is not None else []
    if spec.default_mode not in DEFAULT_MODES:
        return [f"{spec.id}: {spec.safety} capability must declare default_mode: dry-run|execute "
                f"(got {spec.default_mode!r})"]  # fmt: skip
    if spec.safety == DESTRUCTIVE and spec.default_mode != "dry-run":
        return [f"{spec.id}: destructive, so default_mode must be dry-run (it never acts on a default)"]
    return []


def _runner_owned_parameters(spec: CapabilitySpec, code: CapabilityCode) -> list[str]:
    """Safety flags are the runner's: a capability declares none of them, and takes `dry_run` only
    when it is mutating (the runner fills it; without it a dry run does not call the capability)."""
    import inspect

    names = set(inspect.signature(code.function).parameters)
    problems = [f"{spec.id}: declares --{n.replace('_', '-')} itself; the runner owns it" for n in ("execute", "yes")
                if n in names]  # fmt: skip
    if "dry_run" in names and spec.safety == "read-only":
        problems.append(f"{spec.id}: read-only but takes dry_run")
    return problems
