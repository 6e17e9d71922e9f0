"""Shared by the JetStream lab tests: a stream of its own per test on the lab's three-node cluster,
the inbox contract pointing at it, and the stream read back (every message, by Message-ID)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from spine_comms.contracts.jetstream import JetStream
from spine_comms.mailroom.jetstream import Connection, JetStreamUnavailable
from tests.integration.inbox_lab import make_root
from tests.tcp_relay import Relay

MESSAGE_ID_LINE = re.compile(r"^- Message-ID: (.+)$", re.M)


def settings(lab: dict, **overrides) -> JetStream:
    """A stream, subjects and dedup bucket no other test uses; R3 on the lab cluster."""
    tag = uuid.uuid4().hex[:10]
    fields = {
        "servers": lab["nats"]["servers"],
        "stream": f"T{tag}",
        "subject_prefix": f"t{tag}.mailroom",
        "dedup_bucket": f"d{tag}",
        "replicas": 3,
        "user": lab["nats"]["user"],
        "password_ref": lab["nats"]["password_ref"],
        "ca_file": lab["tls"]["ca_cert"],
        "ack_wait_seconds": 1,
        "timeout_seconds": 10,  # the lab shares two CPUs with other test runs
    }
    return JetStream(**(fields | overrides))


def password(lab: dict) -> str:
    return Path(lab["nats"]["password_ref"].removeprefix("file:")).read_text()


def connect(lab: dict, js: JetStream) -> Connection:
    """A connection once the cluster's JetStream answers (a fresh cluster elects its leader first)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = Connection(js, password=password(lab))
            connection.ensure()
            return connection
        except JetStreamUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def jetstream_yaml(js: JetStream) -> str:
    body = {k: v for k, v in js.model_dump().items() if v is not None}
    return "mailroom:\n  via: jetstream\n  jetstream: " + json.dumps(body) + "\n"


def make_js_root(tmp: Path, lab: dict, lab_root: Path, js: JetStream, **kwargs) -> Path:
    """make_root's root, its mailroom the test's stream instead of the filesystem."""
    root = make_root(tmp, lab, lab_root, **kwargs)
    contract = root / "bindings" / "communications.inbox.contract.yaml"
    text = contract.read_text()
    assert "mailroom: {via: filesystem}\n" in text
    contract.write_text(text.replace("mailroom: {via: filesystem}\n", jetstream_yaml(js)))
    return root


def host_roots(tmp: Path, lab: dict, lab_root: Path, js: JetStream, hosts, **kwargs) -> dict[str, Path]:
    """A root per host, each with its own state directory and poller_id: nothing shared but the cluster."""
    return {
        host: make_js_root(tmp / host, lab, lab_root, js.model_copy(update={"poller_id": host}), **kwargs)
        for host in hosts
    }


def make_buckets(connection: Connection, js: JetStream, mailbox: str = "sink") -> None:
    """The mailbox's checkpoint and lease buckets, made once as a first deployment would."""
    from spine_comms.inbox.jetstream_checkpoints import KvCheckpointStore, MailboxLease

    KvCheckpointStore(connection, js.checkpoint_bucket, mailbox)
    MailboxLease(connection, js.lease_bucket, mailbox, js.lease_seconds)


def stream_message_ids(connection: Connection) -> list[str]:
    """The Message-ID line of every message in the stream, one entry per message. Read again while
    the stream elects a new leader (a node was just killed): requests time out for a few seconds."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return _message_ids(connection)
        except JetStreamUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _message_ids(connection: Connection) -> list[str]:
    status = connection.status_now()
    found = []
    if not status["messages"]:
        return []
    for seq in range(max(status["first_seq"], 1), status["last_seq"] + 1):
        data = connection.message_data(seq)
        if data is None:
            continue
        match = MESSAGE_ID_LINE.search(data.decode())
        assert match, f"stream message {seq} has no Message-ID line"
        found.append(match.group(1).strip())
    return found


class SlowLink(Relay):
    """A relay to one cluster node that holds every chunk from the client for `delay` seconds before
    passing it on, as a slow or distant link would: each round trip to the cluster costs at least
    `delay`. Its URL goes into the contract's `servers` in place of the node's."""

    def __init__(self, url: str, delay: float) -> None:
        host, port = url.removeprefix("tls://").rsplit(":", 1)
        self.delay = delay
        super().__init__((host, int(port)))
        self.url = f"tls://127.0.0.1:{self.port}"

    def forward(self, data: bytes, *, to_server: bool, so_far: int) -> tuple[bytes, bool]:
        if to_server:
            time.sleep(self.delay)
        return data, True
