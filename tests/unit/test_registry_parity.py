"""capabilities.verify: the spine's D67/D63/D279 over this project's registry and over a spine checkout.

Every broken copy breaks one thing; its rule must fail and every other rule must keep the verdict
it has on the unbroken copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from spine_comms.core.registry import REGISTRY_DIR
from tests.spine_checkout import (
    REPEATED,
    REPEATED_ENTRY,
    REPEATED_MAP,
    build_spine_checkout,
    build_spine_with_duplicates,
    commit_all,
)

CAP = "communications.stack.status"


def verdicts(envelope: dict) -> dict[str, str]:
    return {check["id"]: check["status"] for check in envelope["checks"]}


def verify(cli, root: Path, *args: str) -> tuple[int, dict]:
    done = cli("capabilities.verify", "--root", str(root), "--json", *args)
    assert done.stdout.startswith("{"), done.stderr
    return done.exit_code, done.json()


def project_copy(tmp_path: Path, change: Callable[[dict, dict], None] | None = None) -> Path:
    target = tmp_path / "registry"
    shutil.copytree(REGISTRY_DIR, target)
    if change is not None:
        caps = yaml.safe_load((target / "capabilities.yaml").read_text())
        cmap = yaml.safe_load((target / "capability_map.yaml").read_text())
        change(caps, cmap)
        (target / "capabilities.yaml").write_text(yaml.safe_dump(caps, sort_keys=False))
        (target / "capability_map.yaml").write_text(yaml.safe_dump(cmap, sort_keys=False))
    return target


def test_this_projects_registry_passes(cli, root):
    code, envelope = verify(cli, root)
    assert envelope["data"]["failing_rules"] == []
    assert code == 0 and envelope["status"] == "ok"
    assert (
        f"D67 PASS: capability map covers all {envelope['data']['capabilities']} capabilities"
        in (envelope["data"]["lines"])
    )
    assert "D63 PASS: capabilities metadata valid" in "\n".join(envelope["data"]["lines"])


def _set(field: str, value) -> Callable[[dict, dict], None]:
    return lambda caps, cmap: caps["capabilities"][CAP].__setitem__(field, value)


def _drop(field: str) -> Callable[[dict, dict], None]:
    return lambda caps, cmap: caps["capabilities"][CAP].pop(field)


BREAKS = {
    "missing from map": (lambda caps, cmap: cmap["capabilities"].pop(CAP), "registry.d67.map_parity"),
    "phantom in map": (
        lambda caps, cmap: cmap["capabilities"].__setitem__("ghost.cap", {"plugin": "x", "script": "y"}),
        "registry.d67.map_parity",
    ),
    "empty version": (lambda caps, cmap: caps.__setitem__("version", ""), "registry.d63.header"),
    "updated not a date": (lambda caps, cmap: caps.__setitem__("updated", "21/11/2026"), "registry.d63.header"),
    "no description": (_drop("description"), "registry.d63.required_fields"),
    "bad safety": (_set("safety", "dangerous"), "registry.d63.safety"),
    "bad approval": (_set("approval", "maybe"), "registry.d63.approval"),
    "empty outputs": (_set("outputs", []), "registry.d63.outputs"),
    "outputs not a list": (_set("outputs", "stdout"), "registry.d63.outputs"),
    "unknown requires": (_set("requires", ["ghost.cap"]), "registry.d63.requires"),
    "touches_api without secrets": (_set("touches_api", True), "registry.d63.touches_api"),
    "no arg_protocol": (_drop("arg_protocol"), "registry.d63.arg_protocol"),
    "bad arg_protocol": (_set("arg_protocol", "telepathy"), "registry.d63.arg_protocol"),
    "command not in the CLI": (_set("command", "spine-comms no.such.capability"), "registry.cli.command"),
    "command not spine-comms": (_set("command", "/usr/bin/true"), "registry.cli.command"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_copy_broken_one_way_fails_exactly_its_rule(cli, root, tmp_path, name):
    change, rule = BREAKS[name]
    _, clean = verify(cli, root, "--registry", str(project_copy(tmp_path / "clean")))
    code, broken = verify(cli, root, "--registry", str(project_copy(tmp_path / "broken", change)))
    assert code == 1 and broken["status"] == "fail"
    before, after = verdicts(clean), verdicts(broken)
    assert after[rule] == "fail"
    assert {k: v for k, v in after.items() if k != rule} == {k: v for k, v in before.items() if k != rule}
    offenders = next(c["actual"] for c in broken["checks"] if c["id"] == rule)
    if rule != "registry.d63.header":
        assert CAP in offenders or "ghost.cap" in offenders, offenders


def test_d67_lines_are_the_spines(cli, root, tmp_path):
    def drift(caps, cmap):
        cmap["capabilities"].pop(CAP)
        cmap["capabilities"]["ghost.cap"] = {"plugin": "x", "script": "y", "safety": "read-only"}

    _, envelope = verify(cli, root, "--registry", str(project_copy(tmp_path, drift)))
    lines = envelope["data"]["lines"]
    assert f"  MISSING from map: {CAP}" in lines and "  PHANTOM in map: ghost.cap" in lines
    assert any(line.startswith("D67 FAIL: map drift: 1 missing, 1 phantom (source=") for line in lines)


# A spine checkout ---------------------------------------------------------------------------------


@pytest.fixture
def spine(tmp_path: Path) -> Path:
    return build_spine_checkout(tmp_path / "spine")


def test_the_spine_sample_passes(cli, root, spine):
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 0, envelope["data"]["lines"]
    assert envelope["data"]["layout"] == "spine"
    assert "D67 PASS: capability map covers all 62 capabilities" in envelope["data"]["lines"]
    assert verdicts(envelope)["registry.d279.manifest"] == "ok"
    assert "merge-base" in envelope["data"]["arg_protocol_baseline"]


def _append_cap(spine: Path, cap_id: str, *, arg_protocol: bool) -> None:
    text = (
        f'  {cap_id}:\n    description: "new"\n    command: "./ops/plugins/calendar/bin/calendar-status"\n'
        '    safety: read-only\n    approval: auto\n    outputs: ["stdout"]\n'
    )
    with (spine / "ops/capabilities.yaml").open("a") as handle:
        handle.write(text + ("    arg_protocol: argparse\n" if arg_protocol else ""))
    with (spine / "ops/bindings/capability_map.yaml").open("a") as handle:
        handle.write(f"  {cap_id}:\n    plugin: calendar\n    script: calendar-status\n    safety: read-only\n")


def _chmod_x(spine: Path) -> None:
    (spine / "ops/plugins/calendar/bin/calendar-status").chmod(0o644)


def _unlink_target(spine: Path) -> None:
    (spine / "ops/plugins/calendar/bin/calendar-status").unlink()


def _manifest(spine: Path, old: str, new: str) -> None:
    path = spine / "ops/plugins/MANIFEST.yaml"
    path.write_text(path.read_text().replace(old, new, 1))


def _change_grandfathered(spine: Path) -> None:
    path = spine / "ops/capabilities.yaml"
    text = path.read_text()
    old = 'description: "Validate calendar.global binding and report generated artifact freshness."'
    assert old in text
    path.write_text(text.replace(old, 'description: "Changed."'))


SPINE_BREAKS = {
    "new cap without arg_protocol": (lambda s: _append_cap(s, "calendar.extra", arg_protocol=False),
                                     "registry.d63.arg_protocol"),
    "changed cap without arg_protocol": (_change_grandfathered, "registry.d63.arg_protocol"),
    "target not executable": (_chmod_x, "registry.d63.command_target"),
    # The MANIFEST lists the same file, so D279 sees it gone too.
    "target missing": (_unlink_target, "registry.d63.command_target registry.d279.manifest"),
    "manifest script missing": (lambda s: _manifest(s, "      - bin/calendar-status", "      - bin/nowhere"),
                                "registry.d279.manifest"),
    "manifest cap unknown": (lambda s: _manifest(s, "      - calendar.status", "      - calendar.nowhere"),
                             "registry.d279.manifest"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SPINE_BREAKS))
def test_a_spine_checkout_broken_one_way_fails_exactly_its_rule(cli, root, spine, name):
    change, rule = SPINE_BREAKS[name]
    change(spine)
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 1
    assert envelope["data"]["failing_rules"] == rule.split(), envelope["data"]["lines"]


def test_a_new_cap_with_arg_protocol_passes_and_committed_old_ones_stay_grandfathered(cli, root, spine):
    _append_cap(spine, "calendar.extra", arg_protocol=True)
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 0, envelope["data"]["lines"]
    commit_all(spine, "a new capability, merged")  # HEAD moves on; origin/main (the merge-base) does not
    _change_grandfathered(spine)
    assert verify(cli, root, "--spine-root", str(spine))[1]["data"]["failing_rules"] == ["registry.d63.arg_protocol"]


def test_without_a_merge_base_no_entry_needs_arg_protocol_as_the_spines_d63_decides(cli, root, tmp_path):
    """The spine's D63 compares with `git merge-base HEAD origin/main`; without one its changed set is empty,
    so it passes entries without arg_protocol. Ours agrees, and says why."""
    spine = build_spine_checkout(tmp_path / "plain", git=False)
    _append_cap(spine, "calendar.extra", arg_protocol=False)
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 0 and envelope["data"]["failing_rules"] == [], envelope["data"]["lines"]
    assert "D63 PASS: capabilities metadata valid" in envelope["data"]["lines"]
    assert envelope["data"]["arg_protocol_baseline"].startswith("not required (no merge-base")


def test_this_projects_registry_still_needs_arg_protocol_on_every_entry(cli, root, tmp_path):
    code, envelope = verify(cli, root, "--registry", str(project_copy(tmp_path, _drop("arg_protocol"))))
    assert code == 1 and envelope["data"]["failing_rules"] == ["registry.d63.arg_protocol"]


# The real checkout's duplicate keys (tests/spine_checkout.build_spine_with_duplicates) --------------------


def test_a_spine_with_duplicate_keys_gets_the_spines_own_verdicts_and_counts(cli, root, tmp_path):
    """What the spine's gates print on this tree, worked out from their scripts: D67 counts `yq keys`, which
    lists the repeated id in each file twice (63 ids + 1 repeat = 64, the same in both files, so PASS); D63
    reads both registries through `yq -o=json` + json.loads (the last duplicate wins) and finds one entry
    new since the merge-base, with arg_protocol; D279 finds every listed script and capability."""
    spine = build_spine_with_duplicates(tmp_path / "dup")
    done = cli("capabilities.verify", "--root", str(root), "--json", "--spine-root", str(spine))
    envelope = done.json()
    lines = envelope["data"]["lines"]
    assert done.exit_code == 0 and envelope["data"]["failing_rules"] == [], lines
    assert "D67 PASS: capability map covers all 64 capabilities" in lines
    assert "D63 PASS: capabilities metadata valid (changed_caps=1)" in lines
    assert "D279 PASS: plugins manifest high-churn parity lock enforced" in lines
    registry_lines = _lines_of(spine / "ops/capabilities.yaml", f"  {REPEATED}:")
    warning = next(w for w in envelope["data"]["warnings"] if "ops/capabilities.yaml" in w)
    assert f"duplicate key at lines {registry_lines[0]} and {registry_lines[1]}; the last wins" in warning
    assert any("capability_map.yaml" in w for w in envelope["data"]["warnings"])
    assert "duplicate key" in done.stderr  # said where a person looks, without failing the run


def test_a_repeat_in_one_file_only_is_the_spines_d67_drift(cli, root, tmp_path):
    """`comm` on the two `yq keys` lists: an id repeated in the registry but not in the map is MISSING once."""
    spine = build_spine_with_duplicates(tmp_path / "dup")
    path = spine / "ops/bindings/capability_map.yaml"
    path.write_text(path.read_text().replace(REPEATED_MAP, "", 1))
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 1 and envelope["data"]["failing_rules"] == ["registry.d67.map_parity"]
    assert f"  MISSING from map: {REPEATED}" in envelope["data"]["lines"]
    assert "D67 FAIL: map drift: 1 missing, 0 phantom (source=64 map=63)" in envelope["data"]["lines"]


def test_a_change_since_the_merge_base_is_judged_against_the_last_duplicate(cli, root, tmp_path):
    """The merge-base registry has duplicates too: read as yq reads it, the repeated entry is unchanged;
    dropping arg_protocol from the entry that wins makes it changed, and then it must carry one."""
    spine = build_spine_with_duplicates(tmp_path / "dup")
    path = spine / "ops/capabilities.yaml"
    path.write_text(
        path.read_text().replace(REPEATED_ENTRY, REPEATED_ENTRY.replace("    arg_protocol: argparse\n", ""))
    )
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 1 and envelope["data"]["failing_rules"] == ["registry.d63.arg_protocol"]
    assert any(REPEATED in line and "changed since the merge-base" in line for line in envelope["data"]["lines"])


def _lines_of(path: Path, text: str) -> list[int]:
    return [n for n, line in enumerate(path.read_text().splitlines(), 1) if line == text]


def test_bad_input_is_a_usage_error_without_traceback(cli, root, tmp_path):
    done = cli("capabilities.verify", "--root", str(root), "--spine-root", str(tmp_path / "nowhere"))
    assert done.exit_code == 2 and "Traceback" not in done.stdout + done.stderr
    broken = project_copy(tmp_path)
    (broken / "capabilities.yaml").write_text("version: '1.0'\ncapabilities:\n  a: [unclosed\n")
    done = cli("capabilities.verify", "--root", str(root), "--registry", str(broken))
    assert done.exit_code == 2
    assert f"{broken / 'capabilities.yaml'}:" in done.stdout and "Traceback" not in done.stdout + done.stderr
