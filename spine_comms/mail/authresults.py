"""Authentication-Results (RFC 8601): who vouches (authserv-id) and what each method found.

Parses what OpenDKIM/OpenDMARC write (one method per header, comments holding
`;`), what Stalwart writes (every method in one header, `;`-separated and folded,
quoted `header.i`), and anything else a header may hold: a header is text from
the outside, so the parser never raises. What it cannot make sense of goes into
`problems` and parsing resumes at the next `;`.

Which headers to believe is decided here too (`sort_by_trust`), from the whole
header in order: RFC 8601 §5 and §7.1 (see that function).
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


# Which headers the receiver wrote ------------------------------------------------------------------

AR_NAME = "authentication-results"
# Fields a receiver may write between its Received and its Authentication-Results (ARC sealing).
_ARC = ("arc-seal", "arc-message-signature", "arc-authentication-results")
# Fields only the author's side writes: a receiver's block is never below one of them. (What a receiver
# adds on top varies, Stalwart's X-Spam-Status, Delivered-To, a Sieve addheader: not listed here.)
_AUTHOR_FIELDS = frozenset(
    ("from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to",
     "references", "mime-version", "content-type", "content-transfer-encoding", "dkim-signature", "x-mailer",
     "user-agent")
)  # fmt: skip


@dataclass
class Untrusted:
    header: AuthResults
    why: str  # one line: why this header is not the receiver's

    def to_dict(self) -> dict:
        return {**self.header.to_dict(), "why": self.why}


@dataclass
class TrustSorting:
    """The receiver's own Authentication-Results (`trusted`), and every other one with the reason."""

    trusted_id: str | None
    trusted: list[AuthResults] = field(default_factory=list)
    untrusted: list[Untrusted] = field(default_factory=list)
    note: str = ""  # why nothing is trusted, when nothing is

    def method(self, name: str) -> list[MethodResult]:
        """The receiver's results for one method: from the topmost trusted header that carries it
        (each receiver component writes one header; a second one below is not the receiver's word)."""
        for ar in self.trusted:
            found = ar.of(name)
            if found:
                return found
        return []

    def to_dict(self) -> dict:
        return {
            "trusted_authserv_id": self.trusted_id,
            "trusted": [a.to_dict() for a in self.trusted],
            "untrusted": [u.to_dict() for u in self.untrusted],
            "note": self.note,
        }


# Two line breaks in a row, whatever the line endings (CRLF, LF, bare CR, mixed): the only pair of line
# ends none of these three contains is CRLF itself, which is one line end. So the first match is at or
# after the end of the header section as the parser sees it (an empty line, if nothing ended it sooner).
_EMPTY_LINE = re.compile(rb"\n\n|\r\r|\n\r")


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """Every header field of a message, top first, values as received (folded, never RFC 2047-decoded).

    Only the bytes up to the first empty line go to the parser: its header parse stops there at the
    latest, and what follows would be read line by line into a payload nobody uses (for a 50 KB
    message that was most of the cost). tests/unit/test_authresults_trust.py compares the two."""
    import email.parser
    import email.policy

    end = _EMPTY_LINE.search(raw)
    head = raw if end is None else raw[: end.end() + 2]  # the whole empty line, also a CRLF one
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    return [(str(name), str(value)) for name, value in parsed.items()]


def sort_by_trust(fields: list[tuple[str, str]], trusted_id: str | None) -> TrustSorting:
    """RFC 8601 §5 and §7.1: believe only the Authentication-Results the receiving server itself wrote.

    A header is the receiver's when (1) its authserv-id is the configured one exactly: the same
    characters, unquoted, no case folding, no trailing dot (a look-alike is someone else's; RFC 8601
    §2.5 leaves the choice of id to the receiver, who writes it the same way every time), (2) its
    version, if written, is 1 (§2.2), and (3) it sits in the receiver's block: the first run of
    consecutive Authentication-Results fields from the top of the message, below no field of the
    message itself (From, Subject, DKIM-Signature ...), next to the receiving
    server's own Received field (one whose `by` names the authserv-id's host or a host of its
    domain): right above the run (Stalwart writes its Received, then its A-R) or right below it
    (Postfix milters write theirs above Postfix's Received). A receiver prepends its block to what
    the sender wrote, so anything further down is the sender's text (Stalwart never removes those:
    stalwart.md §2), and a message no server received (an IMAP APPEND) has no block.
    """
    out = TrustSorting(trusted_id)
    ar_positions = [i for i, (name, _) in enumerate(fields) if name.strip().lower() == AR_NAME]
    parsed = {i: parse_authentication_results(fields[i][1]) for i in ar_positions}
    if not trusted_id:
        out.note = "no trusted authserv-id is configured"
        out.untrusted = [Untrusted(parsed[i], "no trusted authserv-id is configured") for i in ar_positions]
        return out
    block = _receiver_block(fields, ar_positions, trusted_id)
    for i in ar_positions:
        header = parsed[i]
        why = _not_ours(header, fields[i][1], trusted_id)
        if why is None and i not in block.run:
            why = block.why_not(i)
        if why is None:
            out.trusted.append(header)
        else:
            out.untrusted.append(Untrusted(header, why))
    if not out.trusted:
        out.note = block.problem or f"no Authentication-Results from {trusted_id} in the receiver's block"
    return out


