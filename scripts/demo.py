"""`make demo`: start the lab, run every capability against it, print a summary, stop the lab.

Each capability issue adds its demo step to DEMO below. The lab directory is kept
after the run, so the receipt paths in the summary stay readable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SPINE_COMMS = str(Path(PY).parent / "spine-comms")

# Phase 3 mail out: one mail from ops@ to noreply@ (a dry run, the send, the same send again).
DEMO_MAIL = ["--from", "ops", "--to", "noreply@spine.test", "--subject", "Demo: via the outbox"]
DEMO_MAIL += ["--body", "Sent by make demo through the outbox."]

# Phase 4 gaps: the gap the endpoint sync closes, filed under the loop (its discoverer).
DEMO_GAP = ["--type", "missing-entry", "--severity", "medium", "--discovered-by", "LOOP-COMMS-AGENTIC-LAYER-20260223"]
DEMO_GAP += ["--doc", "bindings/communications.stack.contract.yaml", "--description"]
DEMO_GAP += ["Stack contract lacks the CalDAV, CardDAV, ManageSieve, IMAP-poll and admin endpoints (loop step 4.5)."]

# Not a capability: the demo's own check that the Sieve rule files an [ALERT] mail (alert_routed).
ALERT_CHECK = ("alert.routed", [])
# Not a capability either: one mail along the scale-out path, Dovecot -> poll -> JetStream -> drain -> queued/
# (jetstream_travel; issue 20, docs/scale-out.md), on a root of its own whose mailroom is the lab's NATS cluster.
JETSTREAM_TRAVEL = ("jetstream.travel", [])

# (capability, extra options). Run in this order against the lab's root; {lab_dir} and
# {root} in an option are filled in from the running lab.
DEMO: list[tuple[str, list[str]]] = [
    ("communications.stack.status", []),
    # Phase 1: email authentication
    ("dkim.keygen", ["--execute", "--ed25519"]),
    ("dns.mail.status", []),
    ("dkim.check", ["--key", "{lab_dir}/dkim/lab.private"]),
    ("dmarc.check", []),
    ("stalwart.status", []),
    ("stalwart.dkim.status", []),
    ("stalwart.dns.expected", []),
    ("stalwart.dkim.ensure", []),  # a dry run: the plan for the missing Ed25519 key
    ("mail.auth.probe", ["--execute"]),
    # Phase 2: calendars and contacts
    ("calendar.caldav.ensure", ["--execute"]),
    ("contacts.carddav.ensure", ["--execute"]),
    ("calendar.caldav.status", []),
    ("contacts.carddav.status", []),
    (
        "calendar.event.create",
        [
            "--execute",
            "--summary",
            "Demo: ops review",
            "--start",
            "2031-03-24T09:00",
            "--tz",
            "Europe/Berlin",
            "--rrule",
            "FREQ=WEEKLY;BYDAY=MO",
            "--attendee",
            "Ada <ada@example.org>",
        ],
    ),
    (
        "contacts.card.create",
        ["--execute", "--name", "Ada Lovelace", "--email", "work:ada@example.org", "--org", "Analytical"],
    ),
    ("contacts.card.list", ["--search", "lovelace"]),
    ("calendar.sync.plan", []),
    ("calendar.sync.execute", ["--execute", "--yes"]),
    ("calendar.sync.execute", ["--execute", "--yes"]),  # the second run: all noop, no write
    ("calendar.event.list", ["--calendar", "spine-ops", "--from", "2026-02-17", "--to", "2026-02-24"]),
    # Phase 3: mail in. The probe above left its mail in ops@'s INBOX: the poll lists it, then
    # enqueues it (and anything else new) into the mailroom exactly once; a second run finds nothing.
    ("communications.inbox.poll", ["--mailbox", "ops"]),
    ("communications.inbox.poll", ["--enqueue"]),
    ("communications.inbox.poll", ["--enqueue"]),
    ("mailroom.enqueue", ["--text", "Summarize today's inbound mail for the operator.", "--slug", "digest"]),
    ("mailroom.status", []),
    ("communications.inbox.health", []),
    # Phase 3: routing at the server. The plan, then the rules applied; the alert mail that follows
    # (sent by alert_routed below) is filed by them.
    ("sieve.apply", []),
    ("sieve.apply", ["--execute", "--yes"]),
    ("sieve.status", []),
    ALERT_CHECK,  # an [ALERT] mail to ops@, filed by the rule just applied
    JETSTREAM_TRAVEL,  # a mail to sink@ through the three-node JetStream cluster into queued/, exactly once
    # Phase 3: mail out. A dry run (the headers that would go), the send through the durable outbox
    # (delivered: accepted by the lab's Postfix), the same send again (one message, not two), a flush
    # with nothing due, and the outbox's history.
    ("communications.mail.send", DEMO_MAIL),
    ("communications.mail.send", [*DEMO_MAIL, "--execute"]),
    ("communications.mail.send", [*DEMO_MAIL, "--execute"]),
    ("communications.outbox.flush", ["--execute"]),
    ("communications.outbox.status", []),
    # Phase 4: gaps and contract updates (loop step 4.5). The missing endpoints are filed as a gap under
    # the loop, the sync shows its diff and then writes what the status receipts above proved into the
    # stack contract, and the gap is closed as fixed by it.
    ("gaps.file", DEMO_GAP),
    ("gaps.list", []),
    ("contract.endpoints.sync", []),
    ("contract.endpoints.sync", ["--execute", "--yes"]),
    (
        "gaps.close",
        ["--id", "GAP-OP-1", "--status", "fixed", "--fixed-in", "contract.endpoints.sync", "--execute", "--yes"],
    ),
    # Phase 4: governance. Registry parity with the spine's D67/D63 rules, the core verify gates and the
    # weekly hygiene pack (step 4.4 of the loop).
    # Adoption: the toolkit registered into a spine checkout (a synthetic one built from the operator's
    # registry files, see spine_checkout below): the diff, the install, and the spine's own D67/D63/D279.
    ("spine.install", ["--spine-root", "{lab_dir}/spine"]),
    ("spine.install", ["--spine-root", "{lab_dir}/spine", "--execute", "--yes"]),
    ("capabilities.verify", ["--spine-root", "{lab_dir}/spine"]),
    ("capabilities.verify", []),
    ("verify.core.run", []),
    ("verify.pack.run", ["hygiene-weekly"]),
    ("verify.pack.run", ["communications"]),  # the check: every communications gate PASS
    # The very last step: every Definition of Done of the loop proven by the receipts the steps above wrote.
    ("loop.evidence", ["LOOP-COMMS-AGENTIC-LAYER-20260223"]),
]


def alert_routed(info: dict) -> tuple[str, str, int, str]:
    """Send an [ALERT] mail to ops@ through Postfix and show the Sieve rule filed it into Alerts, flagged."""
    import smtplib
    import ssl

    from imapclient import IMAPClient

    ops = info["users"]["ops"]
    context = ssl.create_default_context(cafile=info["tls"]["ca_cert"])
    context.check_hostname = False  # the lab's certificate names mail.spine.test; we dial 127.0.0.1
    subject = f"[ALERT] disk full on demo-{int(time.time())}"
    message = f"From: {ops['address']}\r\nTo: {ops['address']}\r\nSubject: {subject}\r\n\r\ndemo\r\n"
    with smtplib.SMTP_SSL("127.0.0.1", info["ports"]["submissions"], context=context, timeout=10) as smtp:
        smtp.login(ops["login"], ops["password"])
        smtp.sendmail(ops["address"], [ops["address"]], message.encode())
    deadline = time.monotonic() + 20
    with IMAPClient("127.0.0.1", port=info["ports"]["imaps"], ssl_context=context, timeout=10) as imap:
        imap.login(ops["login"], ops["password"])
        while time.monotonic() < deadline:
            if imap.folder_exists("Alerts"):
                imap.select_folder("Alerts", readonly=True)
                found = imap.search(["SUBJECT", subject])
                if found:
                    flags = imap.fetch(found, ["FLAGS"])[found[0]][b"FLAGS"]
                    print(f"    {subject!r} is in Alerts with flags {flags}", file=sys.stderr)
                    return ("sieve routing: alert filed", "ok" if b"\\Flagged" in flags else "fail", 0, "Alerts")
            time.sleep(0.5)
    print(f"    {subject!r} did not reach Alerts within 20 s", file=sys.stderr)
    return ("sieve routing: alert filed", "fail", 1, "-")


def _run(root: Path, capability: str, *options: str) -> tuple[int, dict]:
    argv = [SPINE_COMMS, capability, "--root", str(root), "--json", *options]
    print(f"$ spine-comms {capability} --root {root} {' '.join(options)}".rstrip(), file=sys.stderr)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        envelope = json.loads(done.stdout)
    except json.JSONDecodeError:
        envelope = {"summary": [done.stderr.strip()[-300:]], "data": {}}
    for line in envelope.get("summary") or []:
        print(f"    {line}", file=sys.stderr)
    return done.returncode, envelope


def _jetstream_root(info: dict) -> Path:
    """A root next to the lab's: its bindings, and an inbox contract polling sink@ into the lab's NATS
    cluster (three nodes, TLS with the lab CA, R3) with one agent group, `triage`."""
    import shutil

    root = Path(info["lab_dir"]) / "jetstream-root"
    shutil.copytree(Path(info["root"]) / "bindings", root / "bindings")
    nats = info["nats"]
    jetstream = {"servers": nats["servers"], "stream": "DEMO_MAILROOM", "subject_prefix": "demo.mailroom",
                 "replicas": 3, "user": nats["user"], "password_ref": nats["password_ref"],
                 "ca_file": info["tls"]["ca_cert"], "agent_groups": ["triage"]}  # fmt: skip
    (root / "bindings" / "communications.inbox.contract.yaml").write_text(
        "version: 1\n"
        "mailboxes:\n"
        "  - id: sink\n"
        "    address: sink@spine.test\n"
        "    login: sink@spine.test\n"
        f"    password_ref: {json.dumps('file:' + info['lab_dir'] + '/secrets/sink.password')}\n"
        "    folders: [INBOX]\n"
        f"policy:\n  trusted_authserv_id: {info['authserv_id']}\n"
        f"mailroom:\n  via: jetstream\n  jetstream: {json.dumps(jetstream)}\n"
    )
    return root


def jetstream_travel(info: dict) -> tuple[str, str, int, str]:
    """One mail from ops@ to sink@ (Postfix, Dovecot) polled into JetStream, drained into queued/; polled
    and drained again, nothing moves: the mail is in the stream once and in queued/ once."""
    import shutil
    import smtplib
    import ssl

    name = "jetstream: mail -> stream -> queued/"
    root = _jetstream_root(info)
    # The cluster elects its JetStream leader a few seconds after the lab starts: a poll before that is exit 3.
    deadline = time.monotonic() + 60
    while (code := _run(root, "communications.inbox.poll", "--enqueue", "--baseline")[0]) == 3:
        if time.monotonic() > deadline:
            return (name, "error", code, "-")
        time.sleep(2)
    message_id = f"<demo-jetstream-{int(time.time())}@spine.test>"
    ops = info["users"]["ops"]
    context = ssl.create_default_context(cafile=info["tls"]["ca_cert"])
    context.check_hostname = False  # the lab's certificate names mail.spine.test; we dial 127.0.0.1
    print(f"$ (send a mail {message_id} from ops@ to sink@ through Postfix)", file=sys.stderr)
    with smtplib.SMTP_SSL("127.0.0.1", info["ports"]["submissions"], context=context, timeout=10) as smtp:
        smtp.login(ops["login"], ops["password"])
        smtp.sendmail(ops["address"], ["sink@spine.test"], (
            f"From: {ops['address']}\r\nTo: sink@spine.test\r\nSubject: Demo: over JetStream\r\n"
            f"Message-ID: {message_id}\r\n\r\nThis mail travels Dovecot -> poll -> JetStream -> drain -> queued/.\r\n"
        ).encode())  # fmt: skip
    deadline, enqueued, envelope = time.monotonic() + 30, 0, {}
    while not enqueued and time.monotonic() < deadline:  # Postfix delivers to Dovecot within a second or two
        time.sleep(1)
        code, envelope = _run(root, "communications.inbox.poll", "--enqueue")
        enqueued = sum(m.get("enqueued", 0) for m in envelope.get("data", {}).get("mailboxes", []))
    where = [e["path"] for m in envelope.get("data", {}).get("mailboxes", []) for f in m["folders"]
             for e in f.get("enqueued_messages", [])]  # fmt: skip
    _run(root, "mailroom.status")
    code, drained = _run(root, "mailroom.drain", "--execute")
    files = [p for p in (root / "mailroom" / "inbox" / "queued").glob("*.md") if message_id in p.read_text()]
    _, again = _run(root, "communications.inbox.poll", "--enqueue")
    _, drained_again = _run(root, "mailroom.drain", "--execute")
    agent_host = Path(info["lab_dir"]) / "agent-root"  # an agent group's member on another host: its own mailroom
    shutil.copytree(root / "bindings", agent_host / "bindings")
    _, triage = _run(agent_host, "mailroom.drain", "--execute", "--group", "triage")
    repeat = sum(m.get("enqueued", 0) for m in again.get("data", {}).get("mailboxes", []))
    written = [e.get("data", {}).get("written") for e in (drained, drained_again, triage)]
    ok = enqueued == 1 and len(files) == 1 and repeat == 0 and written == [1, 0, 1]
    if ok:
        print(f"    proves: {message_id} went Dovecot -> poll -> JetStream ({where[0] if where else '?'}, R3 over "
              f"three nodes) -> drain -> {files[0]}; polled and drained again, it moved no more (exactly once); "
              "the agent group triage received it too, once", file=sys.stderr)  # fmt: skip
    else:
        print(f"    FAILED: enqueued {enqueued}, files {files}, drain {drained.get('summary')}, again {repeat}",
              file=sys.stderr)  # fmt: skip
    return (name, "ok" if ok else "fail", 0 if ok else 1, str(files[0]) if files else "-")


def fake_stalwart(lab_dir: str, root: str):
    """Stalwart cannot run here: the demo points the contract at the tests' faithful fake of its
    management API (0.16 form), holding the lab's real DKIM key, so the server view agrees with DNS."""
    sys.path.insert(0, str(REPO))
    from tests.stalwart_fake import FakeStalwart

    fake = FakeStalwart("0.16", hostname="mx.spine.test", default_domain="spine.test").start()
    fake.add_domain("spine.test")
    fake.add_dkim("spine.test", "rsa", selector="lab", pem=(Path(lab_dir) / "dkim" / "lab.private").read_text())
    secret = Path(root) / "stalwart.secret"
    secret.write_text(fake.admin_password)
    secret.chmod(0o600)
    contract = Path(root) / "bindings" / "communications.mailauth.contract.yaml"
    contract.write_text(
        contract.read_text()
        + f"stalwart:\n  url: {fake.url}\n  username: {fake.admin_login}\n  secret_ref: file:{secret}\n"
    )
    return fake


