"""Contracts: YAML files under the root's bindings, validated into typed models.

Unknown keys are kept (models allow extras), so the spine's own files load as they
are. Every problem becomes `file:line: field: message`. Each contract read is
recorded with its sha256 for the receipt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from spine_comms.core.errors import ContractError, Problem
from spine_comms.core.root import Root
from spine_comms.core.yamlfile import YamlDocument, load_yaml


class ContractModel(BaseModel):
    """Base for every contract model: unknown keys kept, values validated."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


def _field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(doc: YamlDocument, model: type[M]) -> M:
    shown = str(doc.path)
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        raise ContractError(
            f"{shown}: expected a mapping at the top",
            problems=[Problem(shown, 1, "", f"expected a mapping of keys at the top, found {kind}")],
        )
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _real_loc(doc.data, err["loc"])
            # Our own validators raise ValueError; pydantic prefixes their text with "Value error, ".
            message = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(shown, doc.line_of(loc), _field(loc), message))
        raise ContractError(f"{shown}: invalid contract", problems=problems) from None


def _real_loc(data, loc) -> tuple:
    """Pydantic's loc, less the parts it adds itself (union member and validator names)."""
    out: list = []
    node = data
    for i, part in enumerate(loc):
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if (isinstance(node, dict) and part in node) or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and i == len(loc) - 1:
            out.append(part)  # a missing key: name it, its parent's line locates it
    return tuple(out)


class Contracts:
    """Loads contracts for one run and remembers what was read."""

    def __init__(self, root: Root):
        self.root = root
        self.read: dict[str, str] = {}

    def path(self, name: str) -> Path:
        candidate = Path(name)
        return candidate if candidate.is_absolute() else self.root.bindings_dir / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str, model: type[M]) -> M:
        path = self.path(name)
        if not path.exists():
            raise ContractError(
                f"contract {path} not found",
                problems=[Problem(str(path), None, "", "contract not found")],
                hint=f"create it, or point --root at a root whose {self.root.bindings_dir.name}/ has it",
            )
        doc = load_yaml(path)
        self.read[str(path)] = doc.sha256
        return validate(doc, model)
