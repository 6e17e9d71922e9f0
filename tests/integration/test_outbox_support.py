"""Shared pieces of the outbox lab tests (no tests here): a root of their own, the CLI, a policy service, the queue."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from lab.layout import POLICY_PORT_OFFSET, PORT_OFFSETS
from tests.cli_process import SPINE_COMMS, run_capability


def own_root(lab: dict, tmp_path: Path, outbox_contract: str | None = None) -> tuple[Path, dict[str, str]]:
    """A root with the lab's bindings and a mailroom of its own (the shared one stays untouched)."""
    root = tmp_path / "root"
    shutil.copytree(Path(lab["root"]) / "bindings", root / "bindings")
    (root / "bindings" / "mailroom.runtime.contract.yaml").unlink(missing_ok=True)
    if outbox_contract is not None:
        (root / "bindings" / "communications.outbox.contract.yaml").write_text(outbox_contract)
    env = {f"SPINE_{part.upper()}": str(tmp_path / "mailroom" / part) for part in ("inbox", "outbox", "state", "logs")}
    return root, env


def run(root: Path, capability: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    # flush is a dry run unless told to act (the runner's rule); these tests deliver unless they say --dry-run.
    acting = ("--execute",) if capability == "communications.outbox.flush" and "--dry-run" not in args else ()
    done = run_capability(root, capability, *acting, *args, env=env, timeout=timeout)
    return done.code, done.envelope, done.stderr


def start(root: Path, capability: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STALWART_", "SPINE_"))}
    return subprocess.Popen(
        [SPINE_COMMS, capability, "--root", str(root), "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**clean, **(env or {})},
    )  # fmt: skip


def policy_port(lab: dict) -> int:
    return lab["ports"]["smtp"] - PORT_OFFSETS["smtp"] + POLICY_PORT_OFFSET


class PolicyServer:
    """Postfix's policy delegation protocol (attributes, a blank line; `action=...`, a blank line).

    mode "dunno" lets the recipient through; "hold" reads the request and keeps the answer back
    until release() (the RCPT reply hangs). `requests` counts what Postfix asked."""

    def __init__(self, port: int, mode: str = "dunno") -> None:
        self.mode = mode
        self.requests = 0
        self.asked = threading.Event()
        self.released = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.sock.settimeout(0.2)
        self.stopped = False
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(120)
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\n\n" in buffer:
                        _, buffer = buffer.split(b"\n\n", 1)
                        self.requests += 1
                        self.asked.set()
                        if self.mode == "hold":
                            self.released.wait(120)
                        conn.sendall(b"action=DUNNO\n\n")
            except OSError:
                return

    def release(self) -> None:
        self.mode = "dunno"
        self.released.set()

    def close(self) -> None:
        self.stopped = True
        self.release()
        self.sock.close()
        self.thread.join(5)
        for conn in self.connections:  # a connection Postfix kept must not outlive this server
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def queue_empty(lab: dict, timeout: float = 60.0) -> None:
    """Wait until Postfix's queue holds nothing: whatever was accepted has been delivered (or bounced)."""
    conf = str(Path(lab["lab_dir"]) / "etc" / "postfix")
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(["postqueue", "-c", conf, "-j"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and not done.stdout.strip():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Postfix queue not empty after {timeout} s: {done.stdout[:500]} {done.stderr[:200]}")
        time.sleep(0.2)


def count_with(messages: list[bytes], needle: str) -> int:
    return sum(1 for m in messages if needle.encode() in m)


def records(tmp_path: Path) -> dict[str, dict]:
    directory = tmp_path / "mailroom" / "state" / "outbox" / "sends"
    return {p.stem: json.loads(p.read_text()) for p in directory.glob("*.json")}


def log_lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "mailroom" / "outbox" / "communications" / "communications-delivery-log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
