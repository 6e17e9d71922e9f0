"""Where things live: the root (this project's layout or the spine's) and the mailroom.

Two layouts are recognised:
- project: `<root>/capabilities/`, `<root>/bindings/`
- spine:   `<root>/ops/capabilities.yaml`, `<root>/ops/bindings/`
Receipts live under `<root>/receipts/sessions` in both, as the spine keeps them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spine_comms.core.errors import ContractError, Problem, UsageError

RUNTIME_CONTRACT = "mailroom.runtime.contract.yaml"


@dataclass(frozen=True)
class Root:
    path: Path
    layout: str  # "project" | "spine"

    @property
    def bindings_dir(self) -> Path:
        return self.path / ("ops/bindings" if self.layout == "spine" else "bindings")

    @property
    def registry_file(self) -> Path:
        return self.path / ("ops/capabilities.yaml" if self.layout == "spine" else "capabilities/capabilities.yaml")

    @property
    def map_file(self) -> Path:
        if self.layout == "spine":
            return self.path / "ops/bindings/capability_map.yaml"
        return self.path / "capabilities/capability_map.yaml"

    @property
    def receipts_dir(self) -> Path:
        return self.path / "receipts" / "sessions"


def looks_like_root(path: Path) -> bool:
    """A directory with contracts or a registry in either layout."""
    return any((path / part).exists() for part in ("bindings", "capabilities", "ops/bindings", "ops/capabilities.yaml"))


def find_root(explicit: str | Path | None, env: dict[str, str] | None = None) -> Root:
    """--root, then SPINE_ROOT, then the working directory (only when it looks like a root).

    A root named on purpose is taken as it is; the working directory is taken only when it
    holds a root, so a command run in the wrong place writes no receipts/ or mailroom/ there."""
    env = os.environ if env is None else env
    chosen = explicit or env.get("SPINE_ROOT")
    path = Path(chosen or os.getcwd()).expanduser()
    if not chosen and not looks_like_root(path):
        raise UsageError(
            f"{path} is not a spine-comms root: no bindings/, capabilities/ or ops/bindings/ here",
            hint="run `spine-comms init DIR` to make one, then pass --root DIR or set SPINE_ROOT",
        )
    if not path.exists():
        raise UsageError(f"root {path} does not exist", hint="pass --root DIR or set SPINE_ROOT")
    if not path.is_dir():
        raise UsageError(f"root {path} is not a directory", hint="pass --root DIR or set SPINE_ROOT")
    path = path.resolve()
    layout = (
        "spine" if (path / "ops" / "bindings").is_dir() or (path / "ops" / "capabilities.yaml").is_file() else "project"
    )
    return Root(path, layout)


@dataclass(frozen=True)
class MailroomPaths:
    inbox: Path
    outbox: Path
    state: Path
    logs: Path
    source: str  # "env", "runtime-contract" or "root": how they were found

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.csv"


def mailroom_paths(root: Root, env: dict[str, str] | None = None) -> MailroomPaths:
    """Resolve exactly as the spine's runtime-paths.sh does.

    SPINE_INBOX/OUTBOX/STATE/LOGS win one by one; otherwise the runtime contract's
    runtime_root when it is active; otherwise `<root>/mailroom/...`.
    """
    from spine_comms.core.yamlfile import load_yaml  # yaml only when a run needs the mailroom

    env = os.environ if env is None else env
    base = root.path / "mailroom"
    source = "root"
    contract = root.bindings_dir / RUNTIME_CONTRACT
    if contract.is_file():
        doc = load_yaml(contract, spine_owned=True)  # the spine's file: read as its tools read it
        data = doc.data or {}
        if isinstance(data, dict) and data.get("active") is True and data.get("runtime_root"):
            if not isinstance(data["runtime_root"], str):
                line = doc.line_of(("runtime_root",))
                raise ContractError(f"{contract}: runtime_root is not a path", problems=[
                    Problem(str(contract), line, "runtime_root", "expected a directory path")])  # fmt: skip
            # A relative runtime root is the root's, never the working directory's.
            base = root.path / Path(data["runtime_root"]).expanduser()
            source = "runtime-contract"
    names = {"inbox": "SPINE_INBOX", "outbox": "SPINE_OUTBOX", "state": "SPINE_STATE", "logs": "SPINE_LOGS"}
    resolved = {}
    for part, var in names.items():
        if env.get(var):
            resolved[part] = Path(env[var]).expanduser()
            source = "env"
        else:
            resolved[part] = base / part
    return MailroomPaths(source=source, **resolved)
