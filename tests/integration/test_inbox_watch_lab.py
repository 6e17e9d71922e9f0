"""communications.inbox.watch against the lab: a real watch process (subprocess), Postfix delivering,
Dovecot's IDLE, connections cut by a TCP proxy the test owns, SIGTERM in the middle of a backlog.

Every test gets its own root (the lab's bindings with an inbox contract for `sink`) and,
where the count matters, its own folder, so what one test left in the mailbox cannot
satisfy or break another.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.cli_process import SPINE_COMMS, clean_env
from tests.tcp_relay import Relay

pytestmark = pytest.mark.lab
LANES = ("queued", "running", "done", "failed", "parked")


# The watch process -------------------------------------------------------------------------------


def make_root(tmp_path: Path, lab: dict, *, folder: str = "INBOX", port: int | None = None, health: str = "",
              **watch) -> Path:  # fmt: skip
    """A root with the lab's bindings and an inbox contract that watches sink@ in `folder`."""
    root = tmp_path / "root"
    shutil.copytree(Path(lab["root"]) / "bindings", root / "bindings")
    settings = {"idle_renew_seconds": 60, "reconnect_backoff_seconds": [0.2, 0.5], "heartbeat_seconds": 1, **watch}
    imap = f"{{host: 127.0.0.1, port: {port}, security: tls}}" if port else "{}"
    (root / "bindings" / "communications.inbox.contract.yaml").write_text(
        "version: 1\n"
        "mailboxes:\n"
        "  - id: sink\n"
        "    address: sink@spine.test\n"
        "    login: sink@spine.test\n"
        f"    password_ref: 'file:{lab['lab_dir']}/secrets/sink.password'\n"
        f"    folders: [{json.dumps(folder)}]\n"
        f"    imap: {imap}\n"
        "policy:\n"
        f"  trusted_authserv_id: {lab['authserv_id']}\n"
        "mailroom: {via: filesystem}\n"
        f"watch: {json.dumps(settings)}\n" + (f"health: {health}\n" if health else "")
    )
    return root


