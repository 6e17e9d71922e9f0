"""Files a contract names (a CA bundle ...): checked when the contract loads, not when a socket opens.

A field typed `CaFile` holds a path. When its contract loads, the path is made
absolute (a relative one is relative to the root, the same for every reader)
and must name a readable PEM file of certificates; otherwise the contract is
invalid: exit 2 with `file:line: field: message`, never an internal error from
deep inside the TLS code.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel


@dataclass(frozen=True)
class NamedFile:
    """Marks a contract field as a path to a file that must exist when the contract loads."""

    kind: str  # "ca": a PEM bundle of CA certificates


CaFile = Annotated[str, NamedFile("ca")]


def check_named_files(model: BaseModel, base: Path) -> list[tuple[tuple, str]]:
    """Resolve every NamedFile field of `model` (recursively) against `base`, in place; return the
    problems as (key path, message)."""
    problems: list[tuple[tuple, str]] = []
    _walk(model, (), base, problems)
    return problems


def _walk(value: Any, key: tuple, base: Path, problems: list) -> None:
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            child = getattr(value, name)
            here = (*key, field.alias or name)
            marker = next((m for m in field.metadata if isinstance(m, NamedFile)), None)
            if marker is None:
                marker = _marker_in(field.annotation)
            if marker is not None and isinstance(child, str):
                resolved, problem = _check(child, base, marker)
                if problem:
                    problems.append((here, problem))
                else:
                    setattr(value, name, resolved)
            else:
                _walk(child, here, base, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, (*key, index), base, problems)
    elif isinstance(value, dict):
        for name, item in value.items():
            _walk(item, (*key, name), base, problems)


def _marker_in(annotation: Any) -> NamedFile | None:
    """The marker inside `CaFile | None` (pydantic keeps Annotated metadata of union members there)."""
    for arg in getattr(annotation, "__args__", ()) or ():
        for meta in getattr(arg, "__metadata__", ()) or ():
            if isinstance(meta, NamedFile):
                return meta
    return None


def _check(raw: str, base: Path, marker: NamedFile) -> tuple[str, str | None]:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        return raw, f"{raw}: no such file" + (f" (looked at {path})" if str(path) != raw else "")
    if not path.is_file():
        return raw, f"{raw}: not a file"
    if marker.kind == "ca":
        try:
            ssl.create_default_context(cafile=str(path))
        except PermissionError:
            return raw, f"{raw}: cannot be read (permission denied)"
        except (ssl.SSLError, OSError, ValueError) as exc:
            return raw, f"{raw}: not a PEM file of CA certificates ({exc.__class__.__name__})"
    return str(path), None
