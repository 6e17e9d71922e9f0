"""Benchmark: `dns.mail.status` wall time with 100 ms on every DNS answer, as a ratio to
(depth of the longest chain of dependent queries x 100 ms). Target: ratio <= 1.5.

A small proxy in front of the lab's Knot holds every answer (UDP and TCP) for the
delay, each query in its own thread, so concurrent queries overlap as they would
against a distant resolver. Run in-process after one warm-up run, so Python's
start-up and first imports are not counted; the median of the runs is reported.

The longest chain in the lab's zone is 3 dependent queries, two ways:
  mail host A -> PTR of its address -> A of the PTR name (forward-confirmed rDNS), and
  SPF TXT -> the `mx` mechanism's MX -> the MX target's A (the void/lookup count).
The proxy's log also shows how many waves of queries the run really made.

    .venv/bin/python bench/dns_status.py [--runs 5] [--delay 0.1] [--port-base 26000]
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import runner as lab_runner  # noqa: E402
from lab.layout import Knobs  # noqa: E402

TARGET = 1.5
DEPTH = 3


class DelayingProxy:
    """Forward DNS over UDP and TCP to the upstream, each answer held back by `delay` seconds."""

    def __init__(self, upstream: tuple[str, int], delay: float):
        self.upstream, self.delay = upstream, delay
        self.arrivals: list[float] = []
        proxy = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                proxy.arrivals.append(time.monotonic())
                time.sleep(proxy.delay)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                    up.settimeout(5)
                    up.sendto(data, proxy.upstream)
                    sock.sendto(up.recv(65535), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self):
                length = int.from_bytes(self.request.recv(2), "big")
                data = self.request.recv(length)
                proxy.arrivals.append(time.monotonic())
                time.sleep(proxy.delay)
                with socket.create_connection(proxy.upstream, timeout=5) as up:
                    up.sendall(len(data).to_bytes(2, "big") + data)
                    size = int.from_bytes(up.recv(2), "big")
                    reply = b""
                    while len(reply) < size:
                        reply += up.recv(size - len(reply))
                self.request.sendall(size.to_bytes(2, "big") + reply)

        self.udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        port = self.udp.server_address[1]
        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
        self.port = port
        for server in (self.udp, self.tcp):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def waves(self, gap: float) -> int:
        """Groups of queries separated by at least `gap`: the dependency depth the run actually had."""
        times = sorted(self.arrivals)
        return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] >= gap)

    def close(self):
        for server in (self.udp, self.tcp):
            server.shutdown()
            server.server_close()


def run_once(root: str, server: str) -> tuple[float, dict]:
    from typer.testing import CliRunner

    from spine_comms.cli import app

    start = time.perf_counter()
    result = CliRunner().invoke(app, ["dns.mail.status", "--root", root, "--json", "--dns-server", server])
    elapsed = time.perf_counter() - start
    envelope = json.loads(result.stdout[result.stdout.index("{") :])
    return elapsed, envelope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--port-base", type=int, default=26000)
    args = parser.parse_args()
    info = lab_runner.start(None, args.port_base, Knobs())  # None: a fresh /tmp/spine-lab.* the daemons can reach
    try:
        proxy = DelayingProxy(("127.0.0.1", info["ports"]["dns"]), args.delay)
        server = f"127.0.0.1:{proxy.port}"
        _, warm = run_once(info["root"], server)
        if warm["status"] not in ("ok", "warn"):
            print(f"dns.mail.status is {warm['status']} on the lab; the benchmark needs a clean run", file=sys.stderr)
            return 1
        times, waves = [], []
        for _ in range(args.runs):
            proxy.arrivals.clear()
            elapsed, _ = run_once(info["root"], server)
            times.append(elapsed)
            waves.append(proxy.waves(gap=args.delay / 2))
        proxy.close()
    finally:
        lab_runner.stop(info["lab_dir"], purge=True)
    median = statistics.median(times)
    ideal = DEPTH * args.delay
    ratio = median / ideal
    print(f"dns.mail.status with {args.delay * 1000:.0f} ms per DNS answer, {args.runs} runs")
    print(f"  wall time (median): {median * 1000:.0f} ms   runs: {', '.join(f'{t * 1000:.0f}' for t in times)}")
    print(f"  longest dependent chain: {DEPTH} queries -> ideal {ideal * 1000:.0f} ms; waves seen: {max(waves)}")
    print(f"  ratio: {ratio:.2f} (target <= {TARGET})  {'OK' if ratio <= TARGET else 'OVER TARGET'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
