"""The inbox contract's mailroom.jetstream section and the names the JetStream mailroom derives:
refused where a wrong value would leak a password or break exactly-once, accepted otherwise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spine_comms.contracts.inbox import InboxContract
from spine_comms.contracts.jetstream import JetStream
from spine_comms.mailroom.jetstream import dedup_key, subject_for

GOOD = {"servers": ["tls://nats1.example.org:4222"], "user": "mailroom", "password_ref": "env:NATS_PW"}


def _contract(mailroom: dict) -> InboxContract:
    return InboxContract.model_validate({"version": 1, "mailboxes": [{"id": "ops"}], "mailroom": mailroom})


def test_via_jetstream_reads_its_section_with_defaults() -> None:
    contract = _contract({"via": "jetstream", "jetstream": GOOD})
    js = contract.mailroom.jetstream
    assert (js.stream, js.subject_prefix, js.replicas, js.dedup_bucket) == (
        "SPINE_MAILROOM", "spine.mailroom", 3, "spine_mailroom_dedup")  # fmt: skip
    assert js.duplicate_window_seconds >= 3600  # above an hourly poll timer


def test_via_jetstream_without_its_section_is_refused() -> None:
    with pytest.raises(ValidationError, match="via jetstream needs a jetstream section"):
        _contract({"via": "jetstream"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"servers": ["nats://nats1.example.org:4222"]}, "only on loopback"),  # a password in the clear
        ({"servers": ["tls://mailroom:pw@nats1.example.org:4222"]}, "no credentials in a URL"),
        ({"servers": ["http://nats1.example.org:4222"]}, "use tls://"),
        ({"servers": ["tls://nats1.example.org"]}, "use tls://"),  # no port
        ({"servers": []}, "at least 1"),
        ({"password_ref": None}, "go together"),
        ({"token_ref": "env:T"}, "not both"),
        ({"replicas": 0}, "greater than or equal to 1"),
        ({"replicas": 7}, "less than or equal to 5"),
        ({"duplicate_window_seconds": 10}, "greater than or equal to 60"),
        ({"stream": "a.b"}, "pattern"),  # a dot would make it a subject
        ({"subject_prefix": "spine.>"}, "pattern"),  # a wildcard would take other streams' subjects
        ({"dedup_bucket": "has space"}, "pattern"),
        ({"agent_groups": ["triage", "a.b"]}, "agent group 'a.b'"),  # a dot would break the consumer's name
        ({"agent_groups": ["triage", "*"]}, "agent group"),
        ({"agent_groups": ["triage", "ops", "triage"]}, "named twice: triage"),
        ({"agent_groups": ["spine-drain"]}, "drain consumer's name"),  # two readers on one consumer
    ],
)
def test_bad_values_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JetStream(**(GOOD | change))


@pytest.mark.parametrize("server", ["nats://127.0.0.1:4222", "nats://localhost:4222", "nats://[::1]:4222"])
def test_plain_nats_is_accepted_on_loopback(server: str) -> None:
    assert JetStream(**(GOOD | {"servers": [server]})).servers == [server]


def test_dedup_key_and_subject_are_the_run_id_when_it_fits_and_a_stable_hash_otherwise() -> None:
    assert dedup_key("R0123456789ab") == "R0123456789ab"
    assert subject_for("spine.mailroom", "ops", "R0123456789ab") == "spine.mailroom.ops.R0123456789ab"
    # A prompt's run id may hold ':' (not a KV key character) or '.' (a subject separator).
    for odd in ("R:1", "R.1", ".R1"):
        subject = subject_for("p", "prompt", odd)
        assert subject.count(".") == 2 and subject == subject_for("p", "prompt", odd)
    assert dedup_key("R.1") == "R.1"  # a dot is fine in a KV key
    for odd in ("R:1", ".R1"):
        assert dedup_key(odd).startswith("h-") and dedup_key(odd) == dedup_key(odd)
    assert dedup_key("R:1") != dedup_key("R:2")


def test_agent_groups_default_to_none_and_keep_their_order() -> None:
    assert JetStream(**GOOD).agent_groups == []
    assert JetStream(**(GOOD | {"agent_groups": ["triage", "archive"]})).agent_groups == ["triage", "archive"]
