"""Benchmark: poll -> JetStream (R3, TLS, the lab's three nodes) against poll -> the file mailroom, in
the same run on the same messages, and the drain from the stream into queued/.

A lab of its own. N messages are put in two fresh folders of sink@ (Maildir), one polled into the
file mailroom and one into a stream of its own; each poll is one `communications.inbox.poll
--enqueue` process, timed from start to exit. Then `mailroom.drain`'s loop (in this process)
writes the stream into a fresh inbox.

Then the pollers series: 1, 2 and 3 pollers at once, each a `poll --enqueue` process with a root
(and state directory) of its own, each on its own mailbox (ops@, alerts@, noreply@: a fresh folder
of --per-poller messages each), all publishing into one stream. Its throughput is all the messages
over the wall time from the first start to the last exit, and its ratio to one poller's;
machine_cpus_busy says how many of the machine's CPUs were busy meanwhile (with anything).
Prints one JSON object.

    .venv/bin/python bench/mailroom_jetstream.py [--messages 1000] [--per-poller 500] [--port-base 36800]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import runner as lab_runner  # noqa: E402
from lab.layout import Knobs  # noqa: E402
from spine_comms.mailroom.drain import drain  # noqa: E402
from tests.cli_process import SPINE_COMMS, clean_env  # noqa: E402
from tests.integration.inbox_lab import make_root, run  # noqa: E402
from tests.integration.nats_lab import connect, make_js_root, settings  # noqa: E402
from tests.mailbox_fill import fill_maildir, make_messages  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--per-poller", type=int, default=500, help="messages per poller in the pollers series")
    parser.add_argument("--port-base", type=int, default=36800)
    args = parser.parse_args()
    n = args.messages
    lab = lab_runner.start(None, args.port_base, Knobs())
    try:
        lab_root = Path(lab["root"])
        messages = make_messages(n, seed=1, tag="bench", min_bytes=2048, max_bytes=16 * 1024)
        work = Path(tempfile.mkdtemp(prefix="bench-js."))
        report = {"messages": n, "bytes_per_message": "2-16 KiB", "replicas": 3}
        js = settings(lab)
        for name in ("file", "jetstream"):
            folder = f"B{uuid.uuid4().hex[:8]}"
            fill_maildir(lab, "sink", folder, messages)
            if name == "file":
                root = make_root(work / name, lab, lab_root, folders=[folder])
            else:
                root = make_js_root(work / name, lab, lab_root, js, folders=[folder])
                connect(lab, js).close()  # the cluster's leader elected before the clock starts
            started = time.monotonic()
            code, envelope, _ = run(root, "--enqueue")
            seconds = time.monotonic() - started
            enqueued = envelope["data"]["mailboxes"][0]["enqueued"]
            assert code == 0 and enqueued == n, (code, envelope["summary"])
            report[f"poll_{name}"] = {"seconds": round(seconds, 2), "msg_per_s": round(n / seconds, 1)}
        with connect(lab, js) as connection:
            wait = 0.5
            started = time.monotonic()
            outcome = drain(connection, work / "drained", consumer=js.drain_consumer, wait=wait)
            seconds = time.monotonic() - started - wait  # the last, empty fetch waits `wait`
        assert len(outcome.written) == n
        report["drain"] = {"seconds": round(seconds, 2), "msg_per_s": round(n / seconds, 1)}
        report["jetstream_to_file_ratio"] = round(
            report["poll_jetstream"]["msg_per_s"] / report["poll_file"]["msg_per_s"], 2
        )
        report["pollers"] = pollers_series(lab, lab_root, work, js, args.per_poller)
        print(json.dumps(report, indent=2))
    finally:
        lab_runner.stop(lab["lab_dir"], purge=True)
    return 0


MAILBOXES = ("ops", "alerts", "noreply")  # lab users other than sink, one per poller


def pollers_series(lab: dict, lab_root: Path, work: Path, js, per_poller: int) -> dict:
    """1, 2 and 3 pollers at once on separate mailboxes, into one stream: aggregate msg/s and its growth."""
    series: dict = {"messages_per_poller": per_poller}
    for count in (1, 2, 3):
        # Fresh messages each round: the same bytes in the same mailbox are the same item (the dedup key).
        messages = make_messages(per_poller, seed=2, tag=f"bench-scale{count}", min_bytes=2048, max_bytes=16 * 1024)
        folder = f"S{count}{uuid.uuid4().hex[:8]}"
        roots = []
        for user in MAILBOXES[:count]:
            fill_maildir(lab, user, folder, messages)
            roots.append(make_js_root(work / f"scale{count}-{user}", lab, lab_root, js, folders=[folder], user=user))
        busy_before, started = _cpu_busy(), time.monotonic()
        children = [
            subprocess.Popen([SPINE_COMMS, "communications.inbox.poll", "--root", str(root), "--json", "--enqueue"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
            for root in roots
        ]  # fmt: skip
        each = []
        for child in children:
            out, err = child.communicate(timeout=3600)
            envelope = json.loads(out)
            enqueued = envelope["data"]["mailboxes"][0]["enqueued"]
            assert child.returncode == 0 and enqueued == per_poller, (child.returncode, envelope["summary"], err[-500:])
            each.append(round(time.monotonic() - started, 2))
        seconds = time.monotonic() - started
        busy = _cpu_busy()
        series[f"{count}_pollers"] = {"seconds": round(seconds, 2), "msg_per_s": round(count * per_poller / seconds, 1),
                                      "each_done_after_s": each,
                                      "machine_cpus_busy": round((busy[0] - busy_before[0]) / (busy[1] - busy_before[1])
                                                                 * os.cpu_count(), 2)}  # fmt: skip
    one = series["1_pollers"]["msg_per_s"]
    series["growth_vs_1"] = {f"{c}_pollers": round(series[f"{c}_pollers"]["msg_per_s"] / one, 2) for c in (1, 2, 3)}
    return series


def _cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat: how many CPUs a round kept busy, this
    bench and whatever else ran (other test runs on a shared machine), to tell a CPU-bound series."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


if __name__ == "__main__":
    raise SystemExit(main())
