"""spine-comms run as a process, as cron and the spine's runner run it: one way for every lab test.

Each test states the environment it wants in `env`; the operator's overrides a developer's
shell may carry (the spine's runtime paths, mailbox passwords and users, tokens, lock waits)
are dropped first, so a test never passes or fails because of the shell it ran in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SPINE_COMMS = str(Path(sys.executable).parent / "spine-comms")
OVERRIDES = ("SPINE_", "STALWART_", "MAILROOM_", "GAPS_", "OPS_", "CALENDAR_HOME")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(OVERRIDES)} | (extra or {})


@dataclass(frozen=True)
class CapabilityRun:
    code: int
    envelope: dict | None  # the --json envelope (None with json_out=False)
    stdout: str
    stderr: str


def run_capability(
    root: Path,
    capability: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    json_out: bool = True,
    input: str | None = None,
    stdin=None,
) -> CapabilityRun:
    """Run `spine-comms <capability> --root <root> [--json] <args>`; bad input must never give a traceback."""
    argv = [SPINE_COMMS, capability, "--root", str(root), *(["--json"] if json_out else []), *args]
    done = subprocess.run(
        argv, input=input, stdin=stdin if input is None else None, capture_output=True, text=True,
        timeout=timeout, env=clean_env(env), check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    envelope = None
    if json_out:
        assert done.stdout.startswith("{"), (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
        envelope = json.loads(done.stdout)
    return CapabilityRun(done.returncode, envelope, done.stdout, done.stderr)
