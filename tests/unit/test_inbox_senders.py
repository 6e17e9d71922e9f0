"""communications.inbox.senders: the policy's sender lists and the pipeline's own verdict for an address."""

from __future__ import annotations

import json


def write_policy(root, allow: list[str], deny: list[str]) -> None:
    (root / "bindings/communications.inbox.contract.yaml").write_text(
        "version: 1\nmailboxes:\n  - id: ops\npolicy:\n"
        f"  senders: {{allow: {json.dumps(allow)}, deny: {json.dumps(deny)}}}\n"
    )


def test_lists_and_verdicts_follow_the_pipelines_rule(cli, root):
    write_policy(root, ["@example.org", "bob@example.net"], ["mallory@example.org", "@spam.example"])
    done = cli("communications.inbox.senders", "--root", str(root), "--json", "--check", "alice@example.org",
               "--check", "Mallory@Example.org", "--check", "bob@example.net", "--check", "eve@example.net",
               "--check", "x@spam.example")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    data = done.json()["data"]
    assert data["allow"] == ["@example.org", "bob@example.net"] and data["deny"][0] == "mallory@example.org"
    assert {v["address"]: v["lane"] for v in data["checks"]} == {
        "alice@example.org": "admitted",
        "Mallory@Example.org": "dropped",  # deny wins over the allowed domain, whatever the case
        "bob@example.net": "admitted",
        "eve@example.net": "parked",  # not on a non-empty allow list
        "x@spam.example": "dropped",
    }


def test_without_an_inbox_contract_nothing_is_filtered(cli, root):
    done = cli("communications.inbox.senders", "--root", str(root), "--json", "--check", "anyone@example.com")
    assert done.exit_code == 0
    data = done.json()["data"]
    assert data["contract"] is None and data["allow"] == data["deny"] == []
    assert data["checks"][0]["lane"] == "admitted"


def test_a_check_that_is_not_an_address_is_a_usage_error(cli, root):
    write_policy(root, [], [])
    for bad in ("not-an-address", "a@b, c@d", "@example.org"):
        done = cli("communications.inbox.senders", "--root", str(root), "--json", "--check", bad)
        assert done.exit_code == 2 and "not an e-mail address" in done.stderr, (bad, done.stderr)
