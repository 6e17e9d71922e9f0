"""SPF records (RFC 7208) checked as a domain owner needs them checked: is the record valid, and safe?

This is record validation, not the evaluation of a client IP: the record is
parsed against the section 12 grammar, then every include and redirect is
followed to count the DNS-querying terms (limit 10) and the void lookups
(limit 2) that a receiver's evaluation would spend (section 4.6.4). A DNS
failure along the way (SERVFAIL, timeout, refusal) makes the outcome `error`:
the record could not be evaluated, which must never read as a pass.

Sibling terms are resolved concurrently (all the includes of one record, the
address lookups of the MX hosts), so the wall time follows the depth of the
chain of dependent queries, not the number of queries.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from spine_comms.protocols.dns import Answer

Query = Callable[[str, str], Answer]

LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: DNS-querying terms per evaluation
VOID_LIMIT = 2  # RFC 7208 4.6.4: lookups answering NXDOMAIN or no records
MX_NAME_LIMIT = 10  # RFC 7208 4.6.4: address lookups per mx term
# A tree this size already proves the record is over the limit; going on would only spend queries.
FOLLOW_BUDGET = 40

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
QUERYING = ("include", "a", "mx", "ptr", "exists")
QUALIFIERS = "+-~?"
MACRO_LETTERS = set("slodiphv")
EXP_ONLY_MACRO_LETTERS = set("crt")  # RFC 7208 7.2: only in exp= text
MACRO_DELIMITERS = set(".-+,/_=")
MODIFIER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*\Z")
TOPLABEL = re.compile(r"(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])\Z", re.IGNORECASE)
CIDR_LENGTH = re.compile(r"(?:0|[1-9][0-9]*)\Z")


@dataclass(frozen=True)
class Term:
    kind: str  # mechanism | modifier
    name: str  # lower case: all, include, ..., redirect, exp, or an unknown modifier's name
    qualifier: str = ""  # as written; "" means the default "+"
    value: str = ""  # domain-spec, network or modifier value, without the CIDR lengths
    cidr: str = ""  # "/24", "//64", "/24//64" as written

    def text(self) -> str:
        joiner = "=" if self.kind == "modifier" else ":"
        return f"{self.qualifier}{self.name}{joiner + self.value if self.value else ''}{self.cidr}"


@dataclass
class SpfRecord:
    raw: str
    terms: list[Term] = field(default_factory=list)
    all_qualifier: str | None = None  # of the first all mechanism: "-", "~", "?" or "+"
    redirect: str | None = None  # None also when an all mechanism makes redirect= ignored (6.1)
    problems: list[str] = field(default_factory=list)  # each one is a permerror
    warnings: list[str] = field(default_factory=list)


def is_spf(txt: str) -> bool:
    """RFC 7208 4.5: exactly "v=spf1" then a space or the end ("v=spf10" is something else)."""
    lowered = txt.lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def _macro_problem(value: str, *, exp: bool = False) -> str | None:
    """Check RFC 7208 section 7 macro syntax; the reason for the first error, or None."""
    i = 0
    while i < len(value):
        if value[i] != "%":
            i += 1
            continue
        nxt = value[i + 1 : i + 2]
        if nxt in ("%", "_", "-"):
            i += 2
            continue
        if nxt != "{":
            return f"a '%' must start %{{...}}, %%, %_ or %- (at {i} in {value!r})"
        close = value.find("}", i)
        if close < 0:
            return f"an unclosed macro %{{ (at {i} in {value!r})"
        body = value[i + 2 : close]
        match = re.fullmatch(r"([A-Za-z])([0-9]*)([rR]?)(.*)", body)
        if not match:
            return f"an empty or malformed macro %{{{body}}}"
        letter, digits, _, delimiters = match.groups()
        allowed = MACRO_LETTERS | (EXP_ONLY_MACRO_LETTERS if exp else set())
        if letter.lower() not in allowed:
            where = "" if letter.lower() not in EXP_ONLY_MACRO_LETTERS else " outside exp="
            return f"the macro letter {letter!r} is not allowed{where} (%{{{body}}})"
        if digits and int(digits) == 0:
            return f"a macro transformer of 0 labels (%{{{body}}})"
        if any(ch not in MACRO_DELIMITERS for ch in delimiters):
            return f"a macro delimiter outside . - + , / _ = (%{{{body}}})"
        i = close + 1
    return None


def _domain_spec_findings(term: str, spec: str) -> tuple[str | None, str | None]:
    """(problem, warning) for a domain-spec: bad macros are errors; a name that is not
    a fully qualified domain is a warning, as section 4.8 lets receivers treat it as no match."""
    if any(not ("!" <= ch <= "~") for ch in spec):
        return f"{term}: the domain {spec!r} holds characters outside printable ASCII", None
    problem = _macro_problem(spec)
    if problem:
        return f"{term}: {problem}", None
    if "%" in spec:
        return None, None
    labels = spec.rstrip(".").split(".")
    if len(labels) < 2 or not TOPLABEL.match(labels[-1]) or any(not label for label in labels):
        return None, f"{term}: {spec!r} is not a fully qualified domain name (RFC 7208 4.8: no match)"
    return None, None


def _split_cidr(value: str) -> tuple[str, str]:
    """Split "example.com/24//64" into the domain part and the dual CIDR suffix."""
    slash = value.find("/")
    return (value, "") if slash < 0 else (value[:slash], value[slash:])


def _dual_cidr_problem(cidr: str) -> str | None:
    if not cidr:
        return None
    match = re.fullmatch(r"(?:/([0-9]+))?(?://([0-9]+))?", cidr)
    if not match or not (match.group(1) or match.group(2)):
        return f"{cidr!r} is not a CIDR length (/n, //n or /n//n)"
    v4, v6 = match.groups()
    for length, top in ((v4, 32), (v6, 128)):
        if length is not None and (not CIDR_LENGTH.match(length) or int(length) > top):
            return f"the CIDR length {length} is not 0-{top} without leading zeros"
    return None


def _network_problem(name: str, value: str) -> str | None:
    if not value:
        return f"{name} needs a network (ip4:192.0.2.0/24)"
    address, _, length = value.partition("/")
    top, version = (32, 4) if name == "ip4" else (128, 6)
    if "/" in value and (not CIDR_LENGTH.match(length) or int(length) > top):
        return f"{name}:{value}: the CIDR length is not 0-{top} without leading zeros"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"{name}:{value}: {address!r} is not an IPv{version} address"
    if parsed.version != version:
        return f"{name}:{value}: {address} is an IPv{parsed.version} address"
    return None


def _parse_term(token: str, record: SpfRecord) -> Term | None:
    qualifier = token[0] if token[0] in QUALIFIERS else ""
    body = token[len(qualifier) :]
    name_match = re.match(r"[A-Za-z][A-Za-z0-9_.\-]*", body)
    if not name_match:
        record.problems.append(f"{token!r} is not an SPF term")
        return None
    name = name_match.group(0).lower()
    rest = body[name_match.end() :]
    if rest.startswith("=") and name not in MECHANISMS:
        if qualifier:
            record.problems.append(f"{token}: a modifier takes no qualifier")
        value = rest[1:]
        if name in ("redirect", "exp"):
            problem, warning = (
                _domain_spec_findings(token, value) if value else (f"{token}: {name}= needs a domain", None)
            )
            if name == "exp" and value:
                problem = _macro_problem(value, exp=True)
                problem = f"{token}: {problem}" if problem else None
            if problem:
                record.problems.append(problem)
            if warning:
                record.warnings.append(warning)
        else:
            record.warnings.append(f"{token}: the unknown modifier {name}= is ignored (RFC 7208 6)")
        return Term("modifier", name, "", value)
    if name not in MECHANISMS:
        record.problems.append(f"{token}: {name!r} is not an SPF mechanism (all include a mx ptr ip4 ip6 exists)")
        return None
    if name == "all":
        if rest:
            record.problems.append(f"{token}: all takes no value")
        return Term("mechanism", "all", qualifier)
    if name in ("ip4", "ip6"):
        value = rest[1:] if rest.startswith(":") else ""
        problem = _network_problem(name, value) if rest.startswith(":") or not rest else f"{token}: expected ':'"
        if problem:
            record.problems.append(problem if problem.startswith(token) else f"{token}: {problem}")
        network, _, length = value.partition("/")
        return Term("mechanism", name, qualifier, network, f"/{length}" if length else "")
    if name in ("include", "exists"):
        if not rest.startswith(":") or len(rest) == 1:
            record.problems.append(f"{token}: {name} needs a domain ({name}:example.com)")
            return None
        problem, warning = _domain_spec_findings(token, rest[1:])
        record.problems += [problem] if problem else []
        record.warnings += [warning] if warning else []
        return Term("mechanism", name, qualifier, rest[1:])
    # a, mx, ptr: an optional domain, then (a and mx only) optional CIDR lengths
    if rest and rest[0] not in ":/":
        record.problems.append(f"{token}: expected ':' or '/' after {name}")
        return None
    domain, cidr = _split_cidr(rest[1:] if rest.startswith(":") else rest)
    if rest.startswith(":") and not domain:
        record.problems.append(f"{token}: nothing after ':'")
        return None
    if cidr and name == "ptr":
        record.problems.append(f"{token}: ptr takes no CIDR length")
    else:
        problem = _dual_cidr_problem(cidr)
        if problem:
            record.problems.append(f"{token}: {problem}")
    if domain:
        problem, warning = _domain_spec_findings(token, domain)
        record.problems += [problem] if problem else []
        record.warnings += [warning] if warning else []
    return Term("mechanism", name, qualifier, domain, cidr)


def parse_spf(txt: str) -> SpfRecord:
    """Parse one SPF record against the RFC 7208 section 12 grammar; never raises.

    Every permerror goes to `problems`, one line each; what a receiver ignores
    (unknown modifiers, terms after `all`, a redirect beside `all`) to `warnings`.
    """
    record = SpfRecord(raw=txt)
    if not is_spf(txt):
        record.problems.append(f"the record does not start with 'v=spf1 ': {txt[:40]!r}")
        return record
    if any(not (" " <= ch <= "~") for ch in txt):
        record.problems.append("the record holds characters outside printable ASCII (tab, newline, non-ASCII)")
    seen_modifiers: set[str] = set()
    after_all = []
    for token in txt.split()[1:]:
        term = _parse_term(token, record)
        if term is None:
            continue
        if term.kind == "modifier":
            if term.name in ("redirect", "exp"):
                if term.name in seen_modifiers:
                    record.problems.append(f"{term.name}= appears more than once (RFC 7208 6)")
                seen_modifiers.add(term.name)
        elif record.all_qualifier is not None:
            after_all.append(token)
        elif term.name == "all":
            record.all_qualifier = term.qualifier or "+"
        record.terms.append(term)
    if after_all:
        record.warnings.append(f"terms after 'all' are never evaluated: {' '.join(after_all)}")
    redirect = next((t.value for t in record.terms if t.name == "redirect"), None)
    if redirect and record.all_qualifier is not None:
        record.warnings.append("redirect= is ignored because the record has an 'all' mechanism (RFC 7208 6.1)")
    elif redirect:
        record.redirect = redirect
    return record


@dataclass
class SpfReport:
    domain: str
    outcome: str  # ok | missing | multiple | invalid | error
    records: list[str] = field(default_factory=list)
    all_qualifier: str | None = None  # effective, following redirect=
    lookup_count: int = 0
    void_count: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tree: list[dict] = field(default_factory=list)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_kind: str | None = None  # for outcome error: why the record could not be read (core.outcomes)


class _Walk:
    """Shared state of one evaluation: the evidence, the follow budget and a query that records."""

    def __init__(self, query: Query, max_workers: int) -> None:
        self._query = query
        self.max_workers = max(1, max_workers)
        self.evidence: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._followed = 0

    def ask(self, name: str, rdtype: str) -> Answer:
        answer = self._query(name, rdtype)
        with self._lock:
            key = f"{answer.name or name} {rdtype}"
            self.evidence[key] = list(answer.records) if answer.ok else [answer.error or answer.outcome.upper()]
        return answer

    def may_follow(self) -> bool:
        with self._lock:
            self._followed += 1
            return self._followed <= FOLLOW_BUDGET

    def parallel(self, jobs: list[Callable[[], dict]]) -> list[dict]:
        if len(jobs) <= 1:
            return [job() for job in jobs]
        # A pool per level: nested levels never wait on a shared, exhausted pool.
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(jobs))) as pool:
            return list(pool.map(lambda job: job(), jobs))


def _spf_records(answer: Answer) -> list[str]:
    return [r for r in answer.records if is_spf(r)] if answer.ok else []


def _node(mechanism: str, domain: str, **extra) -> dict:
    """What one DNS-querying term cost: its own lookup plus, for include/redirect, its subtree."""
    node = {"mechanism": mechanism, "domain": domain, "lookups": 1, "voids": 0, "problems": [], "warnings": []}
    node["errors"] = []
    node.update(extra)
    return node


def _addresses(walk: _Walk, name: str) -> tuple[list[Answer], bool, list[str]]:
    """A and AAAA of a name, concurrently: (answers, void, errors). Void only when both are missing."""
    answers = [r["answer"] for r in walk.parallel([lambda t=t: {"answer": walk.ask(name, t)} for t in ("A", "AAAA")])]
    errors = [f"{a.name} {a.rdtype}: {a.error}" for a in answers if a.outcome == "error"]
    return answers, not errors and all(a.missing for a in answers), errors


def _term_job(walk: _Walk, term: Term, current: str, chain: tuple[str, ...]) -> Callable[[], dict]:
    target = (term.value or current).lower().rstrip(".")
    label = term.text()

    def run() -> dict:
        if "%" in target or term.name in ("ptr", "exists"):
            # Macros need a client to expand, ptr needs a client IP, exists is all about macros:
            # the lookup counts, but there is nothing to ask at validation time.
            node = _node(term.name, target, term=label)
            if term.name == "ptr":
                node["warnings"].append(f"{label}: ptr is slow and unreliable and SHOULD NOT be used (RFC 7208 5.5)")
            return node
        if term.name in ("include", "redirect"):
            return _follow(walk, term.name, target, chain, label)
        if term.name == "a":
            _, void, errors = _addresses(walk, target)
            return _node("a", target, term=label, voids=int(void), errors=errors)
        # mx: the MX names, then the addresses of every host, all hosts at once
        answer = walk.ask(target, "MX")
        node = _node("mx", target, term=label, hosts=[])
        if answer.outcome == "error":
            node["errors"].append(f"{target} MX: {answer.error}")
            return node
        if answer.missing:
            node["voids"] = 1
            return node
        # A null MX ("0 .", RFC 7505) names no host: there is no address to look up, so mx matches nothing.
        hosts = [host for host in (r.split()[-1] for r in answer.records) if host.rstrip(".")]
        node["hosts"] = hosts
        if not hosts:
            node["warnings"].append(f"{label}: {target} has a null MX (RFC 7505), so mx matches no host")
            return node
        if len(hosts) > MX_NAME_LIMIT:
            node["problems"].append(f"{label}: {target} has {len(hosts)} MX names; an mx term may use 10 (4.6.4)")
            return node
        results = walk.parallel([lambda h=h: {"found": _addresses(walk, h)} for h in hosts])
        for host, result in zip(hosts, results, strict=True):
            _, void, errors = result["found"]
            node["errors"] += errors
            if void:
                node["warnings"].append(f"{label}: the MX host {host} has no A or AAAA record")
        return node

    return run


def _follow(walk: _Walk, mechanism: str, target: str, chain: tuple[str, ...], label: str) -> dict:
    """An include or redirect: fetch the target's SPF record and evaluate it in turn."""
    if target in chain:
        loop = " -> ".join((*chain, target))
        return _node(mechanism, target, term=label, problems=[f"{mechanism} loop: {loop}"])
    if not walk.may_follow():
        warning = f"{label}: not followed, the record is far over the limit"
        return _node(mechanism, target, term=label, warnings=[warning])
    answer = walk.ask(target, "TXT")
    node = _node(mechanism, target, term=label, records=list(answer.records))
    if answer.outcome == "error":
        node["errors"].append(f"{target} TXT: {answer.error}")
        return node
    found = _spf_records(answer)
    if not found:
        node["voids"] = int(answer.missing)
        reason = "does not exist" if answer.outcome == "nxdomain" else "has no SPF record"
        node["problems"].append(f"{label}: {target} {reason}, a permerror (RFC 7208 5.2, 6.1)")
        return node
    if len(found) > 1:
        node["problems"].append(f"{label}: {target} has {len(found)} SPF records, a permerror (RFC 7208 4.5)")
        return node
    _evaluate(walk, target, found[0], (*chain, target), node)
    return node


