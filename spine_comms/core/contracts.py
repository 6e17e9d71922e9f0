"""Contracts: YAML files under the root's bindings, validated into typed models.

A typo is an error, not a silent default: every model refuses keys it does not
declare, and the problem names the closest known key (`unknown key 'dmarc_fial'
(did you mean 'dmarc_fail'?)`). Where a spine-owned file carries keys
spine-comms does not use, its model lists them explicitly (typed loosely, kept
as they are), so anything else is still refused. Every problem becomes
`file:line: field: message`. Each contract read is recorded with its sha256 for
the receipt.

Files the spine owns (a model with `spine_owned = True`) are read as the
spine's own tools read them (yq, PyYAML): a duplicate key is a warning naming
both lines, and the last one wins. Files this project owns stay strict.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from spine_comms.core.contract_files import check_named_files
from spine_comms.core.errors import ContractError, Problem
from spine_comms.core.root import Root
from spine_comms.core.unknown_keys import known_keys, unknown_key_message
from spine_comms.core.yamlfile import YamlDocument, load_yaml


class ContractModel(BaseModel):
    """Base for every contract model: unknown keys refused, values validated, each field described
    (its attribute docstring becomes the JSON Schema's description)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)
    # True for a file the spine owns: read with yq/PyYAML semantics (duplicate keys warn, the last wins).
    spine_owned: ClassVar[bool] = False


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
            if err["type"] == "extra_forbidden":
                message = unknown_key_message(str(err["loc"][-1]), known_keys(model, err["loc"][:-1]))
            else:
                # Our own validators raise ValueError; pydantic prefixes their text with "Value error, ".
                message = err["msg"].removeprefix("Value error, ")
                loc = _to_unknown_key(doc.data, loc, message)
            problems.append(Problem(shown, doc.line_of(loc), _field(loc), message))
        raise ContractError(f"{shown}: invalid contract", problems=_unique(problems)) from None


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _to_unknown_key(data, loc: tuple, message: str) -> tuple:
    """A shorthand's own validator (a Sieve action ...) refuses a key of the mapping it was given: point at
    that key's line, not the mapping's."""
    match = re.match(r"unknown key '([^']+)'", message)
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return loc
    if match and isinstance(node, dict) and match.group(1) in node:
        return (*loc, match.group(1))
    return loc


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


def _scalars(data: Any, key: tuple):
    if isinstance(data, dict):
        for name, value in data.items():
            yield from _scalars(value, (*key, name))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _scalars(value, (*key, index))
    else:
        yield key, data


class Contracts:
    """Loads contracts for one run and remembers what was read, and where each value was."""

    def __init__(self, root: Root, on_warning: Callable[[str], None] | None = None):
        self.root = root
        self.read: dict[str, str] = {}
        self.docs: dict[str, YamlDocument] = {}
        self.warnings: list[str] = []
        self._on_warning = on_warning
        # What this run validated already, by file and model: the stack contract is asked for by the inbox
        # contract's cross-check and by every endpoint builder (two to four parses in one poll). Keyed by
        # the file's identity too, so a contract the run rewrote (endpoints sync) is read again.
        self._loaded: dict[tuple[str, type], tuple[tuple[int, int, int], Any]] = {}

    def path(self, name: str) -> Path:
        candidate = Path(name)
        return candidate if candidate.is_absolute() else self.root.bindings_dir / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str, model: type[M]) -> M:
        path = self.path(name)
        try:
            found = path.stat()
        except OSError:
            found = None
        if found is None:
            raise ContractError(
                f"contract {path} not found",
                problems=[Problem(str(path), None, "", "contract not found")],
                hint=f"create it, or point --root at a root whose {self.root.bindings_dir.name}/ has it",
            )
        identity = (found.st_ino, found.st_size, found.st_mtime_ns)
        known = self._loaded.get((str(path), model))
        if known is not None and known[0] == identity:
            return known[1]
        contract = self._load(path, model)
        self._loaded[(str(path), model)] = (identity, contract)
        return contract

    def _load(self, path: Path, model: type[M]) -> M:
        doc = load_yaml(path, spine_owned=bool(getattr(model, "spine_owned", False)))
        self.read[str(path)] = doc.sha256
        self.docs[str(path)] = doc
        for warning in doc.warnings:
            self.warn(str(warning))
        contract = validate(doc, model)
        found = check_named_files(contract, self.root.path)
        # A model may check what needs another contract too (Sieve redirects against the allowed domains).
        cross_check = getattr(contract, "check_with", None)
        if callable(cross_check):
            found += cross_check(self)
        problems = [Problem(str(path), doc.line_of(key), _field(key), message) for key, message in found]
        if problems:
            raise ContractError(f"{path}: invalid contract", problems=problems)
        return contract

    def locate(self, value: str, *, key_suffix: str = "") -> Problem | None:
        """Where a loaded contract holds the scalar `value` (under a key ending in `key_suffix`): its first
        place, so a problem found later with that value (a secret reference ...) can name file and line."""
        for shown, doc in self.docs.items():
            for key, found in _scalars(doc.data, ()):
                if found == value and key and str(key[-1]).endswith(key_suffix):
                    return Problem(shown, doc.line_of(key), _field(key), "")
        return None

    def warn(self, message: str) -> None:
        if message in self.warnings:
            return
        self.warnings.append(message)
        if self._on_warning is not None:
            self._on_warning(message)

    def problem(self, name: str, key: tuple, message: str) -> Problem:
        """A problem at a value of a contract this run loaded: `file:line: field: message`."""
        path = self.path(name)
        doc = self.docs.get(str(path))
        return Problem(str(path), doc.line_of(key) if doc else None, _field(key), message)

    def error(self, name: str, key: tuple, message: str, *, hint: str | None = None) -> ContractError:
        """A ContractError (exit 2) at a value of a loaded contract, with its file and line."""
        problem = self.problem(name, key, message)
        return ContractError(str(problem), problems=[problem], hint=hint)
