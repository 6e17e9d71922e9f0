"""The loop evidence contract: `loop.evidence.contract.yaml`, which receipts prove which part of a loop scope.

Keyed by loop id. Each step (by its id in the scope's table), each phase's
Definition of Done (by phase number) and each success criterion (by its number)
maps to one proof or a list of proofs, all of which must hold:

    version: 1
    loops:
      LOOP-COMMS-AGENTIC-LAYER-20260223:
        max_age_hours: 168            # default freshness for this loop's proofs
        steps:
          "1.4": {capability: mail.auth.probe, max_age_hours: 24}
        dod:
          "2": [{capability: calendar.caldav.status}, {capability: calendar.event.create}]
        criteria:
          "5": {capability: verify.pack.run, args: [communications]}

A proof names the capability (or a list: a receipt of any of them counts),
the receipt statuses that pass (default ok), its freshness, the arguments of
exactly the run that counts, and for verify receipts a gate id that must be
PASS in that receipt. A run with any other argument that could narrow it
(`--gate`, `--rollback`, `--mailbox` ...) does not count (governance/
run_arguments.py); `allow` lists options that may take any value (a run's
content, such as an event's --summary). A bare capability id is a proof with
the defaults: a run with no arguments but the shared ones. The latest matching receipt decides: a
newer failure disproves an older success. Quote step ids ("1.10"): unquoted,
YAML reads 1.10 as 1.1.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from spine_comms.core.contracts import ContractModel

LOOP_EVIDENCE_CONTRACT = "loop.evidence.contract.yaml"
RECEIPT_STATUSES = ("ok", "warn", "fail", "partial", "error")
DEFAULT_MAX_AGE_HOURS = 168.0


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


def _one_or_list(schema: dict) -> None:
    """The JSON Schema of a list field that also takes one item alone (as `_one_or_many` reads it)."""
    array = {k: v for k, v in schema.items() if k not in ("description", "title", "default")}
    kept = {k: v for k, v in schema.items() if k in ("description", "title", "default")}
    schema.clear()
    schema.update(kept, anyOf=[array["items"], array])


def _proofs_by_key(schema: dict) -> None:
    """steps/dod/criteria: each value is a capability id, a proof, or a list of either."""
    one = {"anyOf": [{"type": "string"}, schema["additionalProperties"]["items"]]}
    schema["additionalProperties"] = {"anyOf": [*one["anyOf"], {"type": "array", "items": one, "minItems": 1}]}


class Proof(ContractModel):
    capability: list[str] = Field(
        min_length=1, description="Capability id, or a list: a receipt of any of them", json_schema_extra=_one_or_list
    )
    status: list[Literal["ok", "warn", "fail", "partial", "error"]] = Field(
        default_factory=lambda: ["ok"],
        min_length=1,
        description="Receipt statuses that count as passing",
        json_schema_extra=_one_or_list,
    )
    max_age_hours: float | None = Field(default=None, gt=0, description="Freshness; default: the loop's")
    args: list[str] = Field(
        default_factory=list,
        description="The run's arguments, exactly: parsed by the capability's options, every other argument must be "
        "at its default (only --root, --json, --strict, --debug, --no-color, --yes, --junit, --prom, --jobs and "
        "--timeout may differ; --execute and --dry-run compare as the mode they decide)",
        json_schema_extra=_one_or_list,
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Options of the capability that may take any value in the run (its content, such as an "
        "event's --summary, not its scope); every other option must be as `args` says or at its default",
        json_schema_extra=_one_or_list,
    )
    gate: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$", description="Gate id that must be PASS")
    note: str = Field(default="", description="Why this proof counts, for the reader")

    _listed = field_validator("capability", "status", "args", "allow", mode="before")(
        classmethod(lambda cls, v: _one_or_many(v))
    )


Proofs = list[Proof]


class LoopMapping(ContractModel):
    scope: str | None = Field(default=None, description="The scope file (relative to the root); default: the mailroom")
    max_age_hours: float = Field(default=DEFAULT_MAX_AGE_HOURS, gt=0, description="Freshness of every proof")
    steps: dict[str, Proofs] = Field(
        default_factory=dict, description="Step id (3.4) -> the proofs it needs", json_schema_extra=_proofs_by_key
    )
    dod: dict[str, Proofs] = Field(
        default_factory=dict, description="Definition-of-Done item -> its proofs", json_schema_extra=_proofs_by_key
    )
    criteria: dict[str, Proofs] = Field(default_factory=dict, description="Acceptance criterion -> its proofs",
                                        json_schema_extra=_proofs_by_key)  # fmt: skip

    @field_validator("steps", "dod", "criteria", mode="before")
    @classmethod
    def _keys_and_lists(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {_key(k): [_proof(p) for p in _one_or_many(v)] if v is not None else v for k, v in value.items()}


def _proof(value: Any) -> Any:
    """`"1.1": mail.auth.probe` is short for `"1.1": {capability: mail.auth.probe}`."""
    return {"capability": value} if isinstance(value, str) else value


def _key(key: Any) -> str:
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise ValueError(f"key {key!r} is not a step id, phase or criterion number")
    return str(key)


class LoopEvidenceContract(ContractModel):
    version: int = Field(default=1, description="The contract's version")
    loops: dict[str, LoopMapping] = Field(min_length=1, description="Loop id (LOOP-...) -> what proves it")

    @field_validator("loops")
    @classmethod
    def _loop_ids(cls, value: dict[str, LoopMapping]) -> dict[str, LoopMapping]:
        for loop_id in value:
            if not loop_id.startswith("LOOP-"):
                raise ValueError(f"{loop_id!r} is not a loop id (LOOP-...)")
        return value