class Watch:
    """`spine-comms communications.inbox.watch` running in the background."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [SPINE_COMMS, "communications.inbox.watch", "--root", str(root), "--json", "--execute",
             "--mailbox", "sink", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or clean_env(),
        )  # fmt: skip

    def finish(self, sig: int | None = signal.SIGTERM, timeout: float = 30) -> tuple[int, dict, str]:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        assert out.startswith("{"), f"stdout: {out!r}\nstderr: {err}"
        return self.proc.returncode, json.loads(out), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def watches():
    started: list[Watch] = []

    def start(root: Path, *args: str, **kwargs) -> Watch:
        watch = Watch(root, *args, **kwargs)
        started.append(watch)
        return watch

    yield start
    for watch in started:
        watch.kill()


def state_dir(root: Path) -> Path:
    return root / "mailroom" / "state" / "communications" / "inbox"


def heartbeat(root: Path) -> dict | None:
    try:
        return json.loads((state_dir(root) / "sink.heartbeat.json").read_text())
    except (OSError, ValueError):
        return None


def items(root: Path) -> list[Path]:
    inbox = root / "mailroom" / "inbox"
    # Dotfiles are items being written: the spine's watcher skips them, and so does the count.
    return sorted(p for lane in LANES for p in (inbox / lane).glob("[!.]*") if p.is_file())


def token_counts(root: Path, token: str) -> dict[str, int]:
    """Subject `<token> #<n>` -> how many items carry it, across every lane."""
    counts: dict[str, int] = {}
    for path in items(root):
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if token in line and "Subject" in line:
                key = line[line.index(token) :].strip(" *")
                counts[key] = counts.get(key, 0) + 1
                break
    return counts


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)
        time.sleep(interval)


def dotfiles(root: Path) -> list[Path]:
    return [p for p in (root / "mailroom").rglob(".*") if p.name != ".keep"]


# The mailbox side ---------------------------------------------------------------------------------


def imap_client(lab: dict):
    from imapclient import IMAPClient

    context = ssl.create_default_context(cafile=lab["tls"]["ca_cert"])
    context.check_hostname = False  # dialled by address; the certificate also names 127.0.0.1
    client = IMAPClient(lab["host"], port=lab["ports"]["imaps"], ssl_context=context, timeout=10)
    client.login("sink@spine.test", lab["users"]["sink"]["password"])
    return client


def fresh_folder(lab: dict, token: str, count: int, size: int = 2000) -> str:
    """A new folder of sink@ holding `count` messages `<token> #1..count` (APPEND, no delivery)."""
    folder = f"watch-{token}"
    client = imap_client(lab)
    try:
        client.create_folder(folder)
        append(client, folder, token, range(1, count + 1), size)
    finally:
        client.logout()
    return folder


def append(client, folder: str, token: str, numbers, size: int = 2000) -> None:
    for n in numbers:
        message = EmailMessage()
        message["From"] = "ops@spine.test"
        message["To"] = "sink@spine.test"
        message["Subject"] = f"{token} #{n}"
        message["Message-ID"] = f"<{token}.{n}@spine.test>"
        message.set_content(f"message {n}\n" + "x" * size)
        client.append(folder, message.as_bytes())


# Tests --------------------------------------------------------------------------------------------


def test_mail_submitted_through_postfix_becomes_an_item_while_the_heartbeat_stays_fresh(
    lab, tmp_path, send_mail, watches
):
    # A 2 s IDLE renew: the message sent after a few seconds arrives through a renewed IDLE.
    root = make_root(tmp_path, lab, idle_renew_seconds=2)
    watch = watches(root, "--max-runtime", "120")
    beat = wait_until(lambda: (h := heartbeat(root)) and h["status"] == "idle" and h, 30, "the watch to idle")
    assert beat["pid"] == watch.proc.pid and beat["mailbox"] == "sink" and beat["idle"] is True
    time.sleep(3)  # past one renew
    token = uuid.uuid4().hex[:12]
    sent = time.monotonic()
    send_mail("ops", "sink", subject=f"{token} #1", body="hello from the lab\n")
    wait_until(lambda: token_counts(root, token), 20, "the delivered message to appear as an item")
    latency = time.monotonic() - sent
    assert latency < 10, latency
    # Fresh: rewritten at least every heartbeat_seconds (1 s) while idling.
    before = heartbeat(root)["at"]
    wait_until(lambda: heartbeat(root)["at"] != before, 5, "the heartbeat to be rewritten")
    assert heartbeat(root)["status"] in ("idle", "catching-up")
    code, envelope, stderr = watch.finish(signal.SIGTERM)
    assert code == 0, stderr
    assert envelope["status"] == "ok", envelope
    assert envelope["data"]["stopped_by"] == "SIGTERM"
    assert envelope["data"]["processed"] >= 1
    assert token_counts(root, token) == {f"{token} #1": 1}
    assert heartbeat(root)["status"] == "stopped"
    assert not dotfiles(root)
    receipt = json.loads((Path(envelope["receipt"]) / "receipt.json").read_text())
    assert receipt["exit_code"] == 0 and receipt["capability"] == "communications.inbox.watch"


def test_connections_cut_mid_stream_reconnect_and_lose_or_duplicate_nothing(lab, tmp_path, watches):
    token = uuid.uuid4().hex[:12]
    folder = fresh_folder(lab, token, 150, size=20000)
    proxy = Relay((lab["host"], lab["ports"]["imaps"]))
    try:
        root = make_root(tmp_path, lab, folder=folder, port=proxy.port)
        watch = watches(root, "--max-runtime", "120")
        # Cut while the backlog is being worked through, then on the next connection once it has logged in
        # (the heartbeat counts the reconnect before catching up), then again while idling, with mail
        # arriving during the cut. Every cut lands on a logged-in connection, so each one must give a
        # reconnect: a cut before the login would be a failed attempt, not a reconnect, and the count a race.
        wait_until(lambda: len(token_counts(root, token)) >= 10, 60, "10 items")
        cuts = proxy.cut()
        assert cuts == 1
        wait_until(lambda: (heartbeat(root) or {}).get("reconnects", 0) >= 1, 30, "the watch to log in again")
        cuts += proxy.cut()
        assert cuts == 2
        wait_until(lambda: len(token_counts(root, token)) == 150, 60, "the whole backlog")
        wait_until(lambda: (h := heartbeat(root)) and h["status"] == "idle" and h["reconnects"] >= 2, 30,
                   "the watch to idle on its third connection")  # fmt: skip
        cuts += proxy.cut()
        assert cuts == 3
        client = imap_client(lab)
        try:
            append(client, folder, token, range(151, 156))
        finally:
            client.logout()
        wait_until(lambda: len(token_counts(root, token)) == 155, 60, "the mail sent during the cut")
        code, envelope, stderr = watch.finish(signal.SIGTERM)
    finally:
        proxy.close()
    assert code == 0, stderr
    counts = token_counts(root, token)
    assert set(counts) == {f"{token} #{n}" for n in range(1, 156)}
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    # Each cut hit a logged-in connection and the mail after the last one came in on a new connection.
    assert envelope["data"]["reconnects"] >= cuts
    assert proxy.accepted >= cuts + 1
    assert "reconnect" in stderr


def test_sigterm_in_the_middle_of_a_backlog_exits_0_with_nothing_half_written(lab, tmp_path, watches):
    token = uuid.uuid4().hex[:12]
    folder = fresh_folder(lab, token, 300, size=20000)
    root = make_root(tmp_path, lab, folder=folder)
    watch = watches(root, "--max-runtime", "120")
    wait_until(lambda: len(token_counts(root, token)) >= 20, 60, "the first items")
    code, envelope, stderr = watch.finish(signal.SIGTERM, timeout=20)
    assert code == 0, stderr
    assert envelope["status"] == "ok" and envelope["data"]["stopped_by"] == "SIGTERM"
    assert not dotfiles(root), dotfiles(root)
    counts = token_counts(root, token)
    assert set(counts.values()) == {1}
    # The checkpoint covers exactly what is in the mailroom: the stop neither ran ahead nor fell behind.
    (checkpoint_file,) = (state_dir(root) / "sink" / "folders").glob("*.json")
    checkpoint = json.loads(checkpoint_file.read_text())
    assert checkpoint["folder"] == folder
    assert len(counts) == checkpoint["last_uid"] < 300, (len(counts), checkpoint)
    assert envelope["data"]["processed"] == len(counts)
    # A second run takes up exactly where the first stopped.
    again = watches(root, "--max-runtime", "120")
    wait_until(lambda: len(token_counts(root, token)) == 300, 90, "the rest of the backlog")
    code, _, stderr = again.finish(signal.SIGINT)
    assert code == 0, stderr
    counts = token_counts(root, token)
    assert set(counts) == {f"{token} #{n}" for n in range(1, 301)} and set(counts.values()) == {1}


def test_max_runtime_stops_by_itself_and_an_unknown_mailbox_is_a_usage_error(lab, tmp_path, watches):
    root = make_root(tmp_path, lab)
    started = time.monotonic()
    code, envelope, _ = watches(root, "--max-runtime", "3").finish(sig=None)
    assert code == 0 and envelope["data"]["stopped_by"] == "max-runtime"
    assert 3 <= time.monotonic() - started < 20
    done = subprocess.run(
        [SPINE_COMMS, "communications.inbox.watch", "--root", str(root), "--json", "--execute", "--mailbox", "nobody"],
        capture_output=True, text=True, timeout=30, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "nobody" in done.stderr


def test_a_refused_password_exits_3_without_showing_it(lab, tmp_path, watches):
    root = make_root(tmp_path, lab)
    sentinel = "Sentinel-" + uuid.uuid4().hex
    code, envelope, stderr = watches(
        root, "--max-runtime", "30", env=clean_env({"STALWART_SINK_PASSWORD": sentinel})
    ).finish(sig=None)
    assert code == 3, stderr
    assert envelope["status"] == "error"
    receipt = Path(envelope["receipt"])
    everything = stderr + json.dumps(envelope) + "".join(p.read_text() for p in receipt.iterdir())
    assert sentinel not in everything
    assert "auth" in json.dumps(envelope["checks"])


def health(root: Path, lab: dict) -> dict:
    """communications.inbox.health, straight to the lab's IMAPS port (whatever proxy the watch goes through)."""
    from tests.cli_process import run_capability

    done = run_capability(root, "communications.inbox.health", env={"STALWART_IMAP_PORT": str(lab["ports"]["imaps"])})
    return next(c for c in done.envelope["checks"] if c["id"] == "inbox.health.fresh")