def _evaluate(walk: _Walk, domain: str, txt: str, chain: tuple[str, ...], into: dict) -> None:
    """Parse one record and resolve its querying terms concurrently, adding the costs to `into`."""
    record = parse_spf(txt)
    into["record"] = txt
    into["all_qualifier"] = record.all_qualifier
    into["problems"] += [f"{domain}: {p}" for p in record.problems]
    into["warnings"] += [f"{domain}: {w}" for w in record.warnings]
    if record.problems:
        return  # a permerror: the receiver never gets to the DNS terms
    if record.all_qualifier == "+":
        into["problems"].append(f"{domain}: +all lets any host on the internet send as this domain")
    stop = next((i for i, t in enumerate(record.terms) if t.name == "all"), len(record.terms))
    querying = [t for t in record.terms[:stop] if t.kind == "mechanism" and t.name in QUERYING]
    if record.redirect:
        querying.append(Term("modifier", "redirect", "", record.redirect))
    children = walk.parallel([_term_job(walk, t, domain, chain) for t in querying])
    into["children"] = children
    for child in children:
        into["lookups"] += child["lookups"]
        into["voids"] += child["voids"]
        for key in ("problems", "warnings", "errors"):
            into[key] += child[key]
        if child["mechanism"] == "redirect":
            into["all_qualifier"] = child.get("all_qualifier")


