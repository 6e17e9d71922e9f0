"""The edits spine.install makes to a spine checkout's registry files, round-trip.

ops/capabilities.yaml, ops/bindings/capability_map.yaml and ops/plugins/MANIFEST.yaml
are edited as text with core.yaml_roundtrip: new entries appended to their
mapping, changed scalars replaced in place, lists only extended. Every other
byte (the spine's comment banners, its quoting, its blank lines) stays as it was.
What cannot be done that way (an item to remove from a list) is reported for
the operator to do by hand instead of being rewritten.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_comms.core.yaml_roundtrip import RoundTripError, RoundTripYaml
from spine_comms.governance import shim
from spine_comms.governance.spine_entries import MAP_KEYS, REGISTRY_KEYS, CapPlan, changed_keys

REGISTRY = "ops/capabilities.yaml"
MAP = "ops/bindings/capability_map.yaml"
MANIFEST = "ops/plugins/MANIFEST.yaml"
WRITES = ("add", "update", "take-over")


@dataclass
class Edits:
    """The three files before and after, and what could not be edited round-trip."""

    root: Path
    docs: dict[str, RoundTripYaml] = field(default_factory=dict)
    before: dict[str, str] = field(default_factory=dict)
    by_hand: list[str] = field(default_factory=list)

    def changed(self) -> list[str]:
        return [rel for rel, doc in self.docs.items() if doc.text != self.before[rel]]

    def diff(self) -> list[str]:
        lines: list[str] = []
        for rel in self.changed():
            old, new = self.before[rel].splitlines(keepends=True), self.docs[rel].text.splitlines(keepends=True)
            lines += [line.rstrip("\n") for line in difflib.unified_diff(old, new, f"a/{rel}", f"b/{rel}", n=2)]
        return lines


def load(root: Path) -> Edits:
    edits = Edits(root)
    for rel in (REGISTRY, MAP, MANIFEST):
        if (root / rel).is_file():
            edits.docs[rel] = RoundTripYaml.load(root / rel)
            edits.before[rel] = edits.docs[rel].text
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
    if registry.text != edits.before[REGISTRY]:
        registry.set_scalar(("updated",), today)
    if MANIFEST in edits.docs:
        _manifest(edits, edits.docs[MANIFEST], [p for p in plans if p.action in (*WRITES, "same")])


def _update(edits: Edits, doc: RoundTripYaml, path: tuple, wanted: dict, keys: tuple, plan: CapPlan) -> None:
    current = _at(doc.data, path)
    if not isinstance(current, dict):
        doc.add_entry(path[:-1], path[-1], wanted)  # only in the map: the registry had it (or the reverse)
        return
    for key in changed_keys(current, wanted, keys):
        value, have = wanted.get(key), current.get(key)
        if not isinstance(value, list):
            doc.set_scalar((*path, key), value)
        elif have is None:
            doc.add_entry(path, key, value)
        elif isinstance(have, list) and value[: len(have)] == have:
            try:
                for item in value[len(have) :]:
                    doc.append_item((*path, key), item)
            except RoundTripError:  # a flow list `[a, b]`: the editor extends only block lists
                edits.by_hand.append(f"{plan.cap_id}: set `{key}` to {value} in {_where(doc)} (it is {have})")
        else:
            edits.by_hand.append(f"{plan.cap_id}: set `{key}` to {value} in {_where(doc)} (it is {have})")


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
        if not missing:
            continue
        if key not in plugin:
            doc.add_entry(("plugins", index), key, missing)
        elif isinstance(have, list):  # a block list, or an empty flow one (`[]`), which becomes a block list
            for item in missing:
                doc.append_item(("plugins", index, key), item)
        else:
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


def write(edits: Edits, plans: list[CapPlan]) -> list[str]:
    """Shims first (harmless alone), then the registry, the map and the MANIFEST (D279 wants listed caps
    registered). Each file is replaced atomically; an interrupted install is completed by running it again."""
    from spine_comms.core.atomic import write_atomic

    written = []
    for plan in plans:
        path = edits.root / plan.shim_path
        if plan.action in WRITES and _text(path) != plan.shim_text:
            write_atomic(path, plan.shim_text, 0o755)
            written.append(plan.shim_path)
    for rel in (REGISTRY, MAP, MANIFEST):
        if rel in edits.changed():
            edits.docs[rel].save(edits.root / rel)
            written.append(rel)
    return written


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
