"""The watcher's secret scan, reproduced so an item is judged before it is written.

The spine's hot-folder watcher parks any item in which `grep -iE` finds (spine-conventions §3.4)

    (api[_-]?key|secret|password|token|bearer|auth)[[:space:]]*[=:][[:space:]]*[^$]
    sk-[a-zA-Z0-9]{20,} | ghp_[a-zA-Z0-9]{36} | xoxb-...

grep matches line by line, so neither `[[:space:]]` nor `[^$]` crosses a newline here either.
Note what the first pattern really catches: `[[:space:]]*` may match nothing and let `[^$]`
take the space, so `password: $VAR` trips it too; only `password:$VAR` and a separator at the
end of a line do not. The Slack pattern is elided in the reference, so it is matched broadly
(`xoxb-` and any token characters): flagging more than the watcher costs a redaction,
flagging less costs a silently parked item.

A finding names the pattern and the line, never the matched text: findings go to receipts.
"""

from __future__ import annotations

import re

# grep's [[:space:]] on one line: everything but the newline that ends it.
_SPACE = r"[ \t\r\f\v]"
ASSIGNMENT = re.compile(rf"(api[_-]?key|secret|password|token|bearer|auth){_SPACE}*[=:]{_SPACE}*[^$\n]", re.I)
TOKENS = {
    "openai-style key (sk-...)": re.compile(r"sk-[a-zA-Z0-9]{20,}", re.I),
    "GitHub token (ghp_...)": re.compile(r"ghp_[a-zA-Z0-9]{36}", re.I),
    "Slack bot token (xoxb-...)": re.compile(r"xoxb-[a-zA-Z0-9-]+", re.I),
}
REDACTED = "[REDACTED]"
# The separator and the rest of the line: removing the separator is what makes the line pass, and
# a value may have spaces in it or look like another assignment (`password = auth: x`).
_ASSIGNED_REST = re.compile(rf"(api[_-]?key|secret|password|token|bearer|auth){_SPACE}*[=:].*", re.I)


# Every pattern in one alternation: one C-level scan of the whole text finds the lines worth a
# closer look (none match across a newline, so a match lies within one line). A clean 100 KB body
# costs one search instead of four per line.
ANY_FINDING = re.compile("|".join(f"(?:{p.pattern})" for p in (ASSIGNMENT, *TOKENS.values())), re.I)


# The same alternation without IGNORECASE, for ASCII text lower-cased first (same length, same
# offsets). Every match contains one of these words; a substring test is a memchr-speed scan,
# where the regex engine steps through a 100 KB text character by character (a millisecond).
_ANY_LOWER = re.compile(ANY_FINDING.pattern)
_WORDS = ("api", "secret", "password", "token", "bearer", "auth", "sk-", "ghp_", "xoxb-")


def _suspects(text: str):
    if not text.isascii():
        return ANY_FINDING.finditer(text)  # outside ASCII, case folding has surprises (the Kelvin sign matches k)
    lowered = text.lower()
    if not any(word in lowered for word in _WORDS):
        return iter(())
    return _ANY_LOWER.finditer(lowered)


def secret_findings(text: str) -> list[str]:
    """One line per finding: `line N: <what>`; the matched value is never included."""
    findings: list[str] = []
    matches = list(_suspects(text))
    if not matches:
        return findings
    # Line numbers and texts of the matching lines only, by C-level counts: a Python loop over
    # every line of a long body cost more than all the scanning.
    first_match_on_line: dict[int, int] = {}
    for match in matches:
        first_match_on_line.setdefault(text.count("\n", 0, match.start()) + 1, match.start())
    for number, at in sorted(first_match_on_line.items()):
        end = text.find("\n", at)
        line = text[text.rfind("\n", 0, at) + 1 : end if end >= 0 else len(text)]
        for match in ASSIGNMENT.finditer(line):
            findings.append(f"line {number}: a value assigned to {match.group(1).lower()!r} (= or :)")
        for name, pattern in TOKENS.items():
            if pattern.search(line):
                findings.append(f"line {number}: {name}")
    return findings


def redact_secrets(text: str) -> str:
    """Text the watcher will not park: every assigned value and token replaced by [REDACTED].

    `password: hunter2 (new)` becomes `password [REDACTED]`: from the first separator that trips
    the watcher to the end of the line, since the watcher trips on any character after it and a
    value's end cannot be told from its text. Other lines are kept as they are.
    """
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for pattern in TOKENS.values():
            line = pattern.sub(REDACTED, line)
        first = ASSIGNMENT.search(line)
        if first:
            head, tail = line[: first.start()], line[first.start() :]
            line = head + _ASSIGNED_REST.sub(lambda m: f"{m.group(1)} {REDACTED}", tail, count=1)
        lines[i] = line
    return "\n".join(lines)