def test_health_turns_red_when_the_watch_is_sigkilled(lab, tmp_path, watches):
    root = make_root(tmp_path, lab, folder=fresh_folder(lab, uuid.uuid4().hex[:12], 3),
                     health="{max_heartbeat_age_seconds: 3}")  # fmt: skip
    watch = watches(root, "--max-runtime", "120")
    wait_until(lambda: (h := heartbeat(root)) and h["status"] == "idle", 30, "the watch to idle")
    time.sleep(4)  # past the limit since its catch-up poll: only the live heartbeat keeps it fresh now
    fresh = health(root, lab)
    assert fresh["status"] == "ok" and "watch heartbeat" in fresh["detail"], fresh
    watch.proc.send_signal(signal.SIGKILL)
    watch.proc.wait(timeout=10)
    assert heartbeat(root)["status"] == "idle"  # what a killed watch leaves behind
    fresh = health(root, lab)
    assert fresh["status"] == "fail", fresh
    assert f"pid {watch.proc.pid}" in fresh["detail"] and "not running" in fresh["detail"]


def test_health_turns_red_when_the_watch_is_stuck_reconnecting(lab, tmp_path, watches):
    proxy = Relay((lab["host"], lab["ports"]["imaps"]))
    try:
        root = make_root(tmp_path, lab, folder=fresh_folder(lab, uuid.uuid4().hex[:12], 2), port=proxy.port,
                         health="{max_heartbeat_age_seconds: 3}", reconnect_backoff_seconds=[0.3])  # fmt: skip
        watches(root, "--max-runtime", "120")
        wait_until(lambda: (h := heartbeat(root)) and h["status"] == "idle", 30, "the watch to idle")
        assert health(root, lab)["status"] == "ok"
        proxy.close()  # the server is gone: every reconnect fails, and the heartbeat keeps being rewritten
        wait_until(lambda: (h := heartbeat(root)) and h["status"] in ("reconnecting", "connecting"), 30,
                   "the watch to lose its connection")  # fmt: skip
        time.sleep(4)
        beat = heartbeat(root)
        assert beat["status"] in ("reconnecting", "connecting") and beat["last_error"]
        fresh = health(root, lab)
        assert fresh["status"] == "fail", fresh
        assert "the watch is reconnecting" in fresh["detail"] or "the watch is connecting" in fresh["detail"]
    finally:
        proxy.close()


def test_the_reconnect_backoff_starts_over_after_a_healthy_connection(lab, tmp_path, watches):
    proxy = Relay((lab["host"], lab["ports"]["imaps"]))
    try:
        root = make_root(tmp_path, lab, folder=fresh_folder(lab, uuid.uuid4().hex[:12], 2), port=proxy.port,
                         reconnect_backoff_seconds=[0.2, 7, 7])  # fmt: skip
        watch = watches(root, "--max-runtime", "120")
        for n in range(1, 4):  # three drops, each after the watch was back in IDLE
            wait_until(lambda n=n: (h := heartbeat(root)) and h["status"] == "idle" and h["reconnects"] == n - 1,
                       30, f"connection {n} to idle")  # fmt: skip
            assert proxy.cut() == 1
        wait_until(lambda: (h := heartbeat(root)) and h["status"] == "idle" and h["reconnects"] == 3, 10,
                   "the fourth connection, within the first backoff step each time")  # fmt: skip
        code, _, stderr = watch.finish(signal.SIGTERM)
    finally:
        proxy.close()
    assert code == 0, stderr
    delays = [line.split("reconnecting in ")[1] for line in stderr.splitlines() if "reconnecting in " in line]
    assert delays == ["0.2 s"] * 3, delays
