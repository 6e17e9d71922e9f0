"""The shipped systemd units: rendered for a root, checked by `systemd-analyze verify` (offline: no
running systemd is needed; `--man=no` skips the man-page lookup; the per-user manager needs only an
XDG_RUNTIME_DIR), and written by `spine-comms ops units --write` without clobbering."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from spine_comms.core.root import find_root
from spine_comms.operations.units import render_units, unit_names

SCRIPT = Path(sys.executable).parent / "spine-comms"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "read-only"}


def analyze(directory: Path, *, user: bool = False) -> subprocess.CompletedProcess:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: lab/install.sh installs the Debian package systemd"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    args = [tool, "--man=no"]
    units = sorted(str(p) for p in directory.iterdir() if p.suffix in (".service", ".timer"))
    if not user:
        return subprocess.run([*args, "verify", *units], capture_output=True, text=True, env=env, timeout=60)
    # A short runtime directory: the user units systemd loads beside ours (gpg-agent's sockets) put
    # socket paths under it, and a socket path is limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="xdg", dir="/tmp") as runtime:
        env["XDG_RUNTIME_DIR"] = runtime
        return subprocess.run([*args, "--user", "verify", *units], capture_output=True, text=True, env=env,
                              timeout=60)  # fmt: skip


def sections(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "my root"  # a space: ExecStart= quoting and ReadWritePaths= must cope
    (base / "bindings").mkdir(parents=True)
    return base


def write_with_cli(root: Path, target: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    return subprocess.run([str(SCRIPT), "ops", "units", "--root", str(root), "--write", str(target), *extra],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_every_rendered_unit_passes_systemd_analyze_verify(root: Path, tmp_path: Path, user: bool):
    target = tmp_path / "units"
    done = write_with_cli(root, target, *(["--user"] if user else []))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted(unit_names())
    checked = analyze(target, user=user)
    # verify only warns (exit 0) on an unknown key or a bad value: any output is a finding.
    assert checked.returncode == 0 and checked.stderr.strip() == "" and checked.stdout.strip() == "", checked.stderr


def test_the_verify_check_catches_a_broken_unit(root: Path, tmp_path: Path):
    target = tmp_path / "units"
    assert write_with_cli(root, target).returncode == 0
    timer = target / "spine-comms-verify.timer"
    timer.write_text(timer.read_text().replace("Persistent=true", "Persistant=true"))
    service = target / "spine-comms-outbox-flush.service"
    service.write_text(service.read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
    checked = analyze(target)
    assert "spine-comms-verify.timer:8: Unknown key 'Persistant'" in checked.stderr
    assert re.search(r"spine-comms-outbox-flush.service:[0-9]+: Failed to parse protect system", checked.stderr)


def test_services_are_hardened_and_may_write_only_the_root(root: Path):
    units = render_units(find_root(str(root), {}))
    services = {n: sections(t) for n, t in units.items() if n.endswith(".service")}
    assert len(services) == 5
    for name, unit in services.items():
        service = dict(unit["Service"])
        for key, value in HARDENING.items():
            assert service[key] == value, (name, key)
        assert service["ReadWritePaths"] == f'"{root.resolve()}"', name
        assert f'--root "{root.resolve()}"' in service["ExecStart"], name


def test_the_watcher_is_a_notify_service_with_a_watchdog_and_restart(root: Path):
    unit = sections(render_units(find_root(str(root), {}))["spine-comms-inbox-watch.service"])
    service = dict(unit["Service"])
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"
    assert " communications.inbox.watch " in service["ExecStart"]
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def test_timers_run_the_capabilities_so_that_they_act(root: Path):
    units = render_units(find_root(str(root), {}))
    calendar = dict(sections(units["spine-comms-calendar-sync.service"])["Service"])["ExecStart"]
    assert " calendar.sync.execute --execute --yes " in calendar  # manual approval: a dry run without both
    prune = dict(sections(units["spine-comms-receipts-prune.service"])["Service"])["ExecStart"]
    assert " receipts.prune --execute --yes " in prune
    verify = dict(sections(units["spine-comms-verify.service"])["Service"])["ExecStart"]
    assert " verify.pack.run communications " in verify
    for name in unit_names():
        if name.endswith(".timer"):
            timer = dict(sections(units[name])["Timer"])
            assert timer["Unit"] == name.replace(".timer", ".service") and timer["Persistent"] == "true"


def test_a_mailroom_outside_the_root_is_writable_too(root: Path, tmp_path: Path):
    runtime = tmp_path / "runtime"
    (root / "bindings" / "mailroom.runtime.contract.yaml").write_text(f"active: true\nruntime_root: {runtime}\n")
    service = dict(sections(render_units(find_root(str(root), {}))["spine-comms-verify.service"])["Service"])
    assert service["ReadWritePaths"].startswith(f'"{root.resolve()}" ')
    assert f"-{runtime}/inbox" in service["ReadWritePaths"] and f"-{runtime}/state" in service["ReadWritePaths"]


def test_user_units_want_the_default_target_and_read_the_users_env_file(root: Path):
    unit = sections(render_units(find_root(str(root), {}), user_mode=True)["spine-comms-inbox-watch.service"])
    assert dict(unit["Install"])["WantedBy"] == "default.target"
    assert dict(unit["Service"])["EnvironmentFile"] == "-%h/.config/spine-comms/spine-comms.env"
    assert "User" not in dict(unit["Service"])


def test_run_as_sets_the_user_of_system_units(root: Path):
    service = dict(
        sections(render_units(find_root(str(root), {}), run_as="spine")["spine-comms-verify.service"])["Service"]
    )
    assert service["User"] == "spine" and service["Group"] == "spine"


def test_write_never_replaces_a_different_file_without_force(root: Path, tmp_path: Path):
    target = tmp_path / "units"
    assert write_with_cli(root, target).returncode == 0
    again = write_with_cli(root, target)
    assert again.returncode == 0  # the same text: nothing in the way
    mine = target / "spine-comms-verify.timer"
    mine.write_text("# the operator's own edit\n")
    refused = write_with_cli(root, target)
    assert refused.returncode == 2 and "spine-comms-verify.timer" in refused.stderr
    assert mine.read_text() == "# the operator's own edit\n"
    assert write_with_cli(root, target, "--force").returncode == 0
    assert mine.read_text() != "# the operator's own edit\n"


def test_printing_writes_nothing_and_shows_every_unit(root: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_")}
    done = subprocess.run([str(SCRIPT), "ops", "units", "--root", str(root)], capture_output=True, text=True, env=env)
    assert done.returncode == 0
    assert [line[len("# file: ") :] for line in done.stdout.splitlines() if line.startswith("# file: ")] == unit_names()
    assert not any(line.strip("-") == "" and len(line) >= 8 for line in done.stdout.splitlines())


@pytest.mark.parametrize(("run_as", "ceiling"), [(None, 4.0), ("spine", 2.0)], ids=["as-root", "run-as"])
def test_systemd_rates_every_service_well_hardened(root: Path, tmp_path: Path, run_as: str | None, ceiling: float):
    # `systemd-analyze security --offline=yes` scores the unit files themselves: 0 is locked down, 10 is
    # wide open. Measured: 3.7 as root (it keeps its capabilities, to write a root another user owns),
    # 1.6 with --run-as (no capability at all).
    target = tmp_path / "units"
    assert write_with_cli(root, target, *(["--run-as", run_as] if run_as else [])).returncode == 0
    for service in sorted(target.glob("*.service")):
        done = subprocess.run([shutil.which("systemd-analyze") or "systemd-analyze", "security", "--offline=yes",
                               "--no-pager", str(service)], capture_output=True, text=True, timeout=60)  # fmt: skip
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
        assert score, done.stdout + done.stderr
        assert float(score.group(1)) <= ceiling, (service.name, score.group(1))
