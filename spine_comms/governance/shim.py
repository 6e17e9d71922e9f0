"""The shim spine.install puts under the spine's ops/plugins/communications/bin/, and how to read one back.

The spine's runner (cap.sh) runs a capability's `command` from $SPINE_CODE and
checks (D63) that its `./` target exists and is executable; it strips one
leading `--` and passes the rest verbatim, so the shim forwards "$@" to the
click/argparse-style options of `spine-comms <id>` (arg_protocol `argparse`).
The console script's absolute path is recorded at install time, because cron,
launchd and the spine's runner do not share the operator's PATH; SPINE_COMMS_BIN
overrides it (a moved virtual environment, a wrapper).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

PLUGIN = "communications"
BIN_DIR = f"ops/plugins/{PLUGIN}/bin"
ARG_PROTOCOL = "argparse"
MARKER = "# spine-comms shim"
SCRIPT_PREFIX = "spine-comms-"  # never the name of one of the spine's own scripts (communications-inbox-poll...)
_EXEC = re.compile(r'^exec "\$SPINE_COMMS_BIN" ([A-Za-z0-9._-]+) "\$@"$', re.MULTILINE)


def script_name(cap_id: str) -> str:
    return SCRIPT_PREFIX + cap_id.replace(".", "-").replace("_", "-")


def command_for(cap_id: str) -> str:
    return f"./{BIN_DIR}/{script_name(cap_id)}"


def render(cap_id: str, executable: str) -> str:
    return "\n".join(
        [
            "#!/bin/sh",
            f"{MARKER} for {cap_id}: written by `spine-comms spine.install`; a new install overwrites it.",
            "# Set SPINE_COMMS_BIN to run another spine-comms than the one recorded at install time.",
            f"SPINE_COMMS_BIN=${{SPINE_COMMS_BIN:-{shlex.quote(executable)}}}",
            f'exec "$SPINE_COMMS_BIN" {cap_id} "$@"',
            "",
        ]
    )


def read_capability(path: Path) -> str | None:
    """The capability id a spine-comms shim runs, or None when the file is not one of ours."""
    try:
        with path.open("rb") as handle:
            text = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return None
    if MARKER not in text:
        return None
    match = _EXEC.search(text)
    return match.group(1) if match else None
