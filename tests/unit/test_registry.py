"""The YAML registry, the map and the code must agree; the checker must catch disagreement."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from spine_comms.core.registry import REGISTRY_DIR, load_registry, parity_problems


def test_registry_map_and_code_agree():
    registry = load_registry()
    assert registry.capabilities, "the registry lists no capability"
    assert parity_problems(registry) == []


def _doctored(tmp_path: Path, change) -> list[str]:
    target = tmp_path / "capabilities"
    shutil.copytree(REGISTRY_DIR, target)
    caps = yaml.safe_load((target / "capabilities.yaml").read_text())
    cmap = yaml.safe_load((target / "capability_map.yaml").read_text())
    change(caps["capabilities"], cmap["capabilities"])
    (target / "capabilities.yaml").write_text(yaml.safe_dump(caps))
    (target / "capability_map.yaml").write_text(yaml.safe_dump(cmap))
    load_registry.cache_clear()
    try:
        return parity_problems(load_registry(target))
    finally:
        load_registry.cache_clear()


def test_a_capability_missing_from_the_map_is_caught(tmp_path):
    problems = _doctored(tmp_path, lambda caps, cmap: cmap.pop("communications.stack.status"))
    assert "MISSING from map: communications.stack.status" in problems


def test_a_phantom_in_the_map_is_caught(tmp_path):
    def add(caps, cmap):
        cmap["ghost.cap"] = {"plugin": "x", "script": "y", "safety": "read-only"}

    assert "PHANTOM in map: ghost.cap" in _doctored(tmp_path, add)


def test_safety_disagreeing_with_the_code_is_caught(tmp_path):
    def change(caps, cmap):
        caps["communications.stack.status"]["safety"] = "mutating"
        cmap["communications.stack.status"]["safety"] = "mutating"

    problems = _doctored(tmp_path, change)
    assert any("code says read-only/auto, registry says mutating/auto" in p for p in problems)


def test_approval_disagreeing_with_the_code_is_caught(tmp_path):
    def change(caps, cmap):
        caps["communications.stack.status"]["approval"] = "manual"

    assert any("registry says read-only/manual" in p for p in _doctored(tmp_path, change))


def test_code_without_a_registry_entry_is_caught(tmp_path):
    def drop(caps, cmap):
        caps.pop("communications.stack.status")
        cmap.pop("communications.stack.status")

    assert "UNREGISTERED in code: communications.stack.status" in _doctored(tmp_path, drop)


def test_spine_rules_on_fields(tmp_path):
    def change(caps, cmap):
        entry = caps["communications.stack.status"]
        entry["plane"] = "sideways"
        entry["touches_api"] = True
        entry.pop("outputs")

    problems = _doctored(tmp_path, change)
    assert any("plane 'sideways'" in p for p in problems)
    assert any("touches_api: true but requires lacks secrets.binding" in p for p in problems)
    assert any("outputs None is not a non-empty list" in p for p in problems)


def test_the_readme_documents_every_capability_and_exit_code():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for cap_id in load_registry().capabilities:
        assert f"| `{cap_id}` |" in readme, f"{cap_id} is missing from the README's capability table"
    from spine_comms.core.errors import ExitCode

    for code in (ExitCode.OK, ExitCode.FAIL, ExitCode.USAGE, ExitCode.COULD_NOT_EVALUATE, ExitCode.INTERNAL):
        assert f"| {int(code)} " in readme or f"| {int(code)} |" in readme


def test_the_registry_cache_follows_edits(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "capabilities"
    shutil.copytree(REGISTRY_DIR, target)
    load_registry.cache_clear()
    first = load_registry(target).get("communications.stack.status").description
    assert list((tmp_path / "cache/spine-comms").glob("registry-*.json"))
    text = (target / "capabilities.yaml").read_text().replace(first, "Edited by the test.")
    (target / "capabilities.yaml").write_text(text)
    load_registry.cache_clear()
    try:
        assert load_registry(target).get("communications.stack.status").description == "Edited by the test."
    finally:
        load_registry.cache_clear()
