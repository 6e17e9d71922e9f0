"""Benchmark: calendar.sync.execute, a first sync of 1,000 events and an incremental one after 10 change.

Starts its own lab, generates a 1,000-event source in calendar.global.yaml's shape (the
spine's three spine-authority layers share the events; the external layers keep theirs),
syncs it into an empty calendar, changes 10 events in the source and syncs again. Reports
the incremental run's wall time and HTTP requests as ratios to the first (target <= 0.1),
and a plain loop that PUTs every event into another empty calendar, for scale. Runs are
in-process (CliRunner), so Python's start-up is not counted.

    .venv/bin/python bench/calendar_sync.py [--events 1000] [--changed 10] [--server radicale|xandikos]
                                            [--port-base 27000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import runner as lab_runner  # noqa: E402
from lab.layout import Knobs  # noqa: E402

TARGET = 0.1
SPINE_LAYERS = ("infrastructure", "automation", "spine")


def generate(fixture: Path, count: int, changed: int = 0) -> str:
    """The fixture with its spine-authority layers' events replaced by `count` generated ones; the
    first `changed` get another description (the "10 changes in the source")."""
    data = yaml.safe_load(fixture.read_text())
    for layer in SPINE_LAYERS:
        data["layers"]["definitions"][layer]["events"] = []
    for i in range(count):
        layer = SPINE_LAYERS[i % len(SPINE_LAYERS)]
        event = {"id": f"bench-{i:05d}", "summary": f"Bench event {i}", "freq": ("DAILY", "WEEKLY")[i % 2],
                 "byhour": i % 24, "byminute": (i * 7) % 60, "duration_minutes": 15 + i % 90,
                 "description": f"Generated event {i} for the calendar sync benchmark."}  # fmt: skip
        if event["freq"] == "WEEKLY":
            event["byday"] = [("MO", "TU", "WE", "TH", "FR")[i % 5]]
        if i < changed:
            event["description"] += " Changed."
        data["layers"]["definitions"][layer]["events"].append(event)
    return yaml.safe_dump(data, sort_keys=False)


def make_calendar(client, name: str) -> str:
    from spine_comms.protocols.dav import child_href, discover

    href = child_href(discover(client, "caldav").home_set, name) + "/"
    client.mkcalendar(href, display_name=name, color=None, components=["VEVENT"])
    return href


def client_for(account: dict):
    from spine_comms.protocols.dav import DavClient

    password = Path(account["password_ref"].removeprefix("file:")).read_text() if account.get("password_ref") else None
    return DavClient(account["base_url"], username=account.get("login"), password=password,
                     ca_file=account.get("ca_file"), server_name=account.get("server_name"), timeout=60)  # fmt: skip


def sync_once(root: str, source: Path) -> tuple[float, dict]:
    from typer.testing import CliRunner

    from spine_comms.cli import app

    args = ["calendar.sync.execute", "--root", root, "--json", "--execute", "--yes", "--source", str(source)]
    start = time.perf_counter()
    result = CliRunner().invoke(app, args)
    elapsed = time.perf_counter() - start
    envelope = json.loads(result.stdout[result.stdout.index("{") :])
    if envelope["status"] != "ok":
        raise SystemExit(f"calendar.sync.execute: {envelope['status']}: {json.dumps(envelope['data'].get('errors'))}")
    return elapsed, envelope["data"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--server", choices=("radicale", "xandikos"), default="radicale")
    parser.add_argument("--port-base", type=int, default=27000)
    args = parser.parse_args()
    info = lab_runner.start(None, args.port_base, Knobs())
    try:
        bindings = Path(info["root"]) / "bindings"
        contract_path = bindings / "communications.dav.contract.yaml"
        contract = yaml.safe_load(contract_path.read_text())
        account = next(a for a in contract["accounts"] if a["id"] == args.server)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        contract["calendars"].append({"id": name, "account": args.server})
        contract["sync"] = {"source": "bench-source.yaml", "target_calendar": name, "account": args.server,
                            "limits": {"max_create": args.events, "max_update": args.events,
                                       "max_delete": args.events}}  # fmt: skip
        contract_path.write_text(yaml.safe_dump(contract, sort_keys=False))
        client = client_for(account)
        make_calendar(client, name)
        fixture = bindings / "calendar.global.yaml"
        source = bindings / "bench-source.yaml"
        source.write_text(generate(fixture, args.events))
        first_time, first = sync_once(info["root"], source)
        source.write_text(generate(fixture, args.events, args.changed))
        second_time, second = sync_once(info["root"], source)
        if second["summary"]["updated"] != args.changed:
            raise SystemExit(f"expected {args.changed} updates, got {second['summary']}")

        # For scale: PUT every event, unconditionally, into another empty calendar.
        from spine_comms.calendar.layers import desired_events, load_source

        plain = make_calendar(client, f"plain-{uuid.uuid4().hex[:8]}")
        bodies = [e for e in desired_events(load_source(source)) if e.authority == "spine"]
        before = client.requests
        start = time.perf_counter()
        for event in bodies:
            client.request("PUT", plain + event.name, body=event.body,
                           headers={"Content-Type": "text/calendar; charset=utf-8"})  # fmt: skip
        loop_time, loop_requests = time.perf_counter() - start, client.requests - before
        client.close()
    finally:
        lab_runner.stop(info["lab_dir"], purge=True)
    time_ratio = second_time / first_time
    request_ratio = second["requests"] / first["requests"]
    print(f"calendar.sync.execute on {args.server}: {args.events} events, then {args.changed} changed")
    print(f"  first sync:       {first_time:7.2f} s  {first['requests']:5d} requests  ({first['listing']})")
    print(f"  incremental sync: {second_time:7.2f} s  {second['requests']:5d} requests  ({second['listing']})")
    print(
        f"  plain PUT loop:   {loop_time:7.2f} s  {loop_requests:5d} requests  (every event, no conditions, no state)"
    )
    print(f"  ratio (incremental / first): time {time_ratio:.3f}, requests {request_ratio:.3f} (target <= {TARGET})")
    ok = time_ratio <= TARGET and request_ratio <= TARGET
    print(f"  {'OK' if ok else 'OVER TARGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
