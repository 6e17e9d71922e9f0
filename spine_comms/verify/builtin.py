"""The builtin gates: checks of the root itself, with no capability to run.

contracts_valid: every YAML file in the root's bindings parses (the spine's own files as its tools
read them: a duplicate key is a warning, the last wins), and each contract spine-comms knows loads
into its model with the loader the capabilities use (unknown keys refused, named files present).
receipts_valid: the newest receipt.json of every capability matches the JSON Schema the toolkit
ships for receipts (receipts the spine's runner wrote without a receipt.json are counted apart).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from spine_comms.contracts.verify import Gate
from spine_comms.core.contracts import Contracts
from spine_comms.core.errors import SpineCommsError
from spine_comms.core.root import Root
from spine_comms.core.yamlfile import load_yaml
from spine_comms.verify.gates import FAIL, PASS, SKIP, GateResult, verdict


def contracts_valid(gate: Gate, root: Root) -> GateResult:
    bindings = root.bindings_dir
    if not bindings.is_dir():
        return verdict(gate, SKIP, f"no bindings directory at {bindings}")
    files = sorted(p for p in bindings.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    from spine_comms.contracts.catalog import contract_models

    models = contract_models()
    contracts = Contracts(root)
    problems: list[str] = []
    warnings: list[str] = []
    typed = 0
    for path in files:
        try:
            if path.name in models:
                # The loader the capabilities use: unknown keys, named files, cross-contract rules.
                contracts.load(path.name, models[path.name])
                typed += 1
            else:
                # Not a contract spine-comms reads: the spine's own file, read as its tools (yq) read it.
                warnings += [str(w) for w in load_yaml(path, spine_owned=True).warnings]
        except SpineCommsError as exc:
            problems += [str(p) for p in exc.problems] or [f"{path}: {exc.message}"]
    warnings = list(dict.fromkeys([*contracts.warnings, *warnings]))
    evidence = {"files": [p.name for p in files], "problems": problems, "warnings": warnings}
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return verdict(gate, FAIL, f"{len(problems)} problem(s) in {bindings}: " + "; ".join(problems[:3]) + more,
                       evidence=evidence)  # fmt: skip
    noted = f"; {len(warnings)} warning(s) in the spine's files (read as its tools read them)" if warnings else ""
    return verdict(gate, PASS, f"{len(files)} file(s) in {bindings} parse; {typed} validate against their model"
                   + noted, evidence=evidence)  # fmt: skip


@cache
def _receipt_validator():
    import jsonschema

    schema = json.loads(resources.files("spine_comms").joinpath("schemas/receipt.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def receipts_valid(gate: Gate, root: Root) -> GateResult:
    try:
        validator = _receipt_validator()
    except ImportError:
        return verdict(gate, SKIP, "the jsonschema package is not installed: receipts cannot be validated")
    newest = _newest_per_capability(root.receipts_dir)
    if not newest:
        return verdict(gate, SKIP, f"no receipts under {root.receipts_dir} yet")
    problems, checked, spine_only = [], 0, 0
    for capability, directory in sorted(newest.items()):
        document = directory / "receipt.json"
        if not document.is_file():
            spine_only += 1  # the spine's runner wrote receipt.md alone
            continue
        checked += 1
        try:
            errors = list(validator.iter_errors(json.loads(document.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            problems.append(f"{capability}: {document} unreadable: {exc}")
            continue
        if errors:
            first = min(errors, key=lambda e: list(map(str, e.path)))
            where = "/".join(map(str, first.path)) or "(top)"
            problems.append(f"{capability}: {directory.name}: {where}: {first.message}")
    detail = f"{checked} newest receipt.json file(s) checked" + (f", {spine_only} without one" if spine_only else "")
    if problems:
        return verdict(gate, FAIL, f"{len(problems)} of {detail} do not match the receipt schema: "
                                   + "; ".join(problems[:3]), evidence={"problems": problems})  # fmt: skip
    return verdict(gate, PASS, f"{detail}: all match the receipt schema")


def _newest_per_capability(receipts_dir: Path) -> dict[str, Path]:
    """capability -> its newest receipt directory, from the names alone (no file is read)."""
    newest: dict[str, tuple[str, Path]] = {}
    if not receipts_dir.is_dir():
        return {}
    for entry in receipts_dir.iterdir():
        parts = entry.name.split("__")
        if not entry.name.startswith("R") or len(parts) != 3 or not entry.is_dir():
            continue
        stamp, capability = parts[0], parts[1]
        if capability not in newest or stamp > newest[capability][0]:
            newest[capability] = (stamp, entry)
    return {cap: path for cap, (_, path) in newest.items()}


BUILTINS = {"contracts_valid": contracts_valid, "receipts_valid": receipts_valid}
