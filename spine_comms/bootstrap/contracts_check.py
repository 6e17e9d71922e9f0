"""`contracts.check`: every contract of a root against its model, each problem as `file:line`, and the
capabilities each contract feeds, so an operator knows what a broken file stops before running it."""

from __future__ import annotations

from spine_comms.contracts.catalog import DEFAULTED, READERS, SPINE_OWNED, contract_models
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.contracts import validate
from spine_comms.core.errors import SpineCommsError, UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.yamlfile import load_yaml

# Without these nothing in phase 1 to 3 can run; the rest are needed only by the capabilities they feed.
CORE = ("communications.stack.contract.yaml",)


@capability("contracts.check", safety="read-only", approval="auto")
def contracts_check(ctx: RunContext) -> Result:
    """Validate every contract in the root's bindings against its schema: each problem as `file:line:
    field: message`, and for each contract the capabilities it feeds. A file that does not validate
    fails (exit 1); a missing stack contract fails; other missing contracts are listed with the
    capabilities that cannot run without them."""
    bindings = ctx.root.bindings_dir
    if not bindings.is_dir():
        raise UsageError(f"{bindings} does not exist", hint="`spine-comms init DIR` writes a root to start from")
    models = contract_models()
    result = Result()
    files: dict[str, dict] = {}
    for name, model in models.items():
        path = bindings / name
        readers = list(READERS.get(name, ()))
        entry = {"file": str(path), "present": path.is_file(), "valid": None, "problems": [], "feeds": readers,
                 "owner": "spine" if name in SPINE_OWNED else "spine-comms"}  # fmt: skip
        files[name] = entry
        if not path.is_file() and name in DEFAULTED:
            result.add(
                Check(
                    id="contracts.present",
                    status=Status.OK,
                    detail=f"absent: {DEFAULTED[name]} apply",
                    subject=name,
                    expected="present or defaulted",
                    actual="default",
                    evidence={"feeds": readers},
                )
            )
            continue
        if not path.is_file():
            status = Status.FAIL if name in CORE else Status.SKIP
            detail = f"absent: {', '.join(readers) or 'nothing'} cannot run" if readers else "absent"
            result.add(
                Check(
                    id="contracts.present",
                    status=status,
                    detail=detail,
                    subject=name,
                    expected="present",
                    actual="absent",
                    evidence={"feeds": readers},
                )
            )
            continue
        try:
            validate(load_yaml(path), model)
        except SpineCommsError as exc:
            entry["valid"] = False
            entry["problems"] = [str(p) for p in exc.problems] or [f"{path}: {exc.message}"]
            result.add(
                Check(
                    id="contracts.valid",
                    status=Status.FAIL,
                    detail=f"{len(entry['problems'])} problem(s); stops {', '.join(readers) or 'nothing'}",
                    subject=name,
                    expected="valid",
                    actual="invalid",
                    evidence={"problems": entry["problems"], "feeds": readers},
                )
            )
            continue
        entry["valid"] = True
        result.add(
            Check(
                id="contracts.valid",
                status=Status.OK,
                detail=f"valid; feeds {len(readers)} capability(ies)",
                subject=name,
                expected="valid",
                actual="valid",
                evidence={"feeds": readers},
            )
        )
    unknown = sorted(p.name for p in bindings.iterdir() if p.suffix in (".yaml", ".yml") and p.name not in models)
    result.data = {"bindings": str(bindings), "contracts": files, "other_files": unknown}
    for name, entry in files.items():
        state = "valid" if entry["valid"] else "INVALID" if entry["valid"] is False else "absent"
        state = "default" if state == "absent" and name in DEFAULTED else state
        result.summary.append(f"{state:8} {name}")
        result.summary.extend(f"         {problem}" for problem in entry["problems"])
    if unknown:
        result.summary.append(f"not read by spine-comms: {', '.join(unknown)}")
    return result
