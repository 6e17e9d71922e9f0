"""The MTA-STS policy file (RFC 8461 3.2) and its `mx` patterns (RFC 8461 4.1).

The file is `key: value` lines ended by LF or CRLF. `version: STSv1`, `mode` and `max_age` are
required once each, `mx` once or more (except under `mode: none`); unknown keys are ignored.
Values are case-sensitive (%s in the ABNF). A repeated key other than mx: senders use the first,
so a repeat with another value is an error (the file says two things) and an identical one a warning.
Parsing never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MODES = ("enforce", "testing", "none")
MAX_AGE_LIMIT = 31557600  # one year of 365.25 days (RFC 8461 3.2)
SHORT_MAX_AGE = 86400  # RFC 8461 3.2 expects "weeks or greater"; under a day warns
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}\Z")
# RFC 5321 Domain: sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]; A-labels only.
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
MX_PATTERN = re.compile(rf"(\*\.)?{LABEL}(\.{LABEL})*\Z")


@dataclass
class Policy:
    version: str | None = None
    mode: str | None = None
    max_age: int | None = None
    mx: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def _lines(body: bytes, policy: Policy) -> list[str] | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        policy.problems.append(f"not UTF-8 text (byte {exc.start})")
        return None
    if re.search(r"\r(?!\n)", text):
        policy.problems.append("a bare CR: lines end with LF or CRLF (RFC 8461 3.2)")
        return None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the last line's terminator is optional
    return lines


def parse_policy(body: bytes) -> Policy:
    policy = Policy()
    lines = _lines(body, policy)
    if lines is None:
        return policy
    first_line: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(lines, start=1):
        if line.strip(" \t") == "":
            policy.warnings.append(f"line {number} is blank; RFC 8461 3.2's grammar has no blank lines")
            continue
        key, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not KEY.match(key):
            policy.problems.append(f"line {number}: {line[:80]!r} is not 'key: value'")
            continue
        if re.search(r"[\x00-\x1f\x7f]", value):
            policy.problems.append(f"line {number}: control characters in the value of {key}")
            continue
        if key == "mx":
            policy.mx.append(value)
            continue
        if key in first_line:
            seen, earlier = first_line[key]
            if earlier == value:
                policy.warnings.append(f"line {number}: {key} repeats line {seen}; senders use the first")
            else:
                policy.problems.append(
                    f"line {number}: {key}: {value} contradicts line {seen} ({key}: {earlier}); senders use the first"
                )
            continue
        first_line[key] = (number, value)
        _field(policy, key, value, number)
    _required(policy, first_line)
    return policy


def _field(policy: Policy, key: str, value: str, number: int) -> None:
    if key == "version":
        policy.version = value
        if value != "STSv1":
            policy.problems.append(f"line {number}: version: {value}; the only version is STSv1 (case matters)")
    elif key == "mode":
        policy.mode = value
        if value not in MODES:
            policy.problems.append(f"line {number}: mode: {value}; the mode is enforce, testing or none (lower case)")
    elif key == "max_age":
        if re.fullmatch(r"[0-9]{1,10}", value) and int(value) <= MAX_AGE_LIMIT:
            policy.max_age = int(value)
        else:
            policy.problems.append(f"line {number}: max_age: {value}; a number of seconds from 0 to {MAX_AGE_LIMIT}")
    else:
        policy.warnings.append(f"line {number}: the unknown key {key} is ignored")


def _required(policy: Policy, first_line: dict) -> None:
    for key in ("version", "mode", "max_age"):
        if key not in first_line:
            policy.problems.append(f"no {key}: line; RFC 8461 3.2 requires one")
    for pattern in policy.mx:
        if not MX_PATTERN.match(pattern):
            why = "use the A-label (xn--...)" if not pattern.isascii() else "a host name, or *. and a name"
            policy.problems.append(f"mx: {pattern!r} is not an MX pattern ({why}; RFC 8461 3.2)")
    if not policy.mx and policy.mode in ("enforce", "testing"):
        policy.problems.append(f"mode {policy.mode} without any mx: line; RFC 8461 3.2 requires at least one")
    if policy.mode == "testing":
        policy.warnings.append("mode testing: failures are only reported, mail is delivered without verified TLS")
    elif policy.mode == "none":
        policy.warnings.append("mode none: the policy is withdrawn, senders apply no MTA-STS")
    if policy.max_age is not None and policy.max_age < SHORT_MAX_AGE and policy.mode != "none":
        policy.warnings.append(
            f"max_age {policy.max_age} is under a day; RFC 8461 3.2 expects weeks, to cover attacks at refresh time"
        )


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: an exact name, or `*.` standing for exactly one leftmost label; no case."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        suffix = "." + pattern[2:]
        label = host[: -len(suffix)] if host.endswith(suffix) else ""
        return bool(label) and "." not in label
    return host == pattern
