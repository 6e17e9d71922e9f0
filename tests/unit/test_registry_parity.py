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
from tests.spine_checkout import build_spine_checkout, commit_all

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


def test_without_git_every_entry_needs_arg_protocol_and_it_says_so(cli, root, tmp_path):
    spine = build_spine_checkout(tmp_path / "plain", git=False)
    code, envelope = verify(cli, root, "--spine-root", str(spine))
    assert code == 1 and envelope["data"]["failing_rules"] == ["registry.d63.arg_protocol"]
    assert envelope["data"]["arg_protocol_baseline"].startswith("required for every capability")


def test_bad_input_is_a_usage_error_without_traceback(cli, root, tmp_path):
    done = cli("capabilities.verify", "--root", str(root), "--spine-root", str(tmp_path / "nowhere"))
    assert done.exit_code == 2 and "Traceback" not in done.stdout + done.stderr
    broken = project_copy(tmp_path)
    (broken / "capabilities.yaml").write_text("version: '1.0'\ncapabilities:\n  a: [unclosed\n")
    done = cli("capabilities.verify", "--root", str(root), "--registry", str(broken))
    assert done.exit_code == 2
    assert f"{broken / 'capabilities.yaml'}:" in done.stdout and "Traceback" not in done.stdout + done.stderr
