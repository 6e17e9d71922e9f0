"""SPF parsing (RFC 7208 section 12) and the evaluator's counting, over an in-test zone.

The zone here is a dict behind the same query signature the Resolver offers:
a pure-logic test of the evaluator. The proof against real DNS is
tests/integration/test_spf_dmarc_differential.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail.spf import evaluate_spf, parse_spf
from spine_comms.protocols.dns import Answer


def zone(records: dict[tuple[str, str], list[str] | str], delay: float = 0.0):
    """A query function over `records`; the value "SERVFAIL" makes that lookup fail."""
    names = {name for name, _ in records}
    asked: list[tuple[str, str]] = []

    def query(name: str, rdtype: str) -> Answer:
        asked.append((name, rdtype))
        if delay:
            time.sleep(delay)
        value = records.get((name, rdtype))
        if value == "SERVFAIL":
            return Answer(name, rdtype, "error", error="SERVFAIL")
        if value:
            return Answer(name, rdtype, "ok", tuple(value))
        exists = any(n == name or n.endswith("." + name) for n in names)
        return Answer(name, rdtype, "nodata" if exists else "nxdomain")

    query.asked = asked  # type: ignore[attr-defined]
    return query


class InFlight:
    """Wraps a query function and records the most calls ever in flight at once: concurrency
    measured as overlap, so a loaded machine cannot fail a test that a serial evaluator must."""

    def __init__(self, query) -> None:
        self.query, self.most, self._now, self._lock = query, 0, 0, threading.Lock()

    def __call__(self, name: str, rdtype: str) -> Answer:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
        try:
            return self.query(name, rdtype)
        finally:
            with self._lock:
                self._now -= 1


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("v=spf1 -all", None),
        ("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx/24//64 a:mail.example.com/28 include:_spf.example.net", None),
        ("v=spf1 exists:%{i}.%{l1r+-}._spf.%{d} redirect=_spf.example.com", None),
        ("v=spf1 ptr:example.com ?all", None),
        ("V=SPF1 -ALL", None),
        ("v=spf1 -all exp=explain.%{d}", None),
        ("v=spf10 -all", "does not start with 'v=spf1 '"),
        ("v=spf1 foo:bar -all", "not an SPF mechanism"),
        ("v=spf1 ip4:192.0.2.0/33 -all", "CIDR length"),
        ("v=spf1 ip4:192.0.2.0/024 -all", "CIDR length"),
        ("v=spf1 ip4:2001:db8::1 -all", "IPv6 address"),
        ("v=spf1 ip6:192.0.2.1 -all", "IPv4 address"),
        ("v=spf1 ip4:300.1.1.1 -all", "not an IPv4 address"),
        ("v=spf1 include -all", "include needs a domain"),
        ("v=spf1 a/33 -all", "CIDR length"),
        ("v=spf1 mx//129 -all", "CIDR length"),
        ("v=spf1 ptr/24 -all", "ptr takes no CIDR"),
        ("v=spf1 all:foo", "all takes no value"),
        ("v=spf1 redirect=a.example redirect=b.example", "more than once"),
        ("v=spf1 -redirect=a.example", "takes no qualifier"),
        ("v=spf1 exists:%{x}.example.com -all", "macro letter"),
        ("v=spf1 exists:%{c}.example.com -all", "outside exp="),
        ("v=spf1 exists:%{i0}.example.com -all", "0 labels"),
        ("v=spf1 exists:%{i.example.com -all", "unclosed macro"),
        ("v=spf1 a:100%.example.com -all", "a '%' must start"),
        ("v=spf1 redirect=", "needs a domain"),
        ("v=spf1\tip4:192.0.2.1 -all", "does not start"),
    ],
)
def test_parse_spf_cases(record: str, problem: str | None) -> None:
    parsed = parse_spf(record)
    if problem is None:
        assert parsed.problems == [], parsed.problems
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


def test_parse_spf_reads_the_all_qualifier_and_redirect() -> None:
    assert parse_spf("v=spf1 mx -all").all_qualifier == "-"
    assert parse_spf("v=spf1 mx all").all_qualifier == "+"
    assert parse_spf("v=spf1 redirect=_spf.example.com").redirect == "_spf.example.com"
    beside_all = parse_spf("v=spf1 ~all redirect=_spf.example.com")
    assert beside_all.redirect is None and beside_all.all_qualifier == "~"
    assert any("redirect= is ignored" in w for w in beside_all.warnings)


def test_parse_spf_warns_on_what_receivers_ignore() -> None:
    parsed = parse_spf("v=spf1 foo=bar a:localhost -all ip4:192.0.2.1")
    assert parsed.problems == []
    text = " ".join(parsed.warnings)
    assert "unknown modifier foo=" in text and "not a fully qualified" in text and "after 'all'" in text


@given(st.text())
def test_parse_spf_never_raises(text: str) -> None:
    parsed = parse_spf(text)
    assert parsed.raw == text
    assert parsed.problems or text.lower().startswith("v=spf1")


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
def test_parse_spf_never_raises_on_record_like_text(tail: str) -> None:
    parse_spf("v=spf1 " + tail)


LABEL = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
DOMAIN = st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(LABEL, min_size=1, max_size=3), LABEL)
QUALIFIER = st.sampled_from(["", "+", "-", "~", "?"])
MECHANISM = st.one_of(
    st.builds(lambda d: f"include:{d}", DOMAIN),
    st.builds(lambda d, n: f"a:{d}/{n}", DOMAIN, st.integers(0, 32)),
    st.builds(lambda n, m: f"mx/{n}//{m}", st.integers(0, 32), st.integers(0, 128)),
    st.builds(lambda ip, n: f"ip4:{ip}/{n}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda ip, n: f"ip6:{ip}/{n}", st.ip_addresses(v=6), st.integers(0, 128)),
    st.builds(lambda d: f"exists:%{{i}}.{d}", DOMAIN),
    st.just("a"),
    st.just("mx"),
)


@settings(max_examples=200)
@given(st.lists(st.tuples(QUALIFIER, MECHANISM), max_size=8), QUALIFIER)
def test_well_formed_records_parse_without_problems(terms: list[tuple[str, str]], last: str) -> None:
    record = " ".join(["v=spf1", *(q + m for q, m in terms), f"{last}all"])
    parsed = parse_spf(record)
    assert parsed.problems == [], (record, parsed.problems)
    assert len(parsed.terms) == len(terms) + 1
    assert parsed.all_qualifier == (last or "+")


GOOD = {
    ("example.com", "TXT"): ["v=spf1 include:a.example.net include:b.example.net mx -all", "site-verification=x"],
    ("a.example.net", "TXT"): ["v=spf1 ip4:192.0.2.0/24 a:host.example.net ~all"],
    ("b.example.net", "TXT"): ["v=spf1 redirect=c.example.net"],
    ("c.example.net", "TXT"): ["v=spf1 ip6:2001:db8::/32 -all"],
    ("host.example.net", "A"): ["192.0.2.7"],
    ("example.com", "MX"): ["10 mx1.example.com", "20 mx2.example.com"],
    ("mx1.example.com", "A"): ["192.0.2.1"],
    ("mx2.example.com", "AAAA"): ["2001:db8::2"],
}


def test_evaluate_counts_lookups_through_includes_and_redirect() -> None:
    report = evaluate_spf("example.com", zone(GOOD))
    assert report.outcome == "ok", report.problems
    # include a, a:host, include b, redirect c, mx
    assert (report.lookup_count, report.void_count) == (5, 0)
    assert report.records == ["v=spf1 include:a.example.net include:b.example.net mx -all"]
    assert report.all_qualifier == "-"
    assert [node["domain"] for node in report.tree] == ["a.example.net", "b.example.net", "example.com"]
    assert report.tree[1]["includes"][0]["mechanism"] == "redirect"
    assert report.evidence["mx2.example.com AAAA"] == ["2001:db8::2"]
    assert report.evidence["mx1.example.com AAAA"] == ["NODATA"]


def test_redirect_gives_the_effective_all_qualifier() -> None:
    records = {("d.test", "TXT"): ["v=spf1 redirect=e.test"], ("e.test", "TXT"): ["v=spf1 ~all"]}
    report = evaluate_spf("d.test", zone(records))
    assert (report.outcome, report.all_qualifier, report.lookup_count) == ("ok", "~", 1)


def test_eleven_lookups_are_over_the_limit() -> None:
    records = {("d.test", "TXT"): ["v=spf1 " + " ".join(f"a:h{n}.d.test" for n in range(11)) + " -all"]}
    records |= {(f"h{n}.d.test", "A"): ["192.0.2.1"] for n in range(11)}
    report = evaluate_spf("d.test", zone(records))
    assert (report.outcome, report.lookup_count) == ("invalid", 11)
    assert any("over the limit of 10" in p for p in report.problems)


def test_ten_lookups_are_within_the_limit() -> None:
    records = {("d.test", "TXT"): ["v=spf1 " + " ".join(f"a:h{n}.d.test" for n in range(10)) + " -all"]}
    records |= {(f"h{n}.d.test", "A"): ["192.0.2.1"] for n in range(10)}
    assert evaluate_spf("d.test", zone(records)).outcome == "ok"


def test_three_void_lookups_are_over_the_limit() -> None:
    records = {("d.test", "TXT"): ["v=spf1 a:x1.d.test a:x2.d.test mx:x3.d.test -all"]}
    report = evaluate_spf("d.test", zone(records))
    assert (report.outcome, report.void_count) == ("invalid", 3)
    assert any("3 void lookups" in p for p in report.problems)


def test_include_without_spf_is_a_permerror_and_a_void_lookup() -> None:
    records = {("d.test", "TXT"): ["v=spf1 include:gone.test -all"]}
    report = evaluate_spf("d.test", zone(records))
    assert (report.outcome, report.void_count) == ("invalid", 1)
    assert any("gone.test does not exist" in p for p in report.problems)


def test_include_loop_is_found_and_ends() -> None:
    records = {("d.test", "TXT"): ["v=spf1 include:e.test -all"], ("e.test", "TXT"): ["v=spf1 include:d.test -all"]}
    report = evaluate_spf("d.test", zone(records))
    assert report.outcome == "invalid"
    assert "include loop: d.test -> e.test -> d.test" in report.problems


def test_missing_multiple_and_error_outcomes() -> None:
    assert evaluate_spf("nowhere.test", zone({})).outcome == "missing"
    two = {("d.test", "TXT"): ["v=spf1 -all", "v=spf1 mx -all"]}
    assert evaluate_spf("d.test", zone(two)).outcome == "multiple"
    assert evaluate_spf("d.test", zone({("d.test", "TXT"): "SERVFAIL"})).outcome == "error"


def test_a_dns_failure_inside_an_include_is_an_error_never_a_pass() -> None:
    records = {("d.test", "TXT"): ["v=spf1 include:e.test -all"], ("e.test", "TXT"): "SERVFAIL"}
    report = evaluate_spf("d.test", zone(records))
    assert report.outcome == "error"
    assert report.errors == ["e.test TXT: SERVFAIL"]


def test_plus_all_mx_over_ten_names_and_ptr() -> None:
    assert evaluate_spf("d.test", zone({("d.test", "TXT"): ["v=spf1 +all"]})).outcome == "invalid"
    many = {("d.test", "TXT"): ["v=spf1 mx -all"], ("d.test", "MX"): [f"{n} h{n}.d.test" for n in range(11)]}
    report = evaluate_spf("d.test", zone(many))
    assert report.outcome == "invalid" and any("11 MX names" in p for p in report.problems)
    ptr = evaluate_spf("d.test", zone({("d.test", "TXT"): ["v=spf1 ptr -all"]}))
    assert (ptr.outcome, ptr.lookup_count) == ("ok", 1)
    assert any("ptr" in w for w in ptr.warnings)


def test_macros_count_but_are_not_asked() -> None:
    query = zone({("d.test", "TXT"): ["v=spf1 exists:%{i}.d.test include:%{d}.e.test -all"]})
    report = evaluate_spf("d.test", query)
    assert (report.outcome, report.lookup_count) == ("ok", 2)
    assert query.asked == [("d.test", "TXT")]


def test_siblings_resolve_concurrently() -> None:
    """Depth 4 (TXT, include TXT, MX, A/AAAA), 41 queries: siblings must be in flight together.

    Measured as overlap, not wall time, so a loaded machine cannot fail it: the five includes
    (and then the fifteen MX targets' lookups) are asked at once, or at least five are never
    in flight together."""
    records = {("d.test", "TXT"): ["v=spf1 " + " ".join(f"include:i{n}.test" for n in range(5)) + " -all"]}
    for n in range(5):
        records[(f"i{n}.test", "TXT")] = [f"v=spf1 mx:m{n}.test -all"]
        records[(f"m{n}.test", "MX")] = [f"10 h{k}.m{n}.test" for k in range(3)]
    slow = zone(records, delay=0.05)
    query = InFlight(slow)
    report = evaluate_spf("d.test", query)
    assert report.lookup_count == 10
    assert query.most >= 5, f"at most {query.most} queries were in flight at once: siblings are resolved one by one"


def test_a_long_include_chain_stops_once_far_over_the_limit() -> None:
    records = {(f"n{k}.test", "TXT"): [f"v=spf1 include:n{k + 1}.test -all"] for k in range(200)}
    query = zone(records)
    report = evaluate_spf("n0.test", query)
    assert report.outcome == "invalid" and report.lookup_count > 10
    assert len(query.asked) < 60, "the evaluator kept following a chain that was already over the limit"
