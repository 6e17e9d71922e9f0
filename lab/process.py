"""Starting, watching and stopping the lab daemons, by recorded pid only.

Every daemon runs through `<lab>/bin/lab-ns`: a private mount namespace in
which /etc/resolv.conf points at the lab's Knot and /etc/dkimkeys is the lab's
OpenDKIM directory. The host's files are never touched.

A daemon that dies while the lab runs is found by `dead_daemons` (its exit
status when it was our child, and the end of its logs), so a test can fail
naming it at once instead of timing out on the 451 or silence it leaves.

Each daemon gets SPINE_LAB_DIR=<lab dir> in its environment (Dovecot and
Postfix are told to pass it on to their children), so a scan of /proc finds
every process of one lab and of no other.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lab.layout import Lab

ENV_MARK = "SPINE_LAB_DIR"

NS_WRAPPER = """#!/bin/sh
# Run a command as the lab daemons see the machine: in a private mount namespace
# where /etc/resolv.conf names the lab's Knot ({resolver}:53) and /etc/dkimkeys is
# the lab's OpenDKIM directory. Written by `python -m lab start`.
# Usage: {lab}/bin/lab-ns COMMAND [ARGS...]   (root with CAP_SYS_ADMIN)
exec unshare --mount --propagation private /bin/sh -ec '
  mount --bind "$0/etc/resolv.conf" /etc/resolv.conf
  mount --bind "$0/dkim" /etc/dkimkeys
  exec "$@"' "{lab}" "$@"
