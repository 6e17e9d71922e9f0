"""How values are written into block-style YAML, for core.yaml_roundtrip's edits.

Values come out the way a person writes them: mappings and sequences in block
style at the file's own indentation, multi-line strings as `|` blocks, other
strings plain. A string is written plain (or as a literal block) only when both
PyYAML loaders, libyaml's and the pure-Python one, read it back as the same
value; otherwise it is double-quoted, which always does. The editor parses every
edit again after splicing it in, so a surprise here is refused, never written.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml

# The loader the editor composes with: libyaml's when PyYAML was built with it.
COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What PyYAML's reader refuses, plus the characters YAML treats as line breaks.
_UNSAFE_IN_BLOCK = re.compile("[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x85": "\\N", "\u2028": "\\L",
            "\u2029": "\\P", "\x00": "\\0"}  # fmt: skip
_PRINTABLE = re.compile("[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types (True is not 1) and the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


def file_layout(root: yaml.Node | None) -> tuple[int, int]:
    """(indent step, offset of a block sequence under its key) as the file itself uses them."""
    step, seq = None, None
    stack = [root] if root is not None else []
    while stack and (step is None or seq is None):
        node = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        if not isinstance(node, yaml.MappingNode) or node.flow_style:
            continue
        for key, value in node.value:
            stack.append(value)
            if value.start_mark.line <= key.start_mark.line or getattr(value, "flow_style", True) or not value.value:
                continue
            offset = value.start_mark.column - key.start_mark.column
            if isinstance(value, yaml.MappingNode) and step is None and offset > 0:
                step = offset
            elif isinstance(value, yaml.SequenceNode) and seq is None and offset >= 0:
                seq = offset
    return step or 2, 2 if seq is None else seq


def emit_entry(key: Any, value: Any, col: int, step: int, seq: int) -> str:
    """`key: value` at column `col`, as complete lines without the final newline."""
    head = " " * col + _key(key) + ":"
    if isinstance(value, dict) and value:
        return head + "\n" + _mapping(value, col + step, step, seq)
    if isinstance(value, list) and value:
        return head + "\n" + _sequence(value, col + seq, step, seq)
    return head + " " + emit_scalar(value, col + step, allow_block=True)


def _mapping(value: dict, col: int, step: int, seq: int) -> str:
    return "\n".join(emit_entry(k, v, col, step, seq) for k, v in value.items())


def _sequence(value: list, dash: int, step: int, seq: int) -> str:
    return "\n".join(emit_item(v, dash, 2, step, seq) for v in value)


def emit_item(value: Any, dash: int, offset: int, step: int, seq: int) -> str:
    """One `- item` with its dash at `dash` and its content at `dash + offset`."""
    col = dash + offset
    if isinstance(value, dict) and value:
        body = _mapping(value, col, step, seq)
    elif isinstance(value, list) and value:
        body = _sequence(value, col, step, seq)
    else:
        return " " * dash + "-" + " " * (offset - 1) + emit_scalar(value, col, allow_block=True)
    return " " * dash + "-" + " " * (offset - 1) + body[col:]


def _key(key: Any) -> str:
    if isinstance(key, str) and key and _plain_ok(key, as_key=True):
        return key
    if isinstance(key, str):
        return _double(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"cannot write a key of type {type(key).__name__}")


def emit_scalar(
    value: Any, content_col: int, *, allow_block: bool, style: str | None = None, flow: bool = False
) -> str:
    """A scalar's text. Multi-line strings become `|` blocks (content at content_col) where that
    reads back the same; other strings are plain when that reads back the same, else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)  # Python writes 1e-05; YAML 1.1 reads that as a string, 1.0e-05 as a float
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()  # plain, so it reads back as a date
    if isinstance(value, dict | list) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    if not isinstance(value, str):
        raise TypeError(f"cannot write a value of type {type(value).__name__}")
    if "\n" in value:
        if allow_block:
            block = _literal(value, content_col)
            if block is not None:
                return block
        return _double(value)
    if style == "'" and all(_PRINTABLE.match(c) for c in value):
        return "'" + value.replace("'", "''") + "'"
    if style in (None, "") and not flow and value and _plain_ok(value):
        return value
    return _double(value)


def _plain_ok(value: str, *, as_key: bool = False) -> bool:
    if value != value.strip() or not all(_PRINTABLE.match(c) for c in value) or value[0] in "-?:,[]{}#&*!|>'\"%@`":
        return False
    if ": " in value or " #" in value or value.endswith(":") or "\t" in value:
        return False
    if as_key:
        return _reads_back(f"{value}: 1", {value: 1})
    return _reads_back(f"k: {value}", {"k": value}) and _reads_back(f"- {value}", [value])


def _reads_back(text: str, expected: Any) -> bool:
    """Both PyYAML loaders (libyaml and pure Python; they differ at the edges) read `expected`."""
    loaders = {yaml.SafeLoader, COMPOSER}
    try:
        return all(same(yaml.load(text, Loader=loader), expected) for loader in loaders)
    except yaml.YAMLError:
        return False


def _literal(value: str, col: int) -> str | None:
    """`|` or `|-` with the lines at column `col`; None when a literal block cannot hold the text
    (then it is double-quoted). `|+` is never written: kept trailing blank lines would swallow the
    blank lines that follow in the file."""
    if _UNSAFE_IN_BLOCK.search(value):
        return None
    body = value.rstrip("\n")
    trailing = len(value) - len(body)
    first = next((line for line in body.split("\n") if line.strip()), "")
    if trailing > 1 or not first or first[0] in " \t":
        return None

    def block(at: int) -> str:
        return ("|" if trailing else "|-") + "".join(
            "\n" + (" " * at + line if line else "") for line in body.split("\n")
        )

    return block(col) if _reads_back("k: " + block(2) + "\n", {"k": value}) else None


def _double(value: str) -> str:
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _PRINTABLE.match(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'
