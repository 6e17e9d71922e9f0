"""The spine's receipt retention policy, and which receipt directories it lets go.

`ops/bindings/evidence.retention.policy.yaml` (spine-owned) declares, under
`retention_classes.session_receipts`, a `path_pattern` relative to the root and
`retention_days`. Without the file the spine's own values apply:
`receipts/sessions/RCAP-*`, 14 days. The latest receipt of each capability is
always kept, however old: a gate that reads "the latest receipt of X" must still
find one after a prune.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from spine_comms.core.errors import ContractError, Problem
from spine_comms.core.root import Root
from spine_comms.core.yamlfile import YamlDocument, load_yaml

POLICY_FILE = "evidence.retention.policy.yaml"
RETENTION_CLASS = "session_receipts"
DEFAULT_PATTERN = "receipts/sessions/RCAP-*"
DEFAULT_DAYS = 14
# RCAP-<YYYYMMDD-HHMMSS>__<capability>__R<random>: the time is local, as the spine's cap.sh writes it.
RUN_DIR = re.compile(r"^RCAP-(?P<stamp>[0-9]{8}-[0-9]{6})__(?P<capability>[A-Za-z0-9._-]+)__R[A-Za-z0-9]+$")


@dataclass(frozen=True)
class RetentionPolicy:
    pattern: str
    days: int
    source: str  # the policy file, or "default"
    purge_eligible: bool = True

    @property
    def directory(self) -> str:
        return os.path.dirname(self.pattern)

    @property
    def name_glob(self) -> str:
        return os.path.basename(self.pattern)


@dataclass
class ReceiptDir:
    path: Path
    capability: str
    started: datetime  # aware
    age_days: float
    bytes: int = 0
    files: int = 0

    def to_dict(self) -> dict:
        return {
            "directory": str(self.path),
            "capability": self.capability,
            "age_days": round(self.age_days, 2),
            "bytes": self.bytes,
            "files": self.files,
        }


@dataclass
class PrunePlan:
    policy: RetentionPolicy
    directory: Path
    expired: list[ReceiptDir] = field(default_factory=list)
    kept_latest: list[ReceiptDir] = field(default_factory=list)  # expired, but the latest of its capability
    kept_young: int = 0
    skipped: list[dict] = field(default_factory=list)  # symlinks and names that are no run key


def load_policy(root: Root) -> tuple[RetentionPolicy, YamlDocument | None]:
    path = root.bindings_dir / POLICY_FILE
    if not path.is_file():
        return RetentionPolicy(DEFAULT_PATTERN, DEFAULT_DAYS, "default"), None
    doc = load_yaml(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    key: tuple = ("retention_classes", RETENTION_CLASS)
    entry = (data.get("retention_classes") or {}).get(RETENTION_CLASS)
    if entry is None and isinstance(data.get(RETENTION_CLASS), dict):  # a flat policy names the class at the top
        key, entry = (RETENTION_CLASS,), data[RETENTION_CLASS]
    if entry is None:
        return RetentionPolicy(DEFAULT_PATTERN, DEFAULT_DAYS, f"{path} (no {RETENTION_CLASS}: default)"), doc
    problems = []
    if not isinstance(entry, dict):
        problems.append(Problem(str(path), doc.line_of(key), ".".join(key), "expected a mapping"))
        raise ContractError(f"{path}: invalid retention policy", problems=problems)
    pattern = entry.get("path_pattern", DEFAULT_PATTERN)
    days = entry.get("retention_days", DEFAULT_DAYS)
    if not isinstance(pattern, str) or not _safe_pattern(pattern):
        problems.append(
            Problem(
                str(path),
                doc.line_of((*key, "path_pattern")),
                "path_pattern",
                f"{pattern!r}: expected a directory inside the root and a name pattern, e.g. receipts/sessions/RCAP-*",
            )
        )
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        problems.append(
            Problem(
                str(path),
                doc.line_of((*key, "retention_days")),
                "retention_days",
                f"{days!r}: expected a whole number of days, at least 1",
            )
        )
    if problems:
        raise ContractError(f"{path}: invalid retention policy", problems=problems)
    eligible = entry.get("purge_eligible", True) is not False
    return RetentionPolicy(pattern, days, str(path), eligible), doc


def _safe_pattern(pattern: str) -> bool:
    """Wildcards only in the last part, no `..`, not absolute: the pattern cannot reach out of the root."""
    parts = pattern.split("/")
    if pattern.startswith("/") or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        return False
    return not any(ch in part for part in parts[:-1] for ch in "*?[")


def plan_prune(root: Root, policy: RetentionPolicy, now: datetime) -> PrunePlan:
    """What the policy lets go, without touching anything. Symlinks are never followed."""
    directory = root.path / policy.directory
    plan = PrunePlan(policy, directory)
    if not _inside_root(root.path, directory):
        raise ContractError(
            f"{directory}: the receipts directory is a symlink or leaves the root {root.path}",
            hint="prune only touches a real directory inside the root; point the policy's path_pattern there",
        )
    if not directory.is_dir():
        return plan
    by_capability: dict[str, list[ReceiptDir]] = {}
    cutoff = timedelta(days=policy.days)
    with os.scandir(directory) as entries:
        for entry in entries:
            if not fnmatch.fnmatchcase(entry.name, policy.name_glob):
                continue
            if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                plan.skipped.append(
                    {"directory": entry.path, "reason": "symlink" if entry.is_symlink() else "not a directory"}
                )
                continue
            match = RUN_DIR.match(entry.name)
            if not match:
                plan.skipped.append({"directory": entry.path, "reason": "not a capability run key"})
                continue
            started = _started(match["stamp"], entry)
            receipt = ReceiptDir(Path(entry.path), match["capability"], started, (now - started) / timedelta(days=1))
            by_capability.setdefault(receipt.capability, []).append(receipt)
    for capability in sorted(by_capability):
        runs = sorted(by_capability[capability], key=lambda r: (r.started, r.path.name), reverse=True)
        for index, receipt in enumerate(runs):
            if now - receipt.started <= cutoff:
                plan.kept_young += 1
                continue
            receipt.bytes, receipt.files = disk_usage(receipt.path)
            (plan.kept_latest if index == 0 else plan.expired).append(receipt)
    return plan


def _inside_root(root: Path, directory: Path) -> bool:
    """Every component from the root down is a real directory (or absent): no symlink leads elsewhere."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return False
    return directory.resolve().is_relative_to(root.resolve()) if directory.exists() else True


def _started(stamp: str, entry: os.DirEntry) -> datetime:
    try:
        return datetime.strptime(stamp, "%Y%m%d-%H%M%S").astimezone()  # local time, as cap.sh writes it
    except ValueError:
        return datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime).astimezone()


def disk_usage(directory: Path) -> tuple[int, int]:
    """Bytes and files under `directory`, links counted as themselves and never followed."""
    total = files = 0
    for base, dirs, names in os.walk(directory, followlinks=False):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
                files += 1
            except OSError:
                pass
    return total, files
