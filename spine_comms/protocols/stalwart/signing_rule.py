"""Which DKIM signature ids Stalwart 0.10-0.15 signs with: its `auth.dkim.sign` rule, read and evaluated.

On 0.15 a signature only signs when the `auth.dkim.sign` rule names its id. The rule is an if/then/else
block of Stalwart expressions; when the operator never set it, the built-in default applies
(crates/common/src/config/smtp/auth.rs 108-115):

    if is_local_domain('*', sender_domain) then ['rsa-' + sender_domain, 'ed25519-' + sender_domain]
    else false

A signature under any other id (hand-named ids, installs upgraded from 0.9) is never used: the mail
leaves unsigned and the server logs "signer not found" (crates/common/src/core.rs 138-148).

This evaluates the forms operators write: string literals, `'prefix' + sender_domain`, lists of those,
`false`; conditions `true`, `is_local_domain(..., sender_domain)` and `sender_domain == 'x'`. Anything
else is reported as undetermined rather than guessed: a wrong "it signs" is the worst answer here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEY = "auth.dkim.sign"
DEFAULT_SETTINGS = {
    f"{KEY}.0000.if": "is_local_domain('*', sender_domain)",
    f"{KEY}.0000.then": "['rsa-' + sender_domain, 'ed25519-' + sender_domain]",
    f"{KEY}.0001.else": "false",
}
_STRING = r"""(?:'[^']*'|"[^"]*")"""
_TERM = re.compile(rf"^\s*(?:{_STRING}|sender_domain)(?:\s*\+\s*(?:{_STRING}|sender_domain))*\s*$")
_PIECE = re.compile(rf"{_STRING}|sender_domain")
_LOCAL = re.compile(r"^\s*is_local_domain\(\s*" + _STRING + r"\s*,\s*sender_domain\s*\)\s*$")
_EQUALS = re.compile(r"^\s*sender_domain\s*==\s*(" + _STRING + r")\s*$")


@dataclass(frozen=True)
class SignatureIds:
    """What the rule gives for one sender domain.

    `certain`: every branch up to the one taken could be evaluated, so `ids` is exactly what signs.
    Otherwise `ids` holds every id some branch might give, and none of them can be promised."""

    ids: frozenset[str]
    certain: bool
    why: str = ""


@dataclass
class SigningRule:
    """`auth.dkim.sign` as stored (`settings` empty: the built-in default)."""

    settings: dict[str, str] = field(default_factory=dict)

    @property
    def is_default(self) -> bool:
        return not self.settings

    def text(self) -> str:
        """The rule as one readable line, for evidence."""
        branches, default = self._branches()
        parts = [f"if {cond} then {then}" for cond, then in branches]
        parts.append(f"else {default}" if branches else default)
        return "; ".join(parts) + (" (built-in default)" if self.is_default else "")

    def signature_ids(self, domain: str) -> SignatureIds:
        domain = domain.rstrip(".").lower()
        branches, default = self._branches()
        possible: set[str] = set()
        unsure = ""
        for cond, then in branches:
            taken = _condition(cond, domain)
            if taken is False:
                continue
            ids = _ids(then, domain)
            if taken is None or ids is None:
                unsure = unsure or f"cannot evaluate `{cond if taken is None else then}`"
                possible |= ids or set()
                if ids is None:
                    return SignatureIds(frozenset(possible), False, unsure)
                continue
            if not unsure:
                return SignatureIds(frozenset(ids), True)
            return SignatureIds(frozenset(possible | ids), False, unsure)
        ids = _ids(default, domain)
        if ids is None:
            return SignatureIds(frozenset(possible), False, unsure or f"cannot evaluate `{default}`")
        if unsure:
            return SignatureIds(frozenset(possible | ids), False, unsure)
        return SignatureIds(frozenset(ids), True)

    def _branches(self) -> tuple[list[tuple[str, str]], str]:
        settings = self.settings or DEFAULT_SETTINGS
        if KEY in settings:  # a single expression, no if/then
            return [], settings[KEY]
        rows: dict[str, dict[str, str]] = {}
        for key, value in settings.items():
            rest = key.removeprefix(KEY + ".")
            position, _, part = rest.partition(".")
            rows.setdefault(position, {})[part.split(".")[0]] = value
        branches, default = [], "false"
        for position in sorted(rows):
            row = rows[position]
            if "if" in row:
                branches.append((row["if"], row.get("then", "false")))
            elif "else" in row:
                default = row["else"]
        return branches, default


def _condition(expression: str, domain: str) -> bool | None:
    """True, False, or None when the condition is not one this can evaluate."""
    text = expression.strip()
    if text == "true":
        return True
    if text == "false":
        return False
    if _LOCAL.match(text):
        return True  # the rule is only ever asked about the server's own domains
    equals = _EQUALS.match(text)
    if equals:
        return equals.group(1)[1:-1].rstrip(".").lower() == domain
    return None


def _ids(expression: str, domain: str) -> set[str] | None:
    """The signature ids an expression gives, or None when it is not a form this can evaluate."""
    text = expression.strip()
    if text == "false":
        return set()
    items = _split_list(text[1:-1]) if text.startswith("[") and text.endswith("]") else [text]
    out = set()
    for item in items:
        if not _TERM.match(item):
            return None
        pieces = _PIECE.findall(item)
        out.add("".join(domain if p == "sender_domain" else p[1:-1] for p in pieces))
    return out


def _split_list(body: str) -> list[str]:
    """Split a list's items on top-level commas (commas inside quotes belong to the string)."""
    items, current, quote = [], "", ""
    for char in body:
        if quote:
            current += char
            quote = "" if char == quote else quote
        elif char in "'\"":
            current += char
            quote = char
        elif char == ",":
            items.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current)
    return [i for i in items if i.strip()]
