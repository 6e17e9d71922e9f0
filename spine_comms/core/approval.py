"""Safety, decided once by the runner from the registry: dry run or act, and approval.

Every mutating capability takes the same flags: `--execute` acts, `--dry-run`
changes nothing, and a manual-approval one also takes `--yes`. Without either
flag the registry's `default_mode` decides: `dry-run` is the rule; `execute` is
declared only where the spine's own capability of that name (or its agents'
tool) acts by default. A destructive capability never acts on a default, and a
manual (or operator) approval one acts only with `--yes`, the spine's approval
variables SPINE_CAP_AUTO_APPROVE / OPS_CAP_AUTO_APPROVE, or under the spine's
runner (SPINE_CAP_RUN_KEY), which asked for approval itself. A refusal happens
before the capability runs, as a usage error (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from spine_comms.core.errors import UsageError
from spine_comms.core.receipts import RUN_KEY_RE

APPROVAL_ENVS = ("SPINE_CAP_AUTO_APPROVE", "OPS_CAP_AUTO_APPROVE")
APPROVED_VALUES = {"1", "y", "yes", "true", "auto", "always"}
DEFAULT_MODES = ("dry-run", "execute")
READ_ONLY = "read-only"
DESTRUCTIVE = "destructive"


@dataclass(frozen=True)
class SafetyFlags:
    """What the command line said: --execute, --dry-run, --yes."""

    execute: bool = False
    dry_run: bool = False
    yes: bool = False


@dataclass(frozen=True)
class Safety:
    """What the registry says about one capability."""

    safety: str
    approval: str
    default_mode: str | None = None

    @property
    def mutating(self) -> bool:
        return self.safety != READ_ONLY

    @property
    def needs_approval(self) -> bool:
        return self.approval != "auto"

    @property
    def acts_by_default(self) -> bool:
        # A missing or unknown default is a dry run; a destructive one is one whatever the registry says.
        return self.mutating and self.safety != DESTRUCTIVE and self.default_mode == "execute"


def approved(env: dict[str, str]) -> bool:
    if any(env.get(name, "").strip().lower() in APPROVED_VALUES for name in APPROVAL_ENVS):
        return True
    return bool(RUN_KEY_RE.match(env.get("SPINE_CAP_RUN_KEY", "")))


def decide(capability: str, safety: Safety, flags: SafetyFlags, env: dict[str, str]) -> bool | None:
    """True to act, False for a dry run, None for a read-only capability; a usage error when refused."""
    if not safety.mutating:
        return None
    if flags.execute and flags.dry_run:
        raise UsageError("--execute and --dry-run contradict each other: give one")
    act = flags.execute or (safety.acts_by_default and not flags.dry_run)
    if act and safety.needs_approval and not (flags.yes or approved(env)):
        how = "--execute" if flags.execute else "acting (its default)"
        raise UsageError(
            f"{capability} {how} needs approval ({safety.approval})",
            hint="add --yes, or set SPINE_CAP_AUTO_APPROVE=yes; without --execute it is a dry run that changes nothing",
        )
    return act
