"""One bridge client for every reader: the token from the bridge's own variables, then the contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine_comms.contracts.inbox import Bridge
from spine_comms.core.context import RunContext
from spine_comms.core.errors import SecretError
from spine_comms.core.options import GlobalOptions
from spine_comms.core.root import Root
from spine_comms.mailroom.bridge import bridge_client


def context(tmp_path: Path, env: dict[str, str]) -> RunContext:
    return RunContext("mailroom.enqueue", Root(tmp_path, "project"), GlobalOptions(), env=env)


def test_the_token_comes_from_the_bridges_variables_then_the_contract(tmp_path):
    token_file = tmp_path / "bridge.token"
    token_file.write_text("from-the-file-8f2a\n")
    settings = Bridge(url="http://127.0.0.1:8799", token_ref="env:CONTRACT_TOKEN")
    cases = [
        ({"CONTRACT_TOKEN": "from-the-contract-1c9d"}, "from-the-contract-1c9d"),
        ({"CONTRACT_TOKEN": "x-contract", "MAILROOM_BRIDGE_TOKEN_FILE": str(token_file)}, "from-the-file-8f2a"),
        ({"MAILROOM_BRIDGE_TOKEN": "from-the-env-77aa", "MAILROOM_BRIDGE_TOKEN_FILE": str(token_file)},
         "from-the-env-77aa"),
    ]  # fmt: skip
    for env, expected in cases:
        ctx = context(tmp_path, env)
        _client, token = bridge_client(ctx, settings)
        assert token.value == expected, env
        assert expected not in ctx.redactor(f"token {expected}")  # registered for redaction


def test_no_url_and_no_token_are_usage_errors(tmp_path):
    from spine_comms.core.errors import UsageError

    with pytest.raises(UsageError):
        bridge_client(context(tmp_path, {}), None)
    with pytest.raises((SecretError, UsageError)):
        bridge_client(context(tmp_path, {}), None, url="http://127.0.0.1:8799")
