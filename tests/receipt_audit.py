"""Audit what runs wrote: receipt.json against the shipped JSON Schema and its seal, ledger rows whole."""

from __future__ import annotations

import csv
import json
from functools import cache
from importlib import resources
from pathlib import Path

from spine_comms.core.receipt_seal import ReceiptVerifier
from spine_comms.core.receipts import LEDGER_HEADER


@cache
def _validator():
    import jsonschema

    schema = json.loads(resources.files("spine_comms").joinpath("schemas/receipt.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_receipt(path: Path) -> None:
    """The receipt matches the schema, and is the one its run wrote: sealed, chained, its files unchanged."""
    errors = sorted(_validator().iter_errors(json.loads(path.read_text())), key=lambda e: list(e.path))
    if errors:
        lines = [f"{path}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10]]
        raise AssertionError("receipt.json does not match the schema:\n" + "\n".join(lines))
    # No signing key here: tests that sign check the signature themselves.
    problems = ReceiptVerifier(path.parent.parent, {}).problems(path.parent)
    if problems:
        raise AssertionError(f"{path.parent}: not the receipt its run wrote: " + "; ".join(problems))


def validate_receipts_under(base: Path) -> int:
    count = 0
    for path in base.rglob("receipt.json"):
        validate_receipt(path)
        count += 1
    return count


def ledger_rows(ledger: Path) -> list[list[str]]:
    """Every row of a ledger.csv, each checked to have the spine's 9 columns (a torn or glued row fails)."""
    with ledger.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows and rows[0] == LEDGER_HEADER, f"{ledger}: no 9-column header"
    for number, row in enumerate(rows, start=1):
        assert len(row) == len(LEDGER_HEADER), f"{ledger}:{number}: {len(row)} columns: {row}"
    return rows[1:]
