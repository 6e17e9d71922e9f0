"""What spine.install wants in a spine checkout, and how that compares with what is there.

For each capability of this toolkit: its ops/capabilities.yaml entry, its
capability_map.yaml entry, its MANIFEST listing and its shim. An id the spine
already has is ours when its command is our shim; then it is brought up to
date. An id registered to something else (the spine's own
communications.inbox.poll, verify.core.run ...) is a conflict: reported and left
alone unless the operator names it with --force, because the spine's gates,
agents and runbooks call those ids and expect their behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_comms.core.registry import CapabilitySpec
from spine_comms.core.registry_rules import SECRETS_PRECONDITIONS
from spine_comms.governance import shim

# The keys spine.install owns in a registry entry, in the order the spine writes them.
REGISTRY_KEYS = ("description", "tags", "command", "cwd", "safety", "approval", "lifecycle", "outputs", "domain",
                 "plane", "arg_protocol", "touches_api", "requires")  # fmt: skip
MAP_KEYS = ("plugin", "script", "safety", "arg_protocol", "note")
# Documentation lists: written on a new entry, added when an entry lacks them, otherwise left as the
# operator (or the spine, for a taken-over id) wrote them; the spine often writes them in flow style.
DOC_LISTS = ("tags", "outputs")


def changed_keys(existing: Any, wanted: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """The keys of `wanted` an existing entry must change to."""
    if not isinstance(existing, dict):
        return list(keys)
    out = []
    for key in keys:
        if wanted.get(key) is None:
            continue  # absence is not owned: a spine entry's own touches_api and requires stay
        if key in DOC_LISTS:
            if existing.get(key) is None and wanted.get(key) is not None:
                out.append(key)
        elif existing.get(key) != wanted.get(key):
            out.append(key)
    return out


@dataclass
class CapPlan:
    cap_id: str
    action: str  # add | update | same | conflict | take-over
    entry: dict[str, Any]
    map_entry: dict[str, Any]
    shim_text: str
    reason: str = ""
    changed: list[str] = field(default_factory=list)  # which keys differ, for update / take-over

    @property
    def script(self) -> str:
        return shim.script_name(self.cap_id)

    @property
    def shim_path(self) -> str:
        return f"{shim.BIN_DIR}/{self.script}"


def registry_entry(spec: CapabilitySpec) -> dict[str, Any]:
    """The spine's entry for one of our capabilities."""
    source = spec.entry
    requires = [r for r in source.get("requires") or [] if isinstance(r, str)]
    entry: dict[str, Any] = {
        "description": spec.description,
        "tags": [str(t) for t in source.get("tags") or ["communications"]],
        "command": shim.command_for(spec.id),
        "cwd": "$SPINE_CODE",
        "safety": spec.safety,
        "approval": spec.approval,
        "lifecycle": str(source.get("lifecycle") or "ready"),
        "outputs": [str(o) for o in source.get("outputs") or ["stdout"]],
        "domain": "communications",
        "plane": "fabric",
        "arg_protocol": shim.ARG_PROTOCOL,
    }
    if source.get("touches_api") is True:
        # D63: a capability that touches an API runs the secrets preconditions first.
        entry["touches_api"] = True
        entry["requires"] = requires + [p for p in SECRETS_PRECONDITIONS if p not in requires]
    elif requires:
        entry["requires"] = requires
    return entry


def map_entry(spec: CapabilitySpec) -> dict[str, Any]:
    return {
        "plugin": shim.PLUGIN,
        "script": shim.script_name(spec.id),
        "safety": spec.safety,
        "arg_protocol": shim.ARG_PROTOCOL,
        "note": f"spine-comms {spec.id} (installed by spine-comms spine.install)",
    }


def plan_capability(
    spec: CapabilitySpec, caps: dict, mapped: dict, root: Path, executable: str, force: bool
) -> CapPlan:
    entry, link, text = registry_entry(spec), map_entry(spec), shim.render(spec.id, executable)
    plan = CapPlan(spec.id, "add", entry, link, text)
    existing, existing_link = caps.get(spec.id), mapped.get(spec.id)
    shim_file = root / plan.shim_path
    shim_runs = shim.read_capability(shim_file) if shim_file.exists() else None
    if shim_file.exists() and shim_runs != spec.id:
        plan.action, plan.reason = "conflict", f"{plan.shim_path} exists and is not a spine-comms shim for {spec.id}"
        return plan
    if existing is None and existing_link is None:
        return plan
    ours = isinstance(existing, dict) and existing.get("command") == entry["command"]
    if not ours and not force:
        what = existing.get("command") if isinstance(existing, dict) else f"map: {existing_link}"
        plan.action, plan.reason = "conflict", f"already registered by the spine ({what})"
        return plan
    plan.changed = [f"registry.{k}" for k in changed_keys(existing, entry, REGISTRY_KEYS)]
    plan.changed += [f"map.{k}" for k in changed_keys(existing_link, link, MAP_KEYS)]
    if _read(shim_file) != text:
        plan.changed.append("shim")
    if not ours:
        plan.action, plan.reason = "take-over", f"--force: replaces {_get(existing, 'command')}"
    elif plan.changed:
        plan.action, plan.reason = "update", "changed: " + ", ".join(plan.changed)
    else:
        plan.action, plan.reason = "same", "installed and up to date"
    return plan


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