def spine_checkout(lab_dir: str) -> None:
    """A spine checkout for spine.install: the operator's registry files (tests/fixtures/spine/) in git."""
    sys.path.insert(0, str(REPO))
    from tests.spine_checkout import build_spine_checkout

    build_spine_checkout(Path(lab_dir) / "spine")


def lab(*args: str) -> dict:
    done = subprocess.run([PY, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0 and args[0] == "start":
        sys.exit(f"demo: the lab did not start:\n{done.stderr.strip()}")
    return json.loads(done.stdout or "{}")


def main() -> int:
    started = time.monotonic()
    info = lab("start")
    lab_dir, root = info["lab_dir"], info["root"]
    print(f"lab up in {time.monotonic() - started:.1f} s at {lab_dir}; root {root}", file=sys.stderr)
    rows = []
    fake = fake_stalwart(lab_dir, root)
    spine_checkout(lab_dir)
    try:
        for capability, options in DEMO:
            if (capability, options) == ALERT_CHECK:
                print("$ (send an [ALERT] mail to ops@ and look in its Alerts folder)", file=sys.stderr)
                rows.append(alert_routed(info))
                continue
            if (capability, options) == JETSTREAM_TRAVEL:
                rows.append(jetstream_travel(info))
                continue
            extra = [o.format(lab_dir=lab_dir, root=root) for o in options]
            argv = [SPINE_COMMS, capability, "--root", root, "--json", *extra]
            print(f"$ spine-comms {capability} --root {root} {' '.join(extra)}".rstrip(), file=sys.stderr)
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            try:
                envelope = json.loads(done.stdout)
            except json.JSONDecodeError:
                envelope = {"status": "error", "receipt": "-", "summary": [done.stderr.strip()[-300:]]}
            for line in envelope.get("summary") or []:
                print(f"    {line}", file=sys.stderr)
            rows.append((capability, envelope["status"], done.returncode, envelope["receipt"]))
    finally:
        fake.stop()
        lab("stop", "--dir", lab_dir)
    print("\nsummary")
    width = max(len(r[0]) for r in rows)
    for capability, status, code, receipt in rows:
        # The demo's only stand-in: Stalwart's management API is the fake from the tests.
        stand_in = (
            "  (stand-in: the fake Stalwart API, tests/stalwart_fake.py)" if capability.startswith("stalwart.") else ""
        )
        print(f"  {capability:{width}}  {status:7}  exit={code}  {receipt}{stand_in}")
    failed = [r for r in rows if r[2] != 0]
    print(f"{len(rows) - len(failed)} of {len(rows)} capabilities passed; lab stopped, its files kept at {lab_dir}")
    print("real servers: Postfix+OpenDKIM+OpenDMARC, Dovecot, Knot, Radicale, Xandikos; stand-in: Stalwart's API")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