def _not_ours(header: AuthResults, raw_value: str, trusted_id: str) -> str | None:
    shown = header.authserv_id or "(none)"
    head = _head(raw_value)
    if head == "quoted":
        return f'authserv-id "{shown}" is quoted; {trusted_id} writes it as a plain token'
    if header.authserv_id != trusted_id:
        return f"authserv-id {shown!r} is not {trusted_id!r}"
    if head == "garbled":
        return f"text after the authserv-id {shown!r} that is neither a version nor ';'"
    if header.version not in (None, "1"):
        return f"version {header.version} is unknown (RFC 8601 §2.2: only 1 is defined)"
    return None


def _head(raw_value: str) -> str:
    """How the part before the first result reads: "quoted" id, "garbled" (something between the id
    and its `;`), or "clean". A receiver writes it clean; anything else is not its header."""
    cur = _Cursor(_NAME.sub("", _FOLD.sub("", raw_value), count=1))
    cur.skip_cfws()
    if cur.peek() == '"':
        return "quoted"
    cur.value()
    cur.skip_cfws()
    if cur.peek().isdigit():
        cur.token()
        cur.skip_cfws()
    return "clean" if cur.at_end() or cur.peek() == ";" else "garbled"


@dataclass
class _Block:
    run: set[int]
    problem: str  # why there is no block, or ""

    def why_not(self, index: int) -> str:
        if not self.run:
            return self.problem
        return "below the receiver's block of Authentication-Results: the sender's text, not the receiver's"


def _receiver_block(fields: list[tuple[str, str]], ar_positions: list[int], trusted_id: str) -> _Block:
    if not ar_positions:
        return _Block(set(), "the message has no Authentication-Results")
    names = [name.strip().lower() for name, _ in fields]
    first = ar_positions[0]
    last = first
    while last + 1 < len(names) and names[last + 1] == AR_NAME:
        last += 1
    author = next((n for n in names[:first] if n in _AUTHOR_FIELDS), None)
    if author:
        return _Block(set(), f"the first Authentication-Results lies below {author!r}, a field of the message "
                             "itself: no receiver wrote it")  # fmt: skip
    above = next((i for i in range(first - 1, -1, -1) if names[i] not in _ARC), None)
    below = last + 1 if last + 1 < len(names) else None
    neighbours = [i for i in (above, below) if i is not None and names[i] == "received"]
    if not neighbours:
        return _Block(set(), "no Received field right above or below the first Authentication-Results: "
                             "no receiving server wrote them (a message put in by IMAP APPEND, or a copy)")  # fmt: skip
    hosts = [received_by(fields[i][1]) for i in neighbours]
    if not any(host and _receivers_host(host, trusted_id) for host in hosts):
        shown = ", ".join(h or "(no by)" for h in hosts)
        return _Block(set(), f"the Received next to the first Authentication-Results is by {shown}, not the "
                             f"receiver {trusted_id} or a host of its domain")  # fmt: skip
    return _Block(set(range(first, last + 1)), "")


_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_BY = re.compile(r"(?:^|\s)by\s+([^\s;()]+)", re.IGNORECASE)


def received_by(value: str) -> str | None:
    """The host a Received field says received the message (its `by` clause, comments removed)."""
    text = _FOLD.sub(" ", value)
    for _ in range(MAX_COMMENT_DEPTH):  # innermost comments first, until none is left
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    found = _BY.search(text)
    return found.group(1).rstrip(".").lower() if found else None


def _receivers_host(host: str, trusted_id: str) -> bool:
    """The authserv-id's own host, or another host of its domain (Postfix's inbound `mx.` beside `mail.`)."""
    own = trusted_id.rstrip(".").lower()
    domain = own.partition(".")[2]
    return host == own or (bool(domain) and "." in domain and host.endswith("." + domain))
