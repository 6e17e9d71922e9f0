"""Shared by the inbox lab tests: a fresh root per test polling one folder of the lab's sink@ user,
the CLI run as a subprocess, and the exactly-once audit over every mailroom lane."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.cli_process import run_capability

LANES = ("queued", "running", "done", "failed", "parked", "archived")
MESSAGE_ID_LINE = re.compile(r"^- Message-ID: (.+)$", re.M)


def make_root(
    tmp: Path,
    lab: dict,
    lab_root: Path,
    *,
    folders: list[str],
    user: str = "sink",
    after: str = "{action: none}",
    policy: str = "",
    extra: str = "",
    password_ref: str | None = None,
) -> Path:
    """A root with the lab's stack contract and an inbox contract polling `folders` of `user`."""
    root = tmp / "root"
    (root / "bindings").mkdir(parents=True, exist_ok=True)
    for name in ("communications.stack.contract.yaml", "mailroom.runtime.contract.yaml"):
        shutil.copyfile(lab_root / "bindings" / name, root / "bindings" / name)
    secret = password_ref or f"file:{lab['lab_dir']}/secrets/{user}.password"
    folder_list = ", ".join(json.dumps(f) for f in folders)
    text = f"""version: 1
mailboxes:
  - id: {user}
    address: {user}@spine.test
    login: {user}@spine.test
    password_ref: "{secret}"
    folders: [{folder_list}]
    after_enqueue: {after}
policy:
  trusted_authserv_id: {lab["authserv_id"]}
{policy}
mailroom: {{via: filesystem}}
{extra}
"""
    (root / "bindings" / "communications.inbox.contract.yaml").write_text(text)
    return root


def run(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, dict, str]:
    done = run_capability(root, "communications.inbox.poll", *args, env=env, timeout=timeout)
    return done.code, done.envelope, done.stderr


def capability(root: Path, cap: str, *args: str, env=None, timeout: float = 120) -> tuple[int, dict, str]:
    done = run_capability(root, cap, *args, env=env, timeout=timeout)
    return done.code, done.envelope, done.stderr


def items(root: Path) -> dict[str, list[Path]]:
    """lane -> visible items (what the watcher would read)."""
    inbox = root / "mailroom" / "inbox"
    out = {}
    for lane in LANES:
        directory = inbox / lane
        found = directory.glob("*.md") if directory.is_dir() else []
        out[lane] = sorted(p for p in found if not p.name.startswith("."))
    return out


def message_ids_in_items(root: Path) -> list[str]:
    """The Message-ID of every visible item in every lane (one entry per item)."""
    found = []
    for paths in items(root).values():
        for path in paths:
            text = path.read_text()
            match = MESSAGE_ID_LINE.search(text)
            assert match, f"{path} has no Message-ID line: a partial or foreign item"
            assert text.rstrip().endswith(("untrusted data.", "policy.secret_match: park")) or "## Parked" in text, path
            found.append(match.group(1).strip())
    return found


def assert_exactly_once(root: Path, expected: set[str], *, dropped: set[str] = frozenset()) -> None:
    """Every expected Message-ID in exactly one item across the lanes (dropped ones in none), nothing else."""
    seen = message_ids_in_items(root)
    duplicates = sorted({m for m in seen if seen.count(m) > 1})
    assert not duplicates, f"{len(duplicates)} message(s) enqueued twice: {duplicates[:5]}"
    missing = sorted(expected - dropped - set(seen))
    assert not missing, f"{len(missing)} message(s) missing: {missing[:5]}"
    extra = sorted(set(seen) - expected)
    assert not extra, f"unexpected items: {extra[:5]}"
    assert not (set(seen) & set(dropped)), "a dropped message has an item"


def checkpoint(root: Path, user: str, folder: str) -> dict | None:
    from spine_comms.inbox.checkpoint import CheckpointStore

    store = CheckpointStore(root / "mailroom" / "state" / "communications" / "inbox", user)
    found = store.load(folder)
    return found.to_dict() if found else None


def folder_result(envelope: dict, folder: str | None = None) -> dict:
    mailbox = envelope["data"]["mailboxes"][0]
    return next(f for f in mailbox["folders"] if folder is None or f["folder"] == folder)


def in_process(root: Path, monkeypatch):
    """The poll's pipeline in this process (so a test can replace a step): (ctx, contract, mailbox of sink)."""
    import os

    from spine_comms.contracts.inbox import INBOX_CONTRACT, InboxContract
    from spine_comms.core.context import RunContext
    from spine_comms.core.options import GlobalOptions
    from spine_comms.core.root import find_root
    from spine_comms.inbox.pipeline import open_mailbox

    for name in [k for k in os.environ if k.startswith(("SPINE_", "STALWART_"))]:
        monkeypatch.delenv(name)
    ctx = RunContext("communications.inbox.poll", find_root(root), GlobalOptions(str(root), True, False, False, True))
    contract = ctx.contracts.load(INBOX_CONTRACT, InboxContract)
    return ctx, contract, open_mailbox(ctx, contract, "sink")
