"""What to say about a key a contract model does not declare: the closest key it meant, found by
walking the model along pydantic's error location (models, optionals, unions, lists, mappings)."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel


def unknown_key_message(key: str, known: list[str]) -> str:
    """`unknown key 'dmarc_fial' (did you mean 'dmarc_fail'?)`, or the keys allowed when none is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    if known:
        return f"unknown key {key!r} (known here: {', '.join(sorted(known))})"
    return f"unknown key {key!r}"


def known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model accepts at `loc` (pydantic's loc, union member names included)."""
    annotation: Any = model
    parts = list(loc)
    while True:
        annotation = _unwrap(annotation, parts)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not parts:
                return _model_keys(annotation)
            field = _model_field(annotation, parts.pop(0))
            if field is None:
                return []
            annotation = field.annotation
            continue
        origin = typing.get_origin(annotation)
        if origin in (list, tuple, set, frozenset) and parts:
            parts.pop(0)
            annotation = typing.get_args(annotation)[0] if typing.get_args(annotation) else Any
            continue
        if origin is dict and parts:
            parts.pop(0)
            args = typing.get_args(annotation)
            annotation = args[1] if len(args) == 2 else Any
            continue
        return []


def _unwrap(annotation: Any, parts: list) -> Any:
    """Through Optional and unions: the member pydantic named in the loc, else the first model among them."""
    while typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = args[0]
            continue
        named = [a for a in args if parts and getattr(a, "__name__", None) == parts[0]]
        if named:
            parts.pop(0)
            annotation = named[0]
            continue
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        containers = [a for a in args if typing.get_origin(a) in (list, dict)]
        annotation = (models or containers or args or [Any])[0]
    return annotation


def _model_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_field(model: type[BaseModel], part: Any):
    for name, field in model.model_fields.items():
        if part in (name, field.alias):
            return field
    return None
