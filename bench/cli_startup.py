"""Benchmark: `spine-comms --help` and `--version` wall time, as a ratio to `python -c "import typer"`.

Target: ratio <= 1.5 (heavy imports load only in the commands that need them).
Runs are interleaved so that machine noise hits every command alike; the median is used.

    .venv/bin/python bench/cli_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 1.5


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    return time.perf_counter() - start


ENV = {**os.environ, "COLUMNS": "100"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    script = str(Path(sys.executable).parent / "spine-comms")
    commands = {
        "baseline: python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "spine-comms --help": [script, "--help"],
        "spine-comms --version": [script, "--version"],
    }
    for argv in commands.values():  # warm the file cache and the .pyc files
        wall(argv)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            times[name].append(wall(argv))
    base = statistics.median(times["baseline: python -c 'import typer'"])
    worst = 0.0
    print(f"{'command':40} {'median ms':>10} {'ratio':>7}")
    for name, samples in times.items():
        ratio = statistics.median(samples) / base
        worst = max(worst, ratio)
        print(f"{name:40} {statistics.median(samples) * 1000:10.1f} {ratio:7.2f}")
    verdict = "met" if worst <= TARGET else "MISSED"
    print(f"target: ratio <= {TARGET}: {verdict} (worst {worst:.2f}, {args.runs} interleaved runs)")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
