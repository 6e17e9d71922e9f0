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


# Which lines can hold a finding, found without a regex over the whole text (a 100 KB item took
# milliseconds that way; each email item says "Authentication-Results" once, so a pre-check for
# the words alone did not help). No match crosses a newline, and every match holds one of these
# separators literally: `=` or `:` (an assignment), `-` or `_` (sk-, ghp_, xoxb-); no character
# case-folds to them. Finding them is memchr-speed; only their lines are looked at further.
_SEPARATORS = ("=", ":", "-", "_")
# Every match also holds one of these words, in any case.
_WORDS = ("api", "secret", "password", "token", "bearer", "auth", "sk-", "ghp_", "xoxb-")


def _candidate_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line that may hold a finding, in order; `end` excludes the newline."""
    spans: dict[int, int] = {}
    for separator in _SEPARATORS:
        at = text.find(separator)
        while at >= 0:
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            if start not in spans:
                line = text[start:end]
                # Outside ASCII, case folding has surprises (the Kelvin sign matches k): no word pre-check.
                if not line.isascii() or any(word in line.lower() for word in _WORDS):
                    spans[start] = end
            at = text.find(separator, end)  # the rest of this line is decided
    return sorted(spans.items())


def secret_findings(text: str) -> list[str]:
    """One line per finding: `line N: <what>`; the matched value is never included."""
    findings: list[str] = []
    number, counted_to = 1, 0
    for start, end in _candidate_lines(text):
        line = text[start:end]
        found = [f"a value assigned to {m.group(1).lower()!r} (= or :)" for m in ASSIGNMENT.finditer(line)]
        found += [name for name, pattern in TOKENS.items() if pattern.search(line)]
        if found:
            # Line numbers by C-level counts, only up to the lines that matter.
            number += text.count("\n", counted_to, start)
            counted_to = start
            findings += [f"line {number}: {what}" for what in found]
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
