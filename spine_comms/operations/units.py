"""systemd units and timers for one root, rendered from the templates shipped in operations/systemd/.

One long-running service (the inbox watcher, IMAP IDLE) and four timers with their
oneshot services: the communications verify pack, the outbox flush, the calendar
sync and the receipt prune. Each ExecStart names the installed executable and the
root explicitly, and carries the flags that make the capability act, read from the
capability itself (its own --execute/--yes options, or the runner's for capabilities
the registry gives a default_mode), so a unit never runs a dry run by mistake.
"""

from __future__ import annotations

import inspect
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

from spine_comms.core.registry import load_registry
from spine_comms.core.root import Root, mailroom_paths

PREFIX = "spine-comms"


@dataclass(frozen=True)
class TimedJob:
    name: str  # unit name without suffix
    what: str
    capability: str
    arguments: tuple[str, ...]
    on_calendar: str
    schedule_words: str
    jitter: str
    timeout: str
    stale_after_seconds: int  # the doctor calls its latest receipt stale after this: three missed runs


WATCH_UNIT = f"{PREFIX}-inbox-watch"
WATCH_CAPABILITY = "communications.inbox.watch"
JOBS = (
    TimedJob(f"{PREFIX}-verify", "verify pack communications", "verify.pack.run", ("communications",),
             "*:0/15", "every 15 minutes", "60s", "15min", 3 * 15 * 60),
    TimedJob(f"{PREFIX}-outbox-flush", "outbox flush", "communications.outbox.flush", (),
             "*:0/5", "every 5 minutes", "30s", "10min", 3 * 5 * 60),
    TimedJob(f"{PREFIX}-calendar-sync", "calendar sync", "calendar.sync.execute", (),
             "hourly", "hourly", "5min", "30min", 3 * 3600),
    TimedJob(f"{PREFIX}-receipts-prune", "receipt retention (receipts.prune)", "receipts.prune", (),
             "daily", "daily", "1h", "30min", 3 * 86400),
)  # fmt: skip


def unit_names() -> list[str]:
    """Every unit file `render_units` writes, in order."""
    names = [f"{WATCH_UNIT}.service"]
    for job in JOBS:
        names += [f"{job.name}.service", f"{job.name}.timer"]
    return names


def acting_flags(cap_id: str) -> list[str]:
    """The flags that make `cap_id` act rather than plan, as this version of the capability spells them."""
    spec = load_registry().get(cap_id)
    if spec is None:
        raise LookupError(f"{cap_id} is not in the registry")
    params = inspect.signature(spec.load().function).parameters
    if "execute" in params or "yes" in params:  # the capability's own options
        return [flag for name, flag in (("execute", "--execute"), ("yes", "--yes")) if name in params]
    if spec.safety == "read-only" or "default_mode" not in spec.entry:
        return []
    # The runner's options (core/approval.py): --execute acts, a manual-approval capability also needs --yes.
    return ["--execute", *(["--yes"] if spec.approval != "auto" else [])]


def default_executable() -> Path:
    beside = Path(sys.executable).parent / "spine-comms"
    found = beside if beside.is_file() else Path(shutil.which("spine-comms") or beside)
    return found.absolute()


