"""Authentication-Results (RFC 8601): who vouches (authserv-id) and what each method found.

Parses what OpenDKIM/OpenDMARC write (one method per header, comments holding
`;`), what Stalwart writes (every method in one header, `;`-separated and folded,
quoted `header.i`), and anything else a header may hold: a header is text from
the outside, so the parser never raises. What it cannot make sense of goes into
`problems` and parsing resumes at the next `;`.

Whether to believe a header is not decided here: only the receiver's own
authserv-id may be trusted (see mail.authentication).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NAME = re.compile(r"^\s*authentication-results\s*:", re.IGNORECASE)
_STOP = ' \t\r\n;()"'
MAX_COMMENT_DEPTH = 32


@dataclass
class MethodResult:
    method: str  # lower case: dkim, spf, dmarc, arc, iprev, auth ...
    result: str  # lower case: pass, fail, none, neutral, temperror, permerror, policy ...
    version: str | None = None  # the method version (`dkim/1=pass`), rarely written
    reason: str | None = None  # reason="..."
    comment: str | None = None  # the first comment after the result: "(2048-bit key; unprotected)"
    properties: dict[str, str] = field(default_factory=dict)  # "header.d" -> "spine.test"

    def prop(self, name: str) -> str | None:
        return self.properties.get(name.lower())

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "result": self.result,
            "version": self.version,
            "reason": self.reason,
            "comment": self.comment,
            "properties": dict(self.properties),
        }


@dataclass
class AuthResults:
    authserv_id: str
    version: str | None
    results: list[MethodResult]
    raw: str
    problems: list[str] = field(default_factory=list)

    def of(self, method: str) -> list[MethodResult]:
        return [r for r in self.results if r.method == method.lower()]

    def to_dict(self) -> dict:
        return {
            "authserv_id": self.authserv_id,
            "version": self.version,
            "results": [r.to_dict() for r in self.results],
            "raw": self.raw,
            "problems": list(self.problems),
        }


class _Cursor:
    """A position in the header text with the RFC 5322 lexical pieces this grammar needs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.problems: list[str] = []

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_cfws(self) -> list[str]:
        """Skip white space and comments; returns the comments' text."""
        comments = []
        while not self.at_end():
            char = self.peek()
            if char in " \t\r\n":
                self.pos += 1
            elif char == "(":
                comments.append(self._comment())
            else:
                break
        return comments

    def _comment(self) -> str:
        depth, start, out = 0, self.pos, []
        while not self.at_end():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and not self.at_end():
                out.append(self.text[self.pos])
                self.pos += 1
                continue
            if char == "(":
                depth += 1
                if depth == 1:
                    continue
                if depth > MAX_COMMENT_DEPTH:
                    self.problems.append("comment nested too deep")
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return " ".join("".join(out).split())
            out.append(char)
        self.problems.append(f"unclosed comment at {start}")
        return " ".join("".join(out).split())

    def token(self, stop: str = _STOP) -> str:
        start = self.pos
        while not self.at_end() and self.text[self.pos] not in stop:
            self.pos += 1
        return self.text[start : self.pos]

    def value(self, stop: str = _STOP) -> str:
        """A token or a quoted-string (unquoted)."""
        if self.peek() != '"':
            return self.token(stop)
        self.pos += 1
        out = []
        while not self.at_end():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and not self.at_end():
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        self.problems.append("unclosed quoted string")
        return "".join(out)

    def skip_to_semicolon(self) -> None:
        """Recovery: move to the next `;` outside comments and quotes."""
        while not self.at_end():
            char = self.peek()
            if char == ";":
                return
            if char == "(":
                self._comment()
            elif char == '"':
                self.value()
            else:
                self.pos += 1


def parse_authentication_results(text: str) -> AuthResults:
    """One header's value (the `Authentication-Results:` name may be included). Never raises."""
    raw = str(text)
    unfolded = _FOLD.sub("", raw)
    unfolded = _NAME.sub("", unfolded, count=1)
    cur = _Cursor(unfolded)
    cur.skip_cfws()
    authserv_id = cur.value().strip()
    if not authserv_id:
        cur.problems.append("no authserv-id")
    cur.skip_cfws()
    version = None
    if cur.peek().isdigit():
        mark = cur.pos
        digits = cur.token()
        if digits.isdigit():
            version = digits
        else:  # not a version after all; let the result parser complain about it
            cur.pos = mark
    results: list[MethodResult] = []
    while True:
        cur.skip_cfws()
        if cur.at_end():
            break
        if cur.peek() != ";":
            cur.problems.append(f"expected ';' at {cur.pos}: {cur.text[cur.pos : cur.pos + 30]!r}")
            cur.skip_to_semicolon()
            continue
        cur.pos += 1
        result = _resinfo(cur)
        if result is not None:
            results.append(result)
    if len(results) == 1 and results[0].method == "none" and not results[0].result:
        results = []  # `authserv-id; none`: the receiver evaluated nothing
    return AuthResults(authserv_id, version, results, raw, cur.problems)


def _resinfo(cur: _Cursor) -> MethodResult | None:
    cur.skip_cfws()
    method = cur.token(_STOP + "=/").lower()
    if not method:
        if not cur.at_end() and cur.peek() != ";":
            cur.problems.append(f"no method at {cur.pos}")
            cur.skip_to_semicolon()
        return None
    cur.skip_cfws()
    version = None
    if cur.peek() == "/":
        cur.pos += 1
        cur.skip_cfws()
        version = cur.token(_STOP + "=") or None
        cur.skip_cfws()
    if cur.peek() != "=":
        if method == "none":
            return MethodResult("none", "")
        cur.problems.append(f"{method}: no '=' and result")
        cur.skip_to_semicolon()
        return None
    cur.pos += 1
    cur.skip_cfws()
    outcome = cur.token().lower()
    if not outcome:
        cur.problems.append(f"{method}: empty result")
    found = MethodResult(method, outcome, version)
    while True:
        comments = cur.skip_cfws()
        if comments and found.comment is None:
            found.comment = comments[0]
        if cur.at_end() or cur.peek() == ";":
            return found
        name = cur.token(_STOP + "=").lower()
        cur.skip_cfws()
        if not name or cur.peek() != "=":
            cur.problems.append(f"{method}: cannot read {name or cur.text[cur.pos : cur.pos + 20]!r}")
            cur.skip_to_semicolon()
            return found
        cur.pos += 1
        cur.skip_cfws()
        value = cur.value()
        if name == "reason":
            found.reason = value
        elif "." in name:
            ptype, _, prop = name.partition(".")
            found.properties[f"{ptype.strip()}.{prop.strip()}"] = value
        else:
            cur.problems.append(f"{method}: unknown item {name}={value}")


def from_headers(values: list[str]) -> list[AuthResults]:
    """Every Authentication-Results header of a message, top (newest) first, as the message lists them."""
    return [parse_authentication_results(v) for v in values]
