"""Unreachable is `error`, exit 3, in every capability that talks to a server (issue 15).

Every server of the root below (IMAP, SMTP submission, ManageSieve, HTTPS, the DAV account, the
Stalwart API, the DNS server) is a closed port on 127.0.0.1. Each capability of the registry is
either run against it here, or listed in NO_SERVER with why it needs none (or, for the verify packs,
with the exit code its own table gives). A test fails when a capability is added to the registry
and to neither list.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from spine_comms.core.registry import load_registry
from tests.silent_server import closed_port

DOMAIN = "spine.test"
LAB_CALENDAR = Path(__file__).resolve().parents[2] / "lab" / "data" / "calendar.global.yaml"

# capability -> the arguments that make it reach for its server
TALKS_TO_A_SERVER: dict[str, list[str]] = {
    "calendar.caldav.ensure": [],
    "calendar.caldav.status": [],
    "calendar.event.create": ["--summary", "x", "--start", "2031-03-01T09:00Z"],
    "calendar.event.delete": ["--uid", "x"],
    "calendar.event.get": ["--uid", "x"],
    "calendar.event.list": [],
    "calendar.event.update": ["--uid", "x", "--summary", "y"],
    "calendar.sync.execute": ["--execute", "--yes"],
    "calendar.sync.plan": [],
    "communications.inbox.health": [],
    "communications.inbox.poll": [],
    "communications.inbox.watch": ["--execute", "--max-runtime", "3"],
    "communications.mail.search": [],
    "communications.mail.draft": ["--to", "sink@spine.test", "--subject", "x", "--body", "x", "--execute"],
    "communications.thread.show": ["--message-id", "<x@spine.test>"],
    "communications.stack.status": [],
    "contacts.card.create": ["--name", "Ada"],
    "contacts.card.delete": ["--uid", "x"],
    "contacts.card.get": ["--uid", "x"],
    "contacts.card.list": [],
    "contacts.card.update": ["--uid", "x", "--name", "Ada"],
    "contacts.carddav.ensure": [],
    "contacts.carddav.status": [],
    "dkim.check": [],
    "dmarc.check": [],
    "dns.mail.status": [],
    "mail.auth.probe": ["--execute"],  # a dry run (the default) connects to nothing
    "sieve.apply": [],
    "sieve.status": [],
    "stalwart.dkim.ensure": [],
    "stalwart.dkim.status": [],
    "stalwart.dns.expected": [],
    "stalwart.status": [],
}

# capability -> why it is not run against a server here
NO_SERVER: dict[str, str] = {
    "capabilities.verify": "reads the registry files and the code",
    "contracts.check": "validates the root's contract files",
    "communications.inbox.senders": "reads the inbox contract's sender lists",
    "receipts.prune": "removes old receipt directories",
    # Its endpoint findings are errors among the others (units, receipts): tests/integration/test_doctor_lab.py
    "communications.doctor": "a report of the whole setup, an unreachable endpoint one finding of many",
    "contract.endpoints.sync": "reads receipts and edits the stack contract",
    "dkim.keygen": "makes a key pair on disk",
    "gaps.close": "edits the gaps file",
    "gaps.file": "edits the gaps file",
    "gaps.list": "reads the gaps file",
    "loop.evidence": "reads receipts",
    # --via bridge against an unreachable bridge: exit 3 in tests/integration/test_mailroom_caps.py
    "mailroom.enqueue": "writes to the filesystem mailroom by default",
    "mailroom.status": "reads the filesystem mailroom",
    # Needs a JetStream section in the inbox contract; an unreachable cluster is exit 3 for the poll,
    # mailroom.drain --execute and mailroom.status in tests/integration/test_mailroom_jetstream_lab.py
    "mailroom.drain": "a dry run by default, and this root's inbox contract names no JetStream",
    "communications.outbox.status": "reads the outbox's files",
    "communications.outbox.flush": "connects only for a due send; an empty outbox has none",
    # --execute queues first, then submits: an unreachable server is a transient outcome to retry (the
    # outbox's rules, docs/outbox.md), not "could not evaluate"; a refused login is exit 3 (test_outbox_lab.py)
    "communications.mail.send": "a dry run by default: shows the message, connects to nothing",
    "spine.install": "edits a spine checkout",
    # Reads its draft record first: an unknown id is exit 2 before any connection (test_mail_draft_lab.py)
    "communications.draft.send": "needs a draft record, which this root does not have",
    # A pack judges its gates: an unreachable server FAILs them, so the run is `fail`, exit 1
    # (tests/unit/test_verify_verdicts.py); it is not a capability that could not evaluate.
    "verify.core.run": "a verify pack: exit 1 when a gate's server is unreachable",
    "verify.pack.run": "a verify pack: exit 1 when a gate's server is unreachable",
}


def test_every_registered_capability_is_listed_once():
    registered = set(load_registry().capabilities)
    assert not set(TALKS_TO_A_SERVER) & set(NO_SERVER)
    assert registered == set(TALKS_TO_A_SERVER) | set(NO_SERVER)


def write_root(root: Path, port, dns_port: int, timeout: float) -> Path:
    """A root whose every server is at port() on 127.0.0.1, and its DNS server at dns_port."""
    bindings = root / "bindings"
    bindings.mkdir(parents=True)
    secret = root / "password"
    secret.write_text("not-the-password")
    ref = f"file:{secret}"
    ports = [{"host": port(), "protocol": p} for p in ("SMTP", "SMTPS", "IMAPS", "ManageSieve", "HTTPS")]
    contracts = {
        "communications.stack.contract.yaml": {
            "version": 1,
            "pilot": {"ports": ports, "mailboxes": [{"id": "ops", "address": f"ops@{DOMAIN}", "password_ref": ref}],
                      "send_test": {"allowed_recipient_domains": [DOMAIN]}},
            "endpoints": {"host": "127.0.0.1", "server_name": f"mail.{DOMAIN}", "timeout_seconds": timeout,
                          "dns": {"server": "127.0.0.1", "port": dns_port, "timeout_seconds": 1}},
        },
        "communications.mailauth.contract.yaml": {
            "version": 1,
            "domains": [{"domain": DOMAIN, "mail_host": f"mx.{DOMAIN}", "dkim_selectors": ["s1"]}],
            "dkim_keys": {"directory": str(root / "dkim")},
            "stalwart": {"url": f"http://127.0.0.1:{port()}/", "username": "admin", "secret_ref": ref},
            "probe": {"sender": "ops", "target": {"mailbox": "ops"}, "timeout_seconds": 5},
        },
        "communications.dav.contract.yaml": {
            "version": 1,
            "accounts": [{"id": "home", "base_url": f"https://127.0.0.1:{port()}/", "login": "ops",
                          "password_ref": ref}],
            "calendars": [{"id": "ops"}],
            "addressbooks": [{"id": "contacts"}],
            "sync": {"source": "calendar.global.yaml", "target_calendar": "ops"},
        },
        "communications.inbox.contract.yaml": {"version": 1, "mailboxes": [{"id": "ops"}]},
        "communications.sieve.contract.yaml": {"version": 1, "mailboxes": [{"id": "ops", "rules": [
            {"name": "r", "anyof": [{"header": "Subject", "contains": "x"}], "actions": [{"keep": True}]}]}]},
    }  # fmt: skip
    for name, document in contracts.items():
        (bindings / name).write_text(yaml.safe_dump(document, sort_keys=False))
    shutil.copyfile(LAB_CALENDAR, bindings / "calendar.global.yaml")
    return root


@pytest.fixture(scope="module")
def unreachable_root(tmp_path_factory) -> Path:
    """Every server a closed port on 127.0.0.1 (each its own): connections are refused."""
    return write_root(tmp_path_factory.mktemp("unreachable") / "root", closed_port, closed_port(), timeout=2)


@pytest.mark.parametrize("capability", sorted(TALKS_TO_A_SERVER))
def test_an_unreachable_server_is_error_exit_3(cli, unreachable_root, capability):
    result = cli(capability, "--root", str(unreachable_root), "--json", *TALKS_TO_A_SERVER[capability])
    envelope = result.json()
    kinds = {(envelope.get("error") or {}).get("kind")}
    kinds |= {(c.get("evidence") or {}).get("kind") for c in envelope["checks"] if c["status"] == "error"
              and isinstance(c.get("evidence"), dict)}  # fmt: skip
    assert (result.exit_code, envelope["status"]) == (3, "error"), (envelope.get("error"), envelope["checks"][:4])
    # The kind travels in the envelope: verify and scripts read it, never the message.
    assert kinds & {"unreachable", "timeout"}, (envelope.get("error"), envelope["checks"][:4])
    assert "not-the-password" not in result.stdout + result.stderr


# One capability per protocol: what a hung server (connections accepted, never answered) costs each.
HUNG = ["communications.inbox.health", "mail.auth.probe", "sieve.status", "calendar.caldav.status",
        "contacts.carddav.status", "stalwart.status", "dns.mail.status"]  # fmt: skip


@pytest.mark.parametrize("capability", HUNG)
def test_a_hung_server_is_error_exit_3_within_the_stack_contracts_timeout(cli, tmp_path, capability):
    import time
    from contextlib import ExitStack

    from tests.silent_server import silent_listener, silent_udp

    with ExitStack() as listeners:
        dns = listeners.enter_context(silent_udp())
        root = write_root(tmp_path / "root", lambda: listeners.enter_context(silent_listener()), dns, timeout=1)
        started = time.monotonic()
        result = cli(capability, "--root", str(root), "--json", *TALKS_TO_A_SERVER[capability])
        took = time.monotonic() - started
    envelope = result.json()
    kinds = {(envelope.get("error") or {}).get("kind")}
    kinds |= {(c.get("evidence") or {}).get("kind") for c in envelope["checks"] if c["status"] == "error"
              and isinstance(c.get("evidence"), dict)}  # fmt: skip
    assert (result.exit_code, envelope["status"]) == (3, "error"), (envelope.get("error"), envelope["checks"][:4])
    assert "timeout" in kinds, (envelope.get("error"), envelope["checks"][:4])
    # The stack contract's 1 s per answer (the probe waits at least 10 s for a whole SMTP transaction).
    assert took < (15 if capability == "mail.auth.probe" else 6), took