def quote(word: str) -> str:
    """One ExecStart= word: `%` and `$` escaped for systemd's specifiers and variables, quoted when needed."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if any(ch in escaped for ch in " \t\"'\\;") or not escaped:
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def path_value(path: Path) -> str:
    """A path in a space-separated list setting (ReadWritePaths=): quoted when it holds a space."""
    text = str(path).replace("%", "%%")
    return f'"{text}"' if " " in text else text


def _template(name: str) -> Template:
    return Template(resources.files("spine_comms.operations").joinpath("systemd", name).read_text(encoding="utf-8"))


def render_units(
    root: Root,
    *,
    executable: Path | None = None,
    user_mode: bool = False,
    run_as: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, str]:
    """{file name: text} for every unit, ready for /etc/systemd/system or ~/.config/systemd/user."""
    exe = str((executable or default_executable()).absolute())
    writable = [root.path]
    mailroom = mailroom_paths(root, env or {})
    for lane in (mailroom.inbox, mailroom.outbox, mailroom.state, mailroom.logs):
        if not lane.is_relative_to(root.path) and not any(lane.is_relative_to(w) for w in writable):
            writable.append(lane)
    environment_file = f"{'%h/.config' if user_mode else '/etc'}/spine-comms/spine-comms.env"
    base = {
        "root": str(root.path).replace("%", "%%"),
        "wanted_by": "default.target" if user_mode else "multi-user.target",
        "systemctl_scope": "--user " if user_mode else "",
        # "-": a runtime root that does not exist yet must not stop the unit from starting.
        "read_write": " ".join([path_value(root.path), *("-" + path_value(p) for p in writable[1:])]),
        # Home directories read-only, not hidden: `file:` secrets, a `cmd:` secret tool or a virtual
        # environment often live there. ReadWritePaths= opens the root again when it lives in one.
        "protect_home": "read-only",
        "environment_file": environment_file,
        # A service user needs no capability at all; root keeps its own (a root owned by another user).
        "run_as": "" if user_mode or not run_as else f"User={run_as}\nGroup={run_as}\nCapabilityBoundingSet=\n",
    }

    def command(cap_id: str, *arguments: str) -> str:
        words = [exe, cap_id, *arguments, *acting_flags(cap_id), "--root", str(root.path)]
        return " ".join(quote(w) for w in words)

    common = _template("common.in")
    units = {}
    watch_common = common.substitute(base, name=WATCH_UNIT).rstrip("\n")
    units[f"{WATCH_UNIT}.service"] = _template("watch.service.in").substitute(
        base, common=watch_common, exec_watch=command(WATCH_CAPABILITY)
    )
    for job in JOBS:
        values = {**base, "name": job.name, "what": job.what}
        units[f"{job.name}.service"] = _template("oneshot.service.in").substitute(
            values,
            common=common.substitute(values).rstrip("\n"),
            exec_start=command(job.capability, *job.arguments),
            timeout=job.timeout,
        )
        units[f"{job.name}.timer"] = _template("timer.in").substitute(
            values, on_calendar=job.on_calendar, schedule_words=job.schedule_words, jitter=job.jitter
        )
    return units


SYSTEM_UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
                    "/usr/lib/systemd/system", "/lib/systemd/system")  # fmt: skip
USER_UNIT_DIRS = ("~/.config/systemd/user", "/etc/systemd/user", "/usr/lib/systemd/user")


@dataclass
class InstalledUnit:
    name: str
    path: Path | None = None  # None: not found in any directory
    root: str | None = None  # the --root of its ExecStart (timers: of their service)
    words: list[str] = field(default_factory=list)  # its service's ExecStart, split as systemd would
    enabled: bool = False  # a symlink to it in a *.wants/ directory next to it

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path) if self.path else None, "root": self.root,
                "enabled": self.enabled}  # fmt: skip


def find_installed(directories: list[Path] | None = None) -> dict[str, InstalledUnit]:
    """Where each of `unit_names()` is installed (the first directory that has it, as systemd reads them)."""
    dirs = directories or [Path(d).expanduser() for d in (*SYSTEM_UNIT_DIRS, *USER_UNIT_DIRS)]
    found = {name: InstalledUnit(name) for name in unit_names()}
    for name, unit in found.items():
        for directory in dirs:
            path = directory / name
            if not path.is_file():
                continue
            unit.path = path
            service = path if name.endswith(".service") else directory / name.replace(".timer", ".service")
            unit.words = _exec_words(service)
            unit.root = _root_of(unit.words)
            unit.enabled = any(directory.glob(f"*.wants/{name}"))
            break
    return found


def _exec_words(service: Path) -> list[str]:
    import shlex

    try:
        text = service.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            try:
                return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line[len("ExecStart=") :])]
            except ValueError:
                return []
    return []


def _root_of(words: list[str]) -> str | None:
    return words[words.index("--root") + 1] if "--root" in words[:-1] else None


def missing_flags(unit: InstalledUnit) -> list[str]:
    """The acting flags this version needs that the installed unit's ExecStart lacks (a dry run by mistake)."""
    capability = next((w for w in unit.words[1:] if not w.startswith("-")), None)
    if capability is None or load_registry().get(capability) is None:
        return []
    return [flag for flag in acting_flags(capability) if flag not in unit.words]