"""


@dataclass
class Daemon:
    name: str
    argv: list[str]
    # "user:group" for daemons that would otherwise keep root (Radicale, Xandikos).
    run_as: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # For a daemon that forks away (Postfix): argv exits once it is up, and the
    # real pid is read from here.
    pidfile: Path | None = None
    # Seconds between SIGTERM and SIGKILL at stop.
    kill_after: float = 8.0


@dataclass
class Running:
    name: str
    pid: int
    starttime: int  # /proc/<pid>/stat field 22: tells a reused pid from ours
    kill_after: float


def write_wrapper(lab: Lab) -> None:
    wrapper = lab.path("bin", "lab-ns")
    wrapper.parent.mkdir(mode=0o755, exist_ok=True)
    wrapper.write_text(NS_WRAPPER.format(lab=lab.dir, resolver=lab.resolver_ip))
    wrapper.chmod(0o755)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def is_alive(run: Running) -> bool:
    stat = _stat(run.pid)
    return stat is not None and stat[0] != "Z" and stat[1] == run.starttime


def base_env(lab: Lab) -> dict[str, str]:
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(lab.dir),
        ENV_MARK: str(lab.dir),
    }


def spawn(lab: Lab, daemon: Daemon) -> Running:
    argv = [str(lab.path("bin", "lab-ns"))]
    if daemon.run_as:
        user, group = daemon.run_as.split(":")
        ids = ["--reuid", user, "--regid", group]
        groups = ["--clear-groups"] if user.isdigit() else ["--init-groups"]
        argv += ["setpriv", *ids, *groups, "--"]
    argv += daemon.argv
    log = open(lab.log / f"{daemon.name}.out", "ab")  # noqa: SIM115 - handed to the child
    with log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=lab.dir,
            env={**base_env(lab), **daemon.env},
            start_new_session=True,  # a Ctrl-C in the starting shell does not reach the lab
        )
    pid = proc.pid
    if daemon.pidfile:
        if proc.wait(timeout=20) != 0:
            raise StartError(daemon.name, lab, f"exited with {proc.returncode}")
        pid = int(daemon.pidfile.read_text().split()[0])
    stat = _stat(pid)
    if stat is None:
        raise StartError(daemon.name, lab, "exited at once")
    return Running(daemon.name, pid, stat[1], daemon.kill_after)


class StartError(RuntimeError):
    def __init__(self, name: str, lab: Lab, why: str) -> None:
        log = lab.log / f"{name}.out"
        tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.exists() else []
        super().__init__(f"{name} {why}; last lines of {log}:\n" + "\n".join(tail))
        self.name = name


def save(lab: Lab, running: Iterable[Running]) -> None:
    records = {r.name: vars(r) for r in running}
    path = lab.run / "pids.json"
    path.write_text(json.dumps(records, indent=2) + "\n")


def load(lab: Lab) -> list[Running]:
    path = lab.run / "pids.json"
    if not path.exists():
        return []
    return [Running(**rec) for rec in json.loads(path.read_text()).values()]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_ready(
    lab: Lab,
    running: list[Running],
    ports: dict[str, int],
    extra: dict[str, Callable[[], bool]],
    timeout: float,
) -> None:
    """Until every port accepts and every extra check is true; fail fast if a daemon died."""
    pending: dict[str, Callable[[], bool]] = {
        f"port {port} ({name})": (lambda p=port: port_accepts(p)) for name, port in ports.items()
    }
    pending.update(extra)
    deadline = time.monotonic() + timeout
    while pending:
        for what, check in list(pending.items()):
            if check():
                del pending[what]
        if not pending:
            return
        for run in running:
            if not is_alive(run):
                raise StartError(run.name, lab, "died while the lab was starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"lab not ready after {timeout:.0f} s: waiting for {sorted(pending)}")
        time.sleep(0.03)


@dataclass
class Dead:
    name: str
    pid: int
    how: str  # "killed by signal 11 (SIGSEGV)", "exited with status 1", or "gone"
    logs: dict[str, list[str]]  # log file -> its last lines

    def describe(self) -> str:
        lines = [f"lab daemon {self.name} (pid {self.pid}) is dead: {self.how}"]
        for path, tail in self.logs.items():
            lines += [f"--- last lines of {path}:", *tail]
        return "\n".join(lines)


def dead_daemons(lab: Lab, *, tail: int = 20) -> list[Dead]:
    """Every recorded daemon of this lab that no longer runs, with how it ended and its logs."""
    found = []
    for run in load(lab):
        if is_alive(run):
            continue
        logs = {}
        for log in (lab.log / f"{run.name}.out", lab.log / f"{run.name}.log"):
            if log.exists():
                logs[str(log)] = log.read_text(errors="replace").splitlines()[-tail:]
        found.append(Dead(run.name, run.pid, _how_it_ended(run.pid), logs))
    return found


_ENDINGS: dict[int, str] = {}  # pid -> how it ended: waitpid tells it only once


def _how_it_ended(pid: int) -> str:
    """The exit status, when the daemon was our child (a lab started in-process)."""
    if pid not in _ENDINGS:
        _ENDINGS[pid] = _wait_status(pid)
    return _ENDINGS[pid]


def _wait_status(pid: int, *, grace: float = 3.0) -> str:
    # A multithreaded daemon's leader shows as a zombie in /proc while its other
    # threads are still exiting, and waitpid cannot collect it until they have:
    # wait a moment for the status rather than report "a zombie".
    deadline = time.monotonic() + grace
    while True:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "gone (not our child: its exit status is not known here)"
        if reaped != 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if reaped == 0:
        return "a zombie"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "?"
        return f"killed by signal {number} ({name})"
    return f"exited with status {os.WEXITSTATUS(status)}"


def lab_pids(lab_dir: Path) -> list[int]:
    """Every live process of this lab, found by scanning /proc (for `status`, the
    leftovers sweep at stop, and the tests).

    A lab process carries the lab mark in its environment, or works inside the
    lab dir (cwd) and either names the lab dir on its command line or has the
    lab's Dovecot process title (Dovecot rewrites its children's environment and
    titles). A shell or `tail` that the user runs in the lab dir is neither.
    """
    mark = f"{ENV_MARK}={lab_dir}".encode()
    inside = str(lab_dir).encode()
    dovecot_title = f"dovecot-{dovecot_instance(lab_dir)}/".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), os.getppid()):
            continue  # `cd <lab> && python -m lab stop --dir .` is not the lab
        proc = Path(entry.path)
        try:
            stat = _stat(int(entry.name))
            if stat is None or stat[0] == "Z":
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd").encode()
        except OSError:
            continue
        works_inside = cwd == inside or cwd.startswith(inside + b"/")
        names_lab = inside + b"/" in cmdline or cmdline.startswith(dovecot_title)
        if mark in environ or (works_inside and names_lab):
            found.append(int(entry.name))
    return sorted(found)


def dovecot_instance(lab_dir: Path) -> str:
    """Dovecot's instance_name, which prefixes its process titles: one per lab dir."""
    return lab_dir.name


def stop(lab: Lab, running: list[Running]) -> None:
    """SIGTERM every recorded daemon, SIGKILL it after its grace, then sweep leftovers."""
    start = time.monotonic()
    alive = [r for r in running if is_alive(r)]
    for run in alive:
        _signal(run.pid, signal.SIGTERM)
    killed: set[str] = set()
    while alive:
        now = time.monotonic() - start
        for run in alive:
            if now >= run.kill_after and run.name not in killed:
                _signal(run.pid, signal.SIGKILL)
                killed.add(run.name)
        time.sleep(0.02)
        alive = [r for r in alive if is_alive(r)]
    for run in running:
        _reap(run.pid)
    # Children whose master was SIGKILLed, or that outlived it: only processes
    # marked as this lab's are touched.
    for _ in range(50):
        leftovers = lab_pids(lab.dir)
        if not leftovers:
            return
        for pid in leftovers:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.02)


def _reap(pid: int) -> None:
    """Collect the exit status when the daemon is our child (a lab started in-process,
    as the test fixture does), so no zombie lingers; otherwise init does it."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
