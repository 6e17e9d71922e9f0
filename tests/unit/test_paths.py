"""Roots and mailroom paths, resolved as the spine resolves them."""

from __future__ import annotations

import pytest

from spine_comms.core.errors import ContractError, UsageError
from spine_comms.core.root import find_root, mailroom_paths


def test_layouts(tmp_path):
    assert find_root(tmp_path, {}).layout == "project"
    (tmp_path / "ops/bindings").mkdir(parents=True)
    spine = find_root(tmp_path, {})
    assert spine.layout == "spine" and spine.bindings_dir == tmp_path / "ops/bindings"
    assert spine.registry_file == tmp_path / "ops/capabilities.yaml"
    assert find_root(None, {"SPINE_ROOT": str(tmp_path)}).path == tmp_path.resolve()
    with pytest.raises(UsageError, match="does not exist"):
        find_root(tmp_path / "nope", {})


def test_mailroom_precedence(tmp_path):
    root = find_root(tmp_path, {})
    default = mailroom_paths(root, {})
    assert default.inbox == tmp_path / "mailroom/inbox" and default.source == "root"
    (tmp_path / "bindings").mkdir()
    contract = tmp_path / "bindings/mailroom.runtime.contract.yaml"
    contract.write_text(f"---\nruntime_root: {tmp_path}/rt\nactive: false\n")
    assert mailroom_paths(root, {}).state == tmp_path / "mailroom/state"  # inactive: ignored
    contract.write_text(f"---\nruntime_root: {tmp_path}/rt\nactive: true\n")
    active = mailroom_paths(root, {})
    assert active.ledger == tmp_path / "rt/state/ledger.csv" and active.source == "runtime-contract"
    mixed = mailroom_paths(root, {"SPINE_OUTBOX": "/srv/out"})
    assert str(mixed.outbox) == "/srv/out" and mixed.inbox == tmp_path / "rt/inbox"  # one by one
    contract.write_text("runtime_root: [unclosed\n")
    with pytest.raises(ContractError):
        mailroom_paths(root, {})
