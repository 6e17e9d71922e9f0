"""Manual approval for mutating capabilities that change what others rely on.

A capability with approval `manual` does its work only when a person (or the
spine's runner, which asks for approval itself) said yes: `--yes`, or the
spine's own variables SPINE_CAP_AUTO_APPROVE / OPS_CAP_AUTO_APPROVE, or a run
under the spine's runner (SPINE_CAP_RUN_KEY). Refusing happens before any
network call, as a usage error (exit 2).
"""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.core.errors import UsageError
from spine_comms.core.receipts import RUN_KEY_RE

APPROVAL_ENVS = ("SPINE_CAP_AUTO_APPROVE", "OPS_CAP_AUTO_APPROVE")
APPROVED_VALUES = {"1", "y", "yes", "true", "auto", "always"}

YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        help="Approve --execute (manual approval). Also approved by SPINE_CAP_AUTO_APPROVE or "
        "OPS_CAP_AUTO_APPROVE=yes, or when run by the spine's runner (SPINE_CAP_RUN_KEY).",
    ),
]


def approved(env: dict[str, str]) -> bool:
    if any(env.get(name, "").strip().lower() in APPROVED_VALUES for name in APPROVAL_ENVS):
        return True
    return bool(RUN_KEY_RE.match(env.get("SPINE_CAP_RUN_KEY", "")))


def require_approval(env: dict[str, str], yes: bool, action: str) -> None:
    """Raise a usage error unless --yes or the environment approves `action` (e.g. 'x --execute')."""
    if not (yes or approved(env)):
        raise UsageError(
            f"{action} needs approval",
            hint="add --yes, or set SPINE_CAP_AUTO_APPROVE=yes; run without --execute to see the plan",
        )