def _tree(node: dict) -> list[dict]:
    """The followed includes and redirects as a readable list, depth first."""
    out = []
    for child in node.get("children", []):
        entry = {k: child[k] for k in ("mechanism", "domain", "lookups", "voids") if k in child}
        if child["mechanism"] in ("include", "redirect"):
            entry["records"] = child.get("records", [])
            entry["includes"] = _tree(child)
        elif child["mechanism"] == "mx":
            entry["hosts"] = child.get("hosts", [])
        out.append(entry)
    return out


def evaluate_spf(domain: str, query: Query, *, max_workers: int = 8) -> SpfReport:
    """Validate the SPF record at `domain`, following includes and redirects; never raises for DNS."""
    domain = domain.lower().rstrip(".")
    walk = _Walk(query, max_workers)
    report = SpfReport(domain=domain, outcome="ok")
    answer = walk.ask(domain, "TXT")
    report.records = _spf_records(answer)
    if answer.outcome == "error":
        report.outcome, report.errors = "error", [f"{domain} TXT: {answer.error}"]
        report.error_kind = str(answer.error_kind) if answer.error_kind else None
    elif not report.records:
        report.outcome = "missing"
        report.problems.append(f"{domain} has no SPF record" + (" (NXDOMAIN)" if answer.outcome == "nxdomain" else ""))
    elif len(report.records) > 1:
        report.outcome = "multiple"
        report.problems.append(f"{domain} has {len(report.records)} SPF records, a permerror (RFC 7208 4.5)")
    if report.outcome != "ok":
        report.evidence = walk.evidence
        return report
    root = {"lookups": 0, "voids": 0, "problems": [], "warnings": [], "errors": []}
    _evaluate(walk, domain, report.records[0], (domain,), root)
    report.all_qualifier = root.get("all_qualifier")
    report.lookup_count, report.void_count = root["lookups"], root["voids"]
    report.problems, report.warnings, report.errors = root["problems"], root["warnings"], root["errors"]
    if report.lookup_count > LOOKUP_LIMIT:
        report.problems.append(
            f"{report.lookup_count} DNS-querying terms, over the limit of {LOOKUP_LIMIT} (RFC 7208 4.6.4)"
        )
    if report.void_count > VOID_LIMIT:
        report.problems.append(f"{report.void_count} void lookups, over the limit of {VOID_LIMIT} (RFC 7208 4.6.4)")
    report.tree = _tree(root)
    report.evidence = dict(sorted(walk.evidence.items()))
    if report.errors:
        report.outcome = "error"
    elif report.problems:
        report.outcome = "invalid"
    return report
