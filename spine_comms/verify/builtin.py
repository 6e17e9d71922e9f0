"""The builtin gates: checks of the root itself, with no capability to run.

contracts_valid: every YAML file in the root's bindings parses (the spine's own files as its tools
read them: a duplicate key is a warning, the last wins), and each contract spine-comms knows loads
into its model with the loader the capabilities use (unknown keys refused, named files present).
receipts_valid: the newest receipt of every spine-comms capability is one a run wrote (its seal,
its place in the receipt chain, its signature when a key is configured) and matches the JSON Schema
the toolkit ships; receipts of the spine's own capabilities are not spine-comms' to judge.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path

from spine_comms.contracts.verify import Gate
from spine_comms.core.contracts import Contracts
from spine_comms.core.errors import SpineCommsError
from spine_comms.core.receipt_seal import ReceiptVerifier
from spine_comms.core.registry import load_registry
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
        return verdict(gate, FAIL, "the jsonschema package is not installed: receipts cannot be validated")
    ours = set(load_registry().capabilities)
    everything = _newest_per_capability(root.receipts_dir)
    newest = {cap: path for cap, path in everything.items() if cap in ours}
    others = len(everything) - len(newest)
    if not newest:
        return verdict(gate, SKIP, f"no receipts of spine-comms capabilities under {root.receipts_dir} yet")
    reader = ReceiptVerifier(root.receipts_dir, dict(os.environ), root.path)
    problems = [f"receipt chain: {b}" for b in reader.chain.breaks]
    for capability, directory in sorted(newest.items()):
        found = reader.problems(directory)
        if not found:
            found = _schema_problems(validator, directory / "receipt.json")
        problems += [f"{capability}: {directory.name}: {p}" for p in found]
    detail = f"the newest receipt of {len(newest)} spine-comms capabilit{'y' if len(newest) == 1 else 'ies'}"
    if others:
        detail += f" ({others} other capabilit{'y' if others == 1 else 'ies'}' receipts not judged)"
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return verdict(gate, FAIL, f"{len(problems)} problem(s) in {detail}: " + "; ".join(problems[:3]) + more,
                       evidence={"problems": problems})  # fmt: skip
    signed = " and signed" if reader.verify_key.key is not None else ""
    return verdict(gate, PASS, f"{detail}: each sealed{signed}, in the receipt chain, and matching the schema")


def _schema_problems(validator, document: Path) -> list[str]:
    try:
        errors = list(validator.iter_errors(json.loads(document.read_text(encoding="utf-8"))))
    except (OSError, ValueError) as exc:
        return [f"unreadable: {exc.__class__.__name__}"]
    if not errors:
        return []
    first = min(errors, key=lambda e: list(map(str, e.path)))
    return [f"{'/'.join(map(str, first.path)) or '(top)'}: {first.message} (receipt schema)"]


def _newest_per_capability(receipts_dir: Path) -> dict[str, Path]:
    """capability -> its newest receipt directory: by the time in the run key, then (runs within the
    same second) by the directory's mtime, as the other receipt readers order them."""
    newest: dict[str, tuple[str, float, Path]] = {}
    if not receipts_dir.is_dir():
        return {}
    for entry in receipts_dir.iterdir():
        parts = entry.name.split("__")
        if not entry.name.startswith("R") or len(parts) != 3 or not entry.is_dir():
            continue
        stamp, capability = parts[0], parts[1]
        rank = (stamp, entry.stat().st_mtime, entry)
        if capability not in newest or rank[:2] > newest[capability][:2]:
            newest[capability] = rank
    return {cap: path for cap, (_, _, path) in newest.items()}


BUILTINS = {"contracts_valid": contracts_valid, "receipts_valid": receipts_valid}
