"""Write the JSON Schemas of the contracts spine-comms introduces, generated from their models.

    .venv/bin/python scripts/contract_schemas.py          # rewrite spine_comms/schemas/*.contract.schema.json
    .venv/bin/python scripts/contract_schemas.py --check  # exit 1 when a shipped schema is stale

Editors and other tools validate a contract with these; tests/unit/test_contract_schemas.py
keeps them equal to the models, so the schema can never say something the code does not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from spine_comms.contracts.catalog import introduced_models

SCHEMAS = Path(__file__).resolve().parents[1] / "spine_comms" / "schemas"
MODELS = introduced_models()


def schema_path(contract: str) -> Path:
    # communications.inbox.contract.yaml -> communications.inbox.contract.schema.json; verify.gates.yaml ->
    # verify.gates.contract.schema.json (a contract whose file name does not say so).
    return SCHEMAS / (contract.removesuffix(".yaml").removesuffix(".contract") + ".contract.schema.json")


def render(contract: str) -> str:
    schema = MODELS[contract].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = contract
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    stale = [c for c in MODELS if not schema_path(c).exists() or schema_path(c).read_text() != render(c)]
    if "--check" in sys.argv:
        for contract in stale:
            print(f"stale: {schema_path(contract)} (run scripts/contract_schemas.py)", file=sys.stderr)
        return 1 if stale else 0
    for contract in stale:
        schema_path(contract).write_text(render(contract))
        print(f"wrote {schema_path(contract)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
