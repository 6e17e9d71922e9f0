"""The watcher's secret scan: the fast path (candidate lines only) finds exactly what a scan of every line finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mailroom.secrets_scan import ASSIGNMENT, TOKENS, secret_findings


def every_line(text: str) -> list[str]:
    """The definition: grep -iE line by line, each pattern on each line."""
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        for match in ASSIGNMENT.finditer(line):
            out.append(f"line {number}: a value assigned to {match.group(1).lower()!r} (= or :)")
        out += [f"line {number}: {name}" for name, pattern in TOKENS.items() if pattern.search(line)]
    return out


PIECES = ["api_key", "API-KEY", "Secret", "password", "TOKEN", "bearer", "Auth", "sk-", "ghp_", "xoxb-", "=", ":",
          " ", "\t", "\n", "$", "x", "value", "a" * 20, "A1" * 18, "\u212a", "é", "\r", "auth:\n",
          "token =$X"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_candidate_lines_find_what_every_line_finds(pieces):
    text = "".join(pieces)
    assert secret_findings(text) == every_line(text)


def test_a_long_clean_body_with_one_assignment_far_down():
    body = "\n".join(f"line of plain words {i}" for i in range(5000))
    text = "**Sender verification:** no Authentication-Results\n" + body + "\napi_key = abc\n"
    assert secret_findings(text) == ["line 5002: a value assigned to 'api_key' (= or :)"]


def test_the_value_is_never_in_a_finding():
    findings = secret_findings("x\npassword: hunter2-sentinel\nghp_" + "a" * 36)
    assert findings == ["line 2: a value assigned to 'password' (= or :)", "line 3: GitHub token (ghp_...)"]
    assert not any("hunter2" in f for f in findings)
