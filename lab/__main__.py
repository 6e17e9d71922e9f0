"""CLI: `python -m lab start|stop|status`. JSON on stdout, errors on stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lab import runner
from lab.layout import DEFAULT_PORT_BASE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a lab; prints its endpoints and credentials as JSON")
    start.add_argument("--dir", help="new or empty lab directory (default: a new /tmp/spine-lab.XXXXXX)")
    start.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("LAB_PORT_BASE") or DEFAULT_PORT_BASE),
        help="every port is base + a fixed offset (default: $LAB_PORT_BASE or 10000)",
    )
    stop = sub.add_parser("stop", help="stop the lab's own processes (by recorded pid)")
    stop.add_argument("--dir", required=True)
    stop.add_argument("--purge", action="store_true", help="also delete the lab directory")
    status = sub.add_parser("status", help="which daemons run and which ports accept")
    status.add_argument("--dir", required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            result = runner.start(args.dir, args.port_base)
        elif args.command == "stop":
            result = runner.stop(args.dir, purge=args.purge)
        else:
            result = runner.status(args.dir)
    except (runner.LabError, RuntimeError, OSError) as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.command == "stop":
        return 1 if result["left_running"] else 0
    if args.command == "status":
        return 0 if result["running"] else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
