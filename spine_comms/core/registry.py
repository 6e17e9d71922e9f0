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
from spine_comms.core.yamlfile import load_yaml

REGISTRY_DIR = Path(__file__).resolve().parents[2] / "capabilities"


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


@cache
def load_registry(directory: Path = REGISTRY_DIR) -> Registry:
    raw = load_yaml(directory / "capabilities.yaml").data
    raw_map = load_yaml(directory / "capability_map.yaml").data
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
        )
    phases = {str(k): str(v) for k, v in (raw.get("phases") or {}).items()}
    return Registry(str(raw.get("version", "")), phases, caps, raw, raw_map)
