"""The edits spine.install makes to a spine checkout's registry files, round-trip.

ops/capabilities.yaml, ops/bindings/capability_map.yaml and ops/plugins/MANIFEST.yaml
are edited as text with core.yaml_roundtrip, an existing entry through
RoundTripYaml.merge: new entries appended to their mapping, changed scalars
replaced in place, lists only extended. Every other byte (the spine's comment
banners, its quoting, its blank lines) stays as it was. What merge cannot do
(an item to remove from a list, a flow list to extend) is reported for the
operator to do by hand instead of being rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_comms.core.yaml_roundtrip import RoundTripYaml
from spine_comms.governance import shim
from spine_comms.governance.spine_entries import MAP_KEYS, REGISTRY_KEYS, CapPlan, changed_keys

REGISTRY = "ops/capabilities.yaml"
MAP = "ops/bindings/capability_map.yaml"
MANIFEST = "ops/plugins/MANIFEST.yaml"
WRITES = ("add", "update", "take-over")


@dataclass
class Edits:
    """The three files as edited (each keeps its text as loaded), and what could not be edited round-trip."""

    root: Path
    docs: dict[str, RoundTripYaml] = field(default_factory=dict)
    by_hand: list[str] = field(default_factory=list)

    def changed(self) -> list[str]:
        return [rel for rel, doc in self.docs.items() if doc.text != doc.original]

    def diff(self) -> list[str]:
        return [line for rel in self.changed() for line in self.docs[rel].diff(rel).splitlines()]


def load(root: Path) -> Edits:
    edits = Edits(root)
    for rel in (REGISTRY, MAP, MANIFEST):
        if (root / rel).is_file():
            edits.docs[rel] = RoundTripYaml.load(root / rel)
    return edits


def apply(edits: Edits, plans: list[CapPlan], today: str) -> None:
    registry, cmap = edits.docs[REGISTRY], edits.docs[MAP]
    for plan in plans:
        if plan.action == "add":
            registry.add_entry(("capabilities",), plan.cap_id, plan.entry)
            cmap.add_entry(("capabilities",), plan.cap_id, plan.map_entry)
        elif plan.action in ("update", "take-over"):
            _update(edits, registry, ("capabilities", plan.cap_id), plan.entry, REGISTRY_KEYS, plan)
            _update(edits, cmap, ("capabilities", plan.cap_id), plan.map_entry, MAP_KEYS, plan)
    if REGISTRY in edits.changed():
        registry.set_scalar(("updated",), today)
    if MANIFEST in edits.docs:
        _manifest(edits, edits.docs[MANIFEST], [p for p in plans if p.action in (*WRITES, "same")])


def _update(edits: Edits, doc: RoundTripYaml, path: tuple, wanted: dict, keys: tuple, plan: CapPlan) -> None:
    current = _at(doc.data, path)
    if not isinstance(current, dict):
        doc.add_entry(path[:-1], path[-1], wanted)  # only in the map: the registry had it (or the reverse)
        return
    for key in changed_keys(current, wanted, keys):
        # One key at a time, so what merge leaves (a list to shorten, a flow list) is named per key.
        value = wanted[key]
        if doc.merge(path, {key: value}):
            edits.by_hand.append(f"{plan.cap_id}: set `{key}` to {value} in {_where(doc)} (it is {current.get(key)})")


def _manifest(edits: Edits, doc: RoundTripYaml, plans: list[CapPlan]) -> None:
    plugins = doc.data.get("plugins") if isinstance(doc.data, dict) else None
    if not isinstance(plugins, list):
        edits.by_hand.append(f"list the communications plugin in {_where(doc)} (no `plugins:` list there)")
        return
    index = next((i for i, p in enumerate(plugins) if isinstance(p, dict) and p.get("name") == shim.PLUGIN), None)
    scripts = [f"bin/{p.script}" for p in plans]
    caps = [p.cap_id for p in plans]
    if index is None:
        entry = {"name": shim.PLUGIN, "path": f"ops/plugins/{shim.PLUGIN}", "scripts": scripts, "capabilities": caps,
                 "description": "Communications (spine-comms)"}  # fmt: skip
        doc.append_item(("plugins",), entry)
        return
    plugin = plugins[index]
    for key, wanted in (("scripts", scripts), ("capabilities", caps)):
        have = plugin.get(key)
        missing = [w for w in wanted if not isinstance(have, list) or w not in have]
        # The operator's own order and items stay: ours are appended (a missing key is added).
        extended = [*have, *missing] if isinstance(have, list) else missing
        if missing and doc.merge(("plugins", index), {key: extended}):
            edits.by_hand.append(f"add {', '.join(missing)} to the communications plugin's {key} in {_where(doc)}")


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _where(doc: RoundTripYaml) -> str:
    return Path(doc.source).name


def write(edits: Edits, plans: list[CapPlan], written: list[str]) -> list[str]:
    """Shims first (harmless alone), then the registry, the map and the MANIFEST (D279 wants listed caps
    registered). Each file is replaced atomically and added to `written` as soon as it is, so a write that
    fails part way still tells what is on disk; an interrupted install is completed by running it again."""
    from spine_comms.core.atomic import write_atomic

    for plan in plans:
        path = edits.root / plan.shim_path
        if plan.action in WRITES and _text(path) != plan.shim_text:
            write_atomic(path, plan.shim_text, 0o755)
            written.append(plan.shim_path)
    # Then what spine.install --mcp plans (governance/spine_mcp.py: the agent registry, .mcp.json).
    others = [rel for rel in edits.docs if rel not in (REGISTRY, MAP, MANIFEST)]
    for rel in (REGISTRY, MAP, MANIFEST, *others):
        if rel in edits.changed():
            edits.docs[rel].save(edits.root / rel)
            written.append(rel)
    return written


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
