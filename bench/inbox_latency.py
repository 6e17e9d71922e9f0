"""Benchmark: watch latency, from SMTP submission to the mailroom item on disk. Target: p99 <= 5 s.

A lab of its own; `communications.inbox.watch --mailbox sink` runs as a real
process (IDLE on sink@'s INBOX). 100 messages are submitted through Postfix's
submission port one at a time (STARTTLS, AUTH), each only after the previous one
is in the mailroom, so every latency is one message's trip: submission ->
OpenDKIM -> OpenDMARC -> LMTP -> Dovecot -> IDLE EXISTS -> the watch's pipeline
-> the item renamed into inbox/queued. The clock starts before the SMTP
connection is opened and stops when the item is seen (the queued lane is scanned
every 2 ms; the item's own mtime is reported too, as the lower bound).

    .venv/bin/python bench/inbox_latency.py [--messages 100] [--port-base 28000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import runner as lab_runner  # noqa: E402
from lab.layout import Knobs  # noqa: E402

TARGET_P99 = 5.0
SPINE_COMMS = str(Path(sys.executable).parent / "spine-comms")


def watch_root(info: dict, where: Path) -> Path:
    """The lab's bindings, with an inbox contract that watches sink@ (the lab's spare user)."""
    root = where / "root"
    shutil.copytree(Path(info["root"]) / "bindings", root / "bindings")
    (root / "bindings" / "communications.inbox.contract.yaml").write_text(
        "version: 1\n"
        "mailboxes:\n"
        "  - {id: sink, address: sink@spine.test, login: sink@spine.test,\n"
        f"     password_ref: 'file:{info['lab_dir']}/secrets/sink.password', after_enqueue: {{action: seen}}}}\n"
        f"policy: {{trusted_authserv_id: {info['authserv_id']}}}\n"
        "mailroom: {via: filesystem}\n"
    )
    return root


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def find_item(queued: Path, token: str, known: set[str]) -> Path | None:
    for entry in os.scandir(queued):
        if entry.name in known or entry.name.startswith("."):
            continue
        known.add(entry.name)
        if token in Path(entry.path).read_text(errors="replace"):
            return Path(entry.path)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--port-base", type=int, default=28000)
    parser.add_argument("--timeout", type=float, default=60.0, help="give up on one message after this many s")
    args = parser.parse_args()
    info = lab_runner.start(None, args.port_base, Knobs())
    scratch = Path(tempfile.mkdtemp(prefix="inbox-latency."))
    watch = None
    try:
        root = watch_root(info, scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STALWART_", "SPINE_"))}
        with open(scratch / "watch.log", "w") as log:  # the child keeps its own copy of the descriptor
            watch = subprocess.Popen(
                [SPINE_COMMS, "communications.inbox.watch", "--root", str(root), "--json", "--execute",
                 "--mailbox", "sink"],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            )  # fmt: skip
        heartbeat = root / "mailroom/state/communications/inbox/sink.heartbeat.json"
        deadline = time.monotonic() + 30
        while not (heartbeat.exists() and json.loads(heartbeat.read_text()).get("status") == "idle"):
            if time.monotonic() > deadline or watch.poll() is not None:
                print("the watch did not reach IDLE; see", scratch / "watch.log", file=sys.stderr)
                return 1
            time.sleep(0.05)
        queued = root / "mailroom/inbox/queued"
        queued.mkdir(parents=True, exist_ok=True)
        known = {e.name for e in os.scandir(queued)}
        context = ssl.create_default_context(cafile=info["tls"]["ca_cert"])
        context.check_hostname = False
        password = info["users"]["ops"]["password"]
        seen, floor = [], []
        for n in range(1, args.messages + 1):
            token = f"lat-{uuid.uuid4().hex[:12]}"
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "ops@spine.test", "sink@spine.test", f"{token} #{n}"
            message.set_content(f"latency probe {n}\n")
            started = time.time()
            with smtplib.SMTP(info["host"], info["ports"]["submission"], timeout=10) as smtp:
                smtp.starttls(context=context)
                smtp.login("ops@spine.test", password)
                smtp.send_message(message)
            give_up = time.monotonic() + args.timeout
            while (item := find_item(queued, token, known)) is None:
                if time.monotonic() > give_up:
                    print(f"message {n} never arrived in the mailroom", file=sys.stderr)
                    return 1
                time.sleep(0.002)
            seen.append(time.time() - started)
            floor.append(item.stat().st_mtime - started)
        watch.terminate()
        out, _ = watch.communicate(timeout=30)
        envelope = json.loads(out)
        shutil.rmtree(scratch, ignore_errors=True)  # kept only when something failed, for watch.log
    finally:
        if watch is not None and watch.poll() is None:
            watch.kill()
        lab_runner.stop(info["lab_dir"], purge=True)
    p50, p99 = statistics.median(seen), percentile(seen, 99)
    print(f"messages:          {len(seen)} (one at a time, submission -> item in inbox/queued)")
    print(f"latency p50:       {p50:.3f} s   (item mtime: {statistics.median(floor):.3f} s)")
    print(f"latency p99:       {p99:.3f} s   (item mtime: {percentile(floor, 99):.3f} s)")
    print(f"latency min/max:   {min(seen):.3f} / {max(seen):.3f} s")
    print(f"watch:             exit {watch.returncode}, {envelope['data']['processed']} processed, "
          f"{envelope['data']['reconnects']} reconnects")  # fmt: skip
    print(f"target:            p99 <= {TARGET_P99:g} s -> {'met' if p99 <= TARGET_P99 else 'MISSED'}")
    return 0 if p99 <= TARGET_P99 and watch.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
