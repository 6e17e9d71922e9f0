"""Secrets by reference, and the redactor that keeps every resolved value out of output.

References: `env:NAME`, `file:PATH`, `cmd:COMMAND`, and the spine's
`infisical://spine/<path>/<KEY>`, resolved through the spine's own agent script
(`ops/tools/infisical-agent.sh get infrastructure prod <KEY>`) when the root has it.
The spine's variable names (`STALWART_OPS_PASSWORD` ...) override any reference.
"""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spine_comms.core.errors import Problem, SecretError

REDACTED = "[REDACTED]"
# A private key is a secret whoever sent it: a server that echoes one (Stalwart 0.15 does, in an error)
# must not get it into output. From BEGIN to END, or, cut short, to the end of its base64 run; JSON's
# escaped line breaks (\\n) count as part of the run.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s:,-]|\\[nr])*?"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|(?=[^A-Za-z0-9+/=\s:,\\-])|$)"
)
CMD_TIMEOUT_SECONDS = 30


class Redactor:
    """Replaces every registered secret, and its common encodings, with [REDACTED]."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> None:
        if not value or len(value) < 4:  # too short to redact without mangling text
            return
        self._values.add(value)
        self._values.add(urllib.parse.quote(value, safe=""))
        self._values.add(base64.b64encode(value.encode()).decode())

    def __call__(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        if "PRIVATE KEY-----" in text:
            text = _PRIVATE_KEY.sub(f"{REDACTED} (a private key)", text)
        return text

    def redact_obj(self, obj):
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, dict):
            return {k: self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.redact_obj(v) for v in obj]
        return obj


@dataclass(frozen=True)
class Secret:
    """A resolved secret. Its repr never shows the value."""

    value: str
    source: str  # where it came from, safe to show: "env:STALWART_OPS_PASSWORD"

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"

    __str__ = __repr__


def describe(ref: str) -> str:
    """The reference as it may be shown (cmd: commands are cut to their program)."""
    if ref.startswith("cmd:"):
        parts = shlex.split(ref[4:]) or ["?"]
        return f"cmd:{parts[0]} ..."
    return ref


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEMES_HINT = "use env:NAME, file:PATH, cmd:COMMAND or infisical://spine/<path>/<KEY>"


def check_secret_reference(ref: str | None) -> str | None:
    """A contract's secret reference, checked for its form when the contract loads (a ValueError names
    what is wrong, so the contract's file and line are reported): never the value, which is not read here."""
    if ref is None:
        return None
    if ref.startswith("env:"):
        if not _ENV_NAME.match(ref[4:]):
            raise ValueError(f"env: reference {ref!r} does not name an environment variable")
    elif ref.startswith("file:"):
        if not ref[5:].strip():
            raise ValueError("file: reference names no path")
    elif ref.startswith("cmd:"):
        try:
            argv = shlex.split(ref[4:])
        except ValueError as exc:
            raise ValueError(f"cmd: reference does not parse as a command line ({exc})") from None
        if not argv:
            raise ValueError("cmd: reference names no command")
    elif ref.startswith("infisical://"):
        key = ref.rstrip("/").rsplit("/", 1)[-1]
        if ref.rstrip("/") == "infisical:/" or not key or key == "infisical:":
            raise ValueError(f"{ref!r} names no key (infisical://spine/<path>/<KEY>)")
    else:
        scheme = ref.split(":", 1)[0] if ":" in ref else ref[:12]
        raise ValueError(f"unknown secret reference scheme {scheme!r}: {SCHEMES_HINT}")
    return ref


class Secrets:
    def __init__(
        self,
        redactor: Redactor,
        env: dict[str, str],
        spine_root: Path | None = None,
        locate: Callable[[str], Problem | None] | None = None,
    ):
        self.redactor = redactor
        self.env = env
        self.spine_root = spine_root
        # Where a contract holds a reference (file, line, field), so an error names it.
        self.locate = locate

    def resolve(self, ref: str | None, *, override_env: str | None = None, what: str = "secret") -> Secret:
        """Resolve `ref`; the spine's variable `override_env`, when set, wins."""
        if override_env and self.env.get(override_env):
            return self._keep(self.env[override_env], f"env:{override_env}")
        if not ref:
            hint = f"set {override_env}" if override_env else "add a secret reference (env:, file:, cmd:)"
            raise SecretError(f"no {what} configured", hint=hint)
        try:
            value = self._lookup(ref, what)
            return self._keep(value, describe(ref))
        except SecretError as exc:
            raise self._placed(exc, ref) from None

    def _placed(self, exc: SecretError, ref: str) -> SecretError:
        """The error with the file and line of the contract that holds the reference, when one does."""
        where = self.locate(ref) if self.locate else None
        if where is None or exc.problems:
            return exc
        problem = Problem(where.file, where.line, where.field, exc.message)
        return SecretError(str(problem), hint=exc.hint, problems=[problem])

    def _keep(self, value: str, source: str) -> Secret:
        value = value.rstrip("\r\n")
        if not value:
            raise SecretError(f"{source} is empty")
        self.redactor.add(value)
        return Secret(value, source)

    def _lookup(self, ref: str, what: str) -> str:
        if ref.startswith("env:"):
            name = ref[4:]
            if name not in self.env:
                raise SecretError(f"{what}: environment variable {name} is not set", hint=f"export {name}=...")
            return self.env[name]
        if ref.startswith("file:"):
            path = Path(ref[5:]).expanduser()
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SecretError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise SecretError(f"{what}: {path} is not UTF-8 text") from None
        if ref.startswith("cmd:"):
            return self._run(shlex.split(ref[4:]), describe(ref), what)
        if ref.startswith("infisical://"):
            return self._infisical(ref, what)
        scheme = ref.split(":", 1)[0] if ":" in ref else ref[:12]
        raise SecretError(f"{what}: unknown secret reference scheme {scheme!r}", hint=SCHEMES_HINT)

    def _infisical(self, ref: str, what: str) -> str:
        key = ref.rstrip("/").rsplit("/", 1)[-1]
        agent = self.spine_root / "ops/tools/infisical-agent.sh" if self.spine_root else None
        if not agent or not agent.is_file():
            raise SecretError(
                f"{what}: {ref} needs the spine's ops/tools/infisical-agent.sh, not found under the root",
                hint="run with --root at a spine checkout, or set the variable directly",
            )
        return self._run(["bash", str(agent), "get", "infrastructure", "prod", key], f"infisical:{key}", what)

    def _run(self, argv: list[str], shown: str, what: str) -> str:
        if not argv:
            raise SecretError(f"{what}: empty cmd: reference")
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_SECONDS, env=dict(self.env), check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretError(f"{what}: {shown} could not run: {exc.__class__.__name__}") from None
        if done.returncode != 0:
            # stderr may echo the secret's neighbourhood; say only that it failed.
            raise SecretError(f"{what}: {shown} exited {done.returncode}")
        return done.stdout
