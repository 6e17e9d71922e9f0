"""vCard content lines read leniently (RFC 6350 section 3.3): for cards a strict parser refuses.

Unfolding, splitting a line into name, parameters and value (quotes respected, groups such as
`item1.` dropped), and unescaping. No knowledge of which properties matter: vcard.py decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator


def content_lines(text: str) -> Iterator[tuple[str, dict[str, list[str]], str]]:
    """(name, params, raw value) of each line between BEGIN:VCARD and END:VCARD; other lines are skipped."""
    inside = False
    for line in unfold(text):
        parsed = split_line(line)
        if parsed is None:
            continue
        name, params, value = parsed
        if name == "begin":
            inside = inside or value.strip().upper() == "VCARD"
        elif name == "end" and value.strip().upper() == "VCARD":
            inside = False
        elif inside:
            yield name, params, value


def unfold(text: str) -> list[str]:
    return re.sub(r"\r?\n[ \t]", "", text.replace("\r\n", "\n")).split("\n")


def split_unescaped(value: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(unescape("".join(current)))
            current = []
        else:
            current.append(char)
    parts.append(unescape("".join(current)))
    return parts


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def split_line(line: str) -> tuple[str, dict[str, list[str]], str] | None:
    """'item1.EMAIL;TYPE="a,b";PREF=1:x' -> ('email', {'TYPE': ['a', 'b'], 'PREF': ['1']}, 'x')."""
    quoted, colon = False, -1
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            colon = index
            break
    if colon <= 0:
        return None
    head, value = line[:colon], line[colon + 1 :]
    pieces = head.split(";")
    name = pieces[0].rsplit(".", 1)[-1].strip().lower()
    params: dict[str, list[str]] = {}
    for piece in pieces[1:]:
        key, _, raw = piece.partition("=")
        values = params.setdefault(key.strip().upper(), [])
        values.extend(v.strip().strip('"') for v in raw.split(",") if v.strip())
    return name, params, value
