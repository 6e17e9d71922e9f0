"""Validate receipt.json files against the JSON Schema the package ships."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path


@cache
def _validator():
    import jsonschema

    schema = json.loads(resources.files("spine_comms").joinpath("schemas/receipt.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_receipt(path: Path) -> None:
    errors = sorted(_validator().iter_errors(json.loads(path.read_text())), key=lambda e: list(e.path))
    if errors:
        lines = [f"{path}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10]]
        raise AssertionError("receipt.json does not match the schema:\n" + "\n".join(lines))


def validate_receipts_under(base: Path) -> int:
    count = 0
    for path in base.rglob("receipt.json"):
        validate_receipt(path)
        count += 1
    return count
