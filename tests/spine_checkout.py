"""A synthetic spine checkout built from the operator's real registry files (tests/fixtures/spine/).

ops/capabilities.yaml               the sample excerpt, byte for byte
ops/bindings/capability_map.yaml    the sample excerpt, byte for byte
ops/plugins/MANIFEST.yaml           a plugin manifest in the spine's shape, listing the excerpt's scripts
ops/plugins/<plugin>/bin/<script>   an executable stub for every `./` command, as D63 wants
a git repository whose HEAD is also origin/main, so entries already there are grandfathered
(arg_protocol is required only on new or changed ones, like the spine's D63)

`build_spine_with_duplicates` adds what the real checkout at a00cb7b7 has and the excerpts do not:
a capability registered twice in ops/capabilities.yaml and ops/bindings/capability_map.yaml (its second
entry adds arg_protocol, as coordinator.lane.closeout does there), other binding files with a duplicate
key and one of several YAML documents, and a history in which origin/main (the merge-base) already has
the duplicates and HEAD adds one capability on top.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "spine"
REGISTRY = FIXTURES / "capabilities.excerpt.yaml"
MAP = FIXTURES / "capability_map.excerpt.yaml"

MANIFEST_HEAD = """\
# Plugin Manifest — every plugin, its scripts and the capabilities they serve
# (synthetic, in the shape of the spine's ops/plugins/MANIFEST.yaml; D279 checks listed entries)
version: "1.0"
updated: "2026-03-03"
plugins:
"""


def build_spine_checkout(dest: Path, *, git: bool = True) -> Path:
    """Write the checkout under dest and return dest. Stubs stand in for every command target and every
    map script (the sample's communications.provider.status runs secrets-exec, which runs the map's script)."""
    (dest / "ops" / "bindings").mkdir(parents=True)
    shutil.copyfile(REGISTRY, dest / "ops" / "capabilities.yaml")
    shutil.copyfile(MAP, dest / "ops" / "bindings" / "capability_map.yaml")
    caps = yaml.safe_load(REGISTRY.read_text())["capabilities"]
    mapped = yaml.safe_load(MAP.read_text())["capabilities"]
    targets = [str(entry["command"]).split()[0] for entry in caps.values()]
    targets += [f"./ops/plugins/{link['plugin']}/bin/{link['script']}" for link in mapped.values()]
    for target in targets:
        if target.startswith("./"):
            stub = dest / target
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\necho 'a stand-in for one of the spine scripts'\n")
            stub.chmod(0o755)
    plugins: dict[str, dict[str, list[str]]] = {}
    for cap_id, link in mapped.items():
        plugin = plugins.setdefault(link["plugin"], {"scripts": [], "capabilities": []})
        if f"bin/{link['script']}" not in plugin["scripts"]:
            plugin["scripts"].append(f"bin/{link['script']}")
        plugin["capabilities"].append(cap_id)
    lines = [MANIFEST_HEAD.rstrip("\n")]
    for name, listed in plugins.items():
        lines += [f"  - name: {name}", f"    path: ops/plugins/{name}", "    scripts:"]
        lines += [f"      - {script}" for script in listed["scripts"]]
        lines += ["    capabilities:"] + [f"      - {cap}" for cap in listed["capabilities"]]
        lines += [f'    description: "The {name} plugin"']
    (dest / "ops" / "plugins" / "MANIFEST.yaml").write_text("\n".join(lines) + "\n")
    if git:
        commit_all(dest, "synthetic spine checkout")
        _git(dest, "update-ref", "refs/remotes/origin/main", "HEAD")
    return dest


def commit_all(dest: Path, message: str) -> None:
    if not (dest / ".git").is_dir():
        _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", message)


def _git(dest: Path, *args: str) -> None:
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t"}
    env = {**os.environ, **who, "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "-C", str(dest), *args], check=True, capture_output=True, env=env, timeout=30)


# What the real checkout repeats: a capability registered twice, the second time with arg_protocol.
REPEATED = "calendar.status"
REPEATED_ENTRY = """\
  calendar.status:
    description: "Registered a second time, as coordinator.lane.closeout is in the real registry."
    command: "./ops/plugins/calendar/bin/calendar-status"
    safety: read-only
    approval: auto
    outputs: ["stdout"]
    arg_protocol: argparse
"""
REPEATED_MAP = "  calendar.status:\n    plugin: calendar\n    script: calendar-status\n    safety: read-only\n"
# Spine-owned bindings as the real ones are: a duplicate key (cli.tools.inventory.yaml has two
# `description:` in one tool) and several documents (wave.lock.yaml).
OTHER_BINDINGS = {
    "cli.tools.inventory.yaml": "tools:\n  - id: yq\n    description: first\n    description: second\n",
    "wave.lock.yaml": "---\nstatus: authoritative\n---\nwave_lock:\n  lock_id: WAVE-LOCK-1\n",
}
ADDED = "calendar.added"
ADDED_ENTRY = """\
  calendar.added:
    description: "New since the merge-base, with arg_protocol as the spine's D63 wants."
    command: "./ops/plugins/calendar/bin/calendar-status"
    safety: read-only
    approval: auto
    outputs: ["stdout"]
    arg_protocol: argparse
"""
ADDED_MAP = "  calendar.added:\n    plugin: calendar\n    script: calendar-status\n    safety: read-only\n"


def build_spine_with_duplicates(dest: Path) -> Path:
    """The synthetic checkout with the real one's duplicate keys and a merge-base history (see the module)."""
    build_spine_checkout(dest, git=False)
    _append(dest / "ops/capabilities.yaml", REPEATED_ENTRY)
    _append(dest / "ops/bindings/capability_map.yaml", REPEATED_MAP)
    for name, text in OTHER_BINDINGS.items():
        (dest / "ops/bindings" / name).write_text(text)
    commit_all(dest, "the spine as merged: with its duplicate keys")
    _git(dest, "update-ref", "refs/remotes/origin/main", "HEAD")
    _append(dest / "ops/capabilities.yaml", ADDED_ENTRY)
    _append(dest / "ops/bindings/capability_map.yaml", ADDED_MAP)
    manifest = dest / "ops/plugins/MANIFEST.yaml"
    manifest.write_text(
        manifest.read_text().replace("      - calendar.status\n", f"      - calendar.status\n      - {ADDED}\n", 1)
    )
    commit_all(dest, "a lane commit on top: one new capability")
    return dest


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
