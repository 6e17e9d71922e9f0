"""The shipped contract schemas are the models' own, and the lab's contracts satisfy them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import contract_schemas  # noqa: E402


@pytest.mark.parametrize("contract", sorted(contract_schemas.MODELS))
def test_the_shipped_schema_is_generated_from_the_model(contract):
    shipped = contract_schemas.schema_path(contract)
    assert shipped.read_text() == contract_schemas.render(contract), "run scripts/contract_schemas.py"


def test_a_schema_rejects_what_the_model_rejects():
    schema = json.loads(contract_schemas.schema_path("communications.inbox.contract.yaml").read_text())
    good = {"version": 1, "mailboxes": [{"id": "ops", "after_enqueue": {"action": "move", "folder": "Done"}}]}
    jsonschema.validate(good, schema)
    bad = {"version": 1, "mailboxes": [{"id": "ops", "after_enqueue": {"action": "delete"}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load("version: 1\nmailboxes: []\n"), schema)
