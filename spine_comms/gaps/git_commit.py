"""`--commit`: one git commit of the gaps file alone, with the spine's Gap-* trailers.

The spine's D75 gate reads these trailers on every commit that touches the
registry (Gap-Mutation, Gap-Capability, Gap-Run-Key; gaps.close adds
Regression-Lock-ID). The run key is the spine runner's (SPINE_CAP_RUN_KEY), else
`manual`, as gaps-file writes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from spine_comms.core.errors import SpineCommsError, UsageError


class CommitFailed(SpineCommsError):
    """git refused the commit (a hook, an identity, a conflict); the file was put back."""

    reference = "git-commit-failed"


def file_message(ids: list[str], run_key: str) -> str:
    if len(ids) == 1:
        head = f"gov({ids[0]}): register gap via gaps.file"
    else:
        head = f"gov(gaps.batch): register {len(ids)} gaps via gaps.file"
    return (f"{head}\n\nFiled IDs: {', '.join(ids)}\nFiled via atomic gaps.file capability.\n\n"
            f"Gap-Mutation: capability\nGap-Capability: gaps.file\nGap-Run-Key: {run_key}\n")  # fmt: skip


def close_message(closed: list[dict], run_key: str) -> str:
    if len(closed) == 1:
        head = f"fix({closed[0]['id']}): mark {closed[0]['status']} via gaps.close"
    else:
        head = f"fix(gaps.batch): mark {len(closed)} gaps via gaps.close"
    locks = sorted({c.get("regression_lock_id") or "none" for c in closed})
    return (f"{head}\n\nClosed IDs: {', '.join(c['id'] for c in closed)}\n\n"
            f"Gap-Mutation: capability\nGap-Capability: gaps.close\nGap-Run-Key: {run_key}\n"
            f"Regression-Lock-ID: {', '.join(locks)}\n")  # fmt: skip


def run_key_for_trailer(env: dict[str, str]) -> str:
    return env.get("SPINE_CAP_RUN_KEY") or "manual"


def _git(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60,
                              env=env, check=False)  # fmt: skip
    except FileNotFoundError:
        raise UsageError("--commit needs git, which is not installed") from None
    except subprocess.TimeoutExpired:
        raise CommitFailed(f"git {args[0]} did not finish in 60 s") from None


def check_repository(path: Path, env: dict[str, str]) -> Path:
    """The work tree holding `path`; a usage error (before any change) when there is none."""
    where = next((p for p in path.parents if p.is_dir()), Path.cwd())
    done = _git(where, env, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise UsageError(f"--commit: {where} is not in a git work tree",
                         hint="run without --commit (the default), or from a git checkout of the root")  # fmt: skip
    return Path(done.stdout.strip())


def commit_file(path: Path, message: str, env: dict[str, str]) -> str:
    """Commit exactly `path`: other staged changes stay staged and uncommitted. On failure the
    index is as it was (the caller puts the file back). Returns the commit id."""
    repo = check_repository(path, env)
    tracked = _git(repo, env, "ls-files", "--error-unmatch", "--", str(path)).returncode == 0
    if not tracked:  # a new registry: git commit -- <path> only knows tracked paths
        _checked(_git(repo, env, "add", "--", str(path)), "add")
    done = _git(repo, env, "commit", "--quiet", "--only", "-m", message, "--", str(path))
    if done.returncode != 0:
        if not tracked:
            _git(repo, env, "rm", "--cached", "--quiet", "--", str(path))
        _checked(done, "commit")
    return _git(repo, env, "rev-parse", "HEAD").stdout.strip()


def _checked(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise CommitFailed(f"git {what} failed: {why}")
