"""mailroom.enqueue and mailroom.status through the CLI, on a real directory and against the fake bridge.

No mail server is needed: the filesystem mailroom is a directory, and the bridge is the fake in
tests/mailroom_bridge_fake.py, which writes items the way the spine's agent-enqueue.sh does.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spine_comms.mailroom.bridge import BridgeClient, BridgeRejected
from tests.cli_process import run_capability
from tests.mailroom_bridge_fake import FakeBridge
from tests.receipt_audit import validate_receipt

SENTINEL = "Sentinel7fQ2xLmZ"  # a value that must never be printed or stored
TOKEN = "bridge-token-Kx81sentinel"


def run(root: Path, capability: str, *args: str, stdin=None, input: str | None = None, env: dict | None = None,
        json_out: bool = True) -> tuple[int, dict | str, str]:  # fmt: skip
    done = run_capability(root, capability, *args, env=env, json_out=json_out, input=input, stdin=stdin, timeout=60)
    return done.code, done.envelope if json_out else done.stdout, done.stderr


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "bindings").mkdir(parents=True)
    return base


def everything_written(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def queued(root: Path) -> list[Path]:
    lane = root / "mailroom/inbox/queued"
    return sorted(lane.iterdir()) if lane.is_dir() else []


# mailroom.enqueue on the filesystem ----------------------------------------------------------------


def test_enqueue_from_stdin_writes_the_item_receipt_and_ledger(root):
    code, env, _ = run(root, "mailroom.enqueue", "--slug", "deploy check!", input="check the deploy\r\n")
    assert code == 0 and env["status"] == "ok", env
    data = env["data"]
    path = Path(data["path"])
    assert path.parent == root / "mailroom/inbox/queued" and queued(root) == [path]
    assert path.read_text() == "check the deploy\n"
    assert data["slug"] == "deploycheck" and data["source"] == "stdin" and data["via"] == "filesystem"
    assert path.stem == data["run_id"] == f"{data['session_id']}__deploycheck__{data['rid']}"
    assert env["summary"] == [f"ENQUEUED: {path}"]
    validate_receipt(Path(env["receipt"]) / "receipt.json")
    ledger = (root / "mailroom/state/ledger.csv").read_text().splitlines()
    assert ledger[0].count(",") == 8 and env["run_key"] in ledger[-1]


def test_a_full_mailroom_disk_is_exit_3_naming_the_path(root, tmp_path):
    import subprocess

    inbox = tmp_path / "full-inbox"
    inbox.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs", str(inbox)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={inbox / 'filler'}", "bs=4k"], capture_output=True, check=False)
        code, env, stderr = run(root, "mailroom.enqueue", "--text", "x" * 20000, env={"SPINE_INBOX": str(inbox)})
        assert code == 3 and env["status"] == "error", (code, env, stderr)
        assert env["error"]["reference"] == "disk-full" and str(inbox) in env["error"]["message"]
        assert "Traceback" not in stderr and not [p for p in inbox.rglob("*.md")]
    finally:
        subprocess.run(["umount", "-l", str(inbox)], check=False)


def test_enqueue_text_and_file_with_explicit_names(root, tmp_path):
    prompt = tmp_path / "prompt.md"
    prompt.write_text("# Task\nlook at the queue\n")
    code, env, _ = run(root, "mailroom.enqueue", "--file", str(prompt), "--run-id", "RCLIENT.1",
                       "--session-id", "S20260210-123456", "--slug", "from-file")  # fmt: skip
    assert code == 0, env
    assert Path(env["data"]["path"]).name == "S20260210-123456__from-file__RCLIENT.1.md"
    assert Path(env["data"]["path"]).read_text() == "# Task\nlook at the queue\n"
    code, out, _ = run(root, "mailroom.enqueue", "--text", "hello", json_out=False)
    assert code == 0 and "ENQUEUED: " in out and "status: ok" in out
    assert len(queued(root)) == 2


def test_a_terminal_stdin_is_refused_like_agent_enqueue(root):
    leader, follower = os.openpty()
    try:
        code, env, _ = run(root, "mailroom.enqueue", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert code == 2 and "stdin is a terminal" in env["error"]["message"]
    assert "--text" in env["error"]["hint"]
    assert queued(root) == []


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--text", "a", "--file", "/etc/hostname"], None, "not both"),
        (["--text", "  \n"], None, "is empty"),
        ([], "", "is empty"),
        (["--file", "/nonexistent/prompt"], None, "cannot read"),
        (["--text", "x", "--run-id", "../../escape"], None, "invalid run id"),
        (["--text", "x", "--session-id", ".hidden"], None, "invalid session id"),
        (["--text", "x", "--via", "carrier-pigeon"], None, "use filesystem, bridge or jetstream"),
        (["--text", "x", "--via", "bridge"], None, "needs a bridge URL"),
    ],
    ids=["text-and-file", "blank-text", "empty-stdin", "missing-file", "run-id-traversal", "hidden-session",
         "unknown-via", "bridge-without-url"],
)  # fmt: skip
def test_bad_input_is_exit_2_without_a_traceback(root, args, stdin, message):
    code, env, stderr = run(root, "mailroom.enqueue", *args, input=stdin if stdin is not None else "")
    assert code == 2, env
    assert message in env["error"]["message"], env["error"]
    assert "Traceback" not in stderr
    assert queued(root) == [] and not list(root.parent.glob("escape*"))


def test_non_utf8_and_oversized_prompts_are_refused(root, tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    for path, message in ((latin, "not UTF-8"), (big, "over 1048576 bytes")):
        code, env, _ = run(root, "mailroom.enqueue", "--file", str(path))
        assert code == 2 and message in env["error"]["message"]
    assert queued(root) == []


def test_a_prompt_the_watcher_would_park_is_refused_without_showing_the_secret(root):
    prompt = f"deploy it\npassword: {SENTINEL}\nuse sk-{SENTINEL}abcdefghij1234\n"
    code, env, stderr = run(root, "mailroom.enqueue", input=prompt)
    assert code == 2 and "secret scan" in env["error"]["message"]
    assert env["error"]["problems"] == [
        "stdin: line 2: a value assigned to 'password' (= or :)",
        "stdin: line 3: openai-style key (sk-...)",
    ]
    assert queued(root) == []
    assert SENTINEL not in json.dumps(env) + stderr + everything_written(root)


def test_redact_enqueues_an_item_the_watcher_will_not_park(root):
    code, env, stderr = run(root, "mailroom.enqueue", "--redact", input=f"deploy it\nAPI_KEY={SENTINEL} now\n")
    assert code == 0 and env["status"] == "warn" and env["data"]["redactions"] == 1
    text = Path(env["data"]["path"]).read_text()
    assert text == "deploy it\nAPI_KEY [REDACTED]\n"
    assert SENTINEL not in json.dumps(env) + stderr + everything_written(root)


def test_an_explicit_run_id_is_enqueued_once(root):
    args = ("--run-id", "RONCE", "--session-id", "S1")
    code, env, _ = run(root, "mailroom.enqueue", *args, "--text", "the task")
    assert code == 0
    first = Path(env["data"]["path"])
    # A retry with the same content is reported, not written twice, even from another session.
    code, env, _ = run(root, "mailroom.enqueue", "--run-id", "RONCE", "--session-id", "S2", "--text", "the task")
    assert code == 0 and env["data"]["already_enqueued"] is True and env["data"]["path"] == str(first)
    # Other content under the same run id is a conflict; the first item stays as it was.
    code, env, _ = run(root, "mailroom.enqueue", *args, "--text", "something else")
    assert code == 1 and env["status"] == "fail" and env["data"]["already_enqueued"] is False
    assert queued(root) == [first] and first.read_text() == "the task\n"


def test_dry_run_writes_no_item(root):
    code, env, _ = run(root, "mailroom.enqueue", "--dry-run", "--text", "just looking")
    assert code == 0 and env["data"]["dry_run"] is True and env["summary"][0].startswith("DRY RUN")
    assert queued(root) == []


def test_spine_inbox_env_is_honoured(root, tmp_path):
    inbox = tmp_path / "runtime/inbox"
    code, env, _ = run(root, "mailroom.enqueue", "--text", "x", env={"SPINE_INBOX": str(inbox)})
    assert code == 0 and Path(env["data"]["path"]).parent == inbox / "queued"


# mailroom.enqueue through the bridge ---------------------------------------------------------------


@pytest.fixture
def bridge(tmp_path):
    far = tmp_path / "bridge-side"
    with FakeBridge(far / "inbox", far / "outbox", far / "state", TOKEN) as fake:
        yield fake


def bridge_contract(root: Path, url: str, token_file: Path) -> None:
    (root / "bindings/communications.inbox.contract.yaml").write_text(
        "version: 1\nmailboxes:\n  - id: ops\n"
        f"mailroom:\n  via: bridge\n  bridge:\n    url: {url}\n    token_ref: file:{token_file}\n"
    )


def test_enqueue_via_the_contracts_bridge(root, bridge, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    bridge_contract(root, bridge.url, token_file)
    code, env, stderr = run(root, "mailroom.enqueue", "--slug", "triage", "--run-id", "RB1", input="route this\n")
    assert code == 0, env
    path = Path(env["data"]["path"])
    assert path.parent == bridge.inbox / "queued" and path.read_text() == "route this"  # the bridge strips
    assert env["data"]["via"] == "bridge" and env["data"]["run_id"] == path.stem
    assert path.name == f"{env['data']['session_id']}__triage__RB1.md"
    stored = path.read_bytes()  # the receipt describes the bytes the bridge stored
    assert (env["data"]["bytes"], env["data"]["sha256"]) == (len(stored), hashlib.sha256(stored).hexdigest())
    (post,) = [r for r in bridge.requests if r["method"] == "POST"]
    assert post["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(post["body"]) == {"prompt": "route this", "slug": "triage", "run_id": "RB1",
                                        "session_id": env["data"]["session_id"]}  # fmt: skip
    assert queued(root) == []  # nothing on the local filesystem
    assert TOKEN not in json.dumps(env) + stderr + everything_written(root)


def test_bridge_url_flag_and_env_token(root, bridge):
    code, env, _ = run(root, "mailroom.enqueue", "--bridge-url", bridge.url, "--text", "hi",
                       env={"MAILROOM_BRIDGE_TOKEN": TOKEN})  # fmt: skip
    assert code == 0 and env["data"]["via"] == "bridge"
    assert Path(env["data"]["path"]).is_file()


@pytest.mark.parametrize("prompt", ["  indented\n\n\n", "\u2003wide space and tab\t\r\n", "x"])
def test_the_receipt_gives_the_bytes_the_bridge_stored(root, bridge, prompt):
    code, env, _ = run(root, "mailroom.enqueue", "--bridge-url", bridge.url, "--text", prompt, "--dry-run",
                       env={"MAILROOM_BRIDGE_TOKEN": TOKEN})  # fmt: skip
    planned = env["data"]["bytes"], env["data"]["sha256"]
    code, env, _ = run(root, "mailroom.enqueue", "--bridge-url", bridge.url, "--text", prompt,
                       env={"MAILROOM_BRIDGE_TOKEN": TOKEN})  # fmt: skip
    assert code == 0, env
    stored = Path(env["data"]["path"]).read_bytes()
    assert stored == prompt.strip().encode()
    assert (env["data"]["bytes"], env["data"]["sha256"]) == (len(stored), hashlib.sha256(stored).hexdigest())
    assert planned == (len(stored), hashlib.sha256(stored).hexdigest())  # the dry run said the same


def test_an_answer_without_run_id_takes_the_paths_stem(bridge):
    bridge.omit_run_id = True  # the bridge's older answer: {"status": "enqueued", "path"}
    client = BridgeClient(bridge.url, TOKEN, timeout=5)
    try:
        answer = client.enqueue("x", slug="t", run_id="RNR", session_id="S8")
    finally:
        client.close()
    assert answer == {"path": str(bridge.inbox / "queued/S8__t__RNR.md"), "run_id": "S8__t__RNR"}


def test_a_refused_token_is_exit_3_and_never_shown(root, bridge):
    wrong = f"wrong-{SENTINEL}"
    code, env, stderr = run(root, "mailroom.enqueue", "--bridge-url", bridge.url, "--text", "hi",
                            env={"MAILROOM_BRIDGE_TOKEN": wrong})  # fmt: skip
    assert code == 3 and env["error"]["reference"] == "mailroom-bridge-auth"
    assert "HTTP 401" in env["error"]["message"] and "MAILROOM_BRIDGE_TOKEN" in env["error"]["hint"]
    assert SENTINEL not in json.dumps(env) + stderr + everything_written(root)
    assert not (bridge.inbox / "queued").exists()  # refused before anything was written


def test_no_token_is_exit_2(root, bridge):
    code, env, _ = run(root, "mailroom.enqueue", "--bridge-url", bridge.url, "--text", "hi")
    assert code == 2 and "MAILROOM_BRIDGE_TOKEN" in (env["error"]["hint"] or "")


def test_an_unreachable_or_failing_bridge_is_exit_3(root, bridge):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code, env, _ = run(root, "mailroom.enqueue", "--bridge-url", closed, "--text", "hi",
                       env={"MAILROOM_BRIDGE_TOKEN": TOKEN})  # fmt: skip
    assert code == 3 and env["error"]["reference"] == "mailroom-bridge-unavailable"
    bridge.fail_next = 503
    code, env, _ = run(root, "mailroom.enqueue", "--bridge-url", bridge.url, "--text", "hi",
                       env={"MAILROOM_BRIDGE_TOKEN": TOKEN})  # fmt: skip
    assert code == 3 and "HTTP 503" in env["error"]["message"] and "enqueue failed" in env["error"]["message"]


def test_the_bridge_client_against_the_fake(bridge):
    client = BridgeClient(bridge.url, TOKEN, timeout=5)
    with pytest.raises(BridgeRejected, match="prompt is required"):
        client.enqueue("   ", slug="t")
    answer = client.enqueue("x", slug="t", run_id="RST", session_id="S9")
    assert answer == {"path": str(bridge.inbox / "queued/S9__t__RST.md"), "run_id": "S9__t__RST"}
    status = client.status("S9__t__RST")
    assert status["state"] == "queued" and status["prompt_path"] == answer["path"]
    assert client.status("S9__t__NOPE") is None
    # The fake answers like the bridge when the token comes as X-Spine-Token instead.
    import niquests

    reply = niquests.get(f"{bridge.url}/inbox/status/S9__t__RST", headers={"X-Spine-Token": TOKEN}, timeout=5)
    assert reply.status_code == 200 and reply.json()["state"] == "queued"
    assert niquests.get(f"{bridge.url}/inbox/status/S9__t__RST", timeout=5).status_code == 401
    client.close()


# mailroom.status --------------------------------------------------------------------------------------


def test_status_counts_lanes_and_warns_on_a_stale_queue(root):
    for text in ("one", "two"):
        assert run(root, "mailroom.enqueue", "--text", text)[0] == 0
    code, env, _ = run(root, "mailroom.status")
    assert code == 0 and env["status"] == "ok"
    assert env["data"]["lanes"]["queued"]["count"] == 2 and env["data"]["lanes"]["done"]["count"] == 0
    oldest = queued(root)[0]
    stamp = (datetime.now(UTC) - timedelta(minutes=20)).timestamp()
    os.utime(oldest, (stamp, stamp))
    code, env, _ = run(root, "mailroom.status")
    (age,) = [c for c in env["checks"] if c["id"] == "mailroom.queued.age"]
    assert code == 0 and env["status"] == "warn" and age["status"] == "warn" and age["evidence"] == str(oldest)
    assert "watcher may be down" in age["detail"]
    code, env, _ = run(root, "mailroom.status", "--max-queued-age", "30")
    assert env["status"] == "ok"
    code, out, _ = run(root, "mailroom.status", json_out=False)
    assert "queued        2  20m" in out and "status: warn" in out


def test_status_of_a_run_id_across_lanes_outbox_and_ledger(root):
    code, env, _ = run(root, "mailroom.enqueue", "--run-id", "RTRACK", "--text", "follow me")
    item = Path(env["data"]["path"])
    stem = item.stem
    inbox = root / "mailroom/inbox"
    for lane in ("queued", "running", "parked", "failed"):
        if lane != "queued":
            (inbox / lane).mkdir(exist_ok=True)
            item = item.rename(inbox / lane / item.name)
        for asked in ("RTRACK", stem):
            code, env, _ = run(root, "mailroom.status", "--run-id", asked)
            assert code == 0 and env["data"]["run"]["state"] == lane and env["data"]["run"]["path"] == str(item)
    # What the watcher does on success: the item to done, the result to the outbox, a ledger row.
    (inbox / "done").mkdir()
    item = item.rename(inbox / "done" / item.name)
    result = root / "mailroom/outbox" / f"{stem}__RESULT.md"
    result.parent.mkdir(parents=True)
    result.write_text("| Run ID | ... |\n")
    with open(root / "mailroom/state/ledger.csv", "a") as ledger:
        ledger.write(f"{stem},2026-01-01T00:00:00Z,2026-01-01T00:00:01Z,2026-01-01T00:00:09Z,done,{item},"
                     f"{result},,governance\n")  # fmt: skip
    code, env, _ = run(root, "mailroom.status", "--run-id", "RTRACK")
    run_state = env["data"]["run"]
    assert run_state["state"] == "done" and run_state["result"] == str(result)
    assert run_state["ledger"]["status"] == "done" and run_state["ledger"]["context_used"] == "governance"
    # Archived away: the outbox result still tells it was done.
    item.unlink()
    code, env, _ = run(root, "mailroom.status", "--run-id", "RTRACK")
    assert env["data"]["run"]["state"] == "done" and env["data"]["run"]["path"] is None
    assert env["data"]["run"]["run_id"] == stem


def test_status_of_an_unknown_or_invalid_run_id(root):
    code, env, _ = run(root, "mailroom.status", "--run-id", "RNOWHERE")
    assert code == 1 and env["status"] == "fail"
    assert any(c["id"] == "mailroom.run.found" and c["status"] == "fail" for c in env["checks"])
    code, env, _ = run(root, "mailroom.status", "--run-id", "../etc/passwd")
    assert code == 2 and "invalid run id" in env["error"]["message"]


def test_status_warns_about_a_missing_inbox_and_leftover_temporaries(root):
    _code, env, _ = run(root, "mailroom.status")
    assert env["status"] == "warn" and any(c["id"] == "mailroom.inbox.present" and c["status"] == "warn"
                                           for c in env["checks"])  # fmt: skip
    lane = root / "mailroom/inbox/queued"
    lane.mkdir(parents=True)
    (lane / ".S1__t__R1.abcd.tmp").write_text("half an item")
    _code, env, _ = run(root, "mailroom.status")
    (temps,) = [c for c in env["checks"] if c["id"] == "mailroom.temporaries"]
    assert temps["status"] == "warn" and temps["actual"] == 1 and env["data"]["lanes"]["queued"]["count"] == 0
