"""DMARC parsing (RFC 7489 section 6.3), organizational domains, alignment, and the evaluator over an in-test zone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail.dmarc import aligned, evaluate_dmarc, organizational_domain, parse_dmarc
from tests.unit.test_spf import InFlight, zone


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("v=DMARC1; p=reject", None),
        ("v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=r; pct=50; fo=1:d:s; rf=afrf; ri=3600", None),
        ("v=DMARC1;p=none;rua=mailto:a@example.com!10m,mailto:b@example.net;ruf=mailto:f@example.com;", None),
        ("v=DMARC1 ; p = reject ; rua = mailto:a@example.com", None),
        ("v=DMARC1; p=reject; rua=https://reports.example.com/dmarc", None),
        ("p=reject; v=DMARC1", "must start with v=DMARC1"),
        ("v=DMARC2; p=reject", "must start with v=DMARC1"),
        ("v=DMARC1", "p= tag (policy) is missing"),
        ("v=DMARC1; p=bogus", "policy must be none, quarantine or reject"),
        ("v=DMARC1; p=reject; sp=maybe", "policy must be"),
        ("v=DMARC1; p=reject; adkim=x", "alignment mode"),
        ("v=DMARC1; p=reject; aspf=relaxed", "alignment mode"),
        ("v=DMARC1; p=reject; pct=101", "pct=101"),
        ("v=DMARC1; p=reject; pct=-1", "pct=-1"),
        ("v=DMARC1; p=reject; pct=abc", "pct=abc"),
        ("v=DMARC1; p=reject; rua=reports@example.com", "not a report URI"),
        ("v=DMARC1; p=reject; rua=mailto:a@example.com!big", "not a report URI"),
        ("v=DMARC1; p=reject; rua=mailto:nobody", "does not hold an email address"),
        ("v=DMARC1; p=reject; fo=2", "fo=2"),
        ("v=DMARC1; p=reject; fo=1;d", "not a tag=value pair"),
        ("v=DMARC1; p=reject; rf=xml", "afrf"),
        ("v=DMARC1; p=reject; ri=soon", "ri=soon"),
        ("v=DMARC1; p=reject; p=none", "more than once"),
    ],
)
def test_parse_dmarc_cases(record: str, problem: str | None) -> None:
    parsed = parse_dmarc(record)
    if problem is None:
        assert parsed.problems == [], parsed.problems
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


def test_parse_dmarc_reads_values_and_defaults() -> None:
    full = parse_dmarc("v=DMARC1; p=Quarantine; sp=reject; adkim=s; pct=25; rua=mailto:a@example.com!5m; fo=1:d")
    assert (full.p, full.sp, full.adkim, full.aspf, full.pct, full.fo) == ("quarantine", "reject", "s", "r", 25, "1:d")
    assert full.rua == ["mailto:a@example.com"] and full.ruf == []
    assert any("pct=25" in w for w in full.warnings)
    bare = parse_dmarc("v=DMARC1; p=none")
    assert (bare.pct, bare.fo, bare.rf, bare.ri, bare.sp) == (100, "0", "afrf", 86400, None)
    assert any("p=none" in w for w in bare.warnings) and any("no rua=" in w for w in bare.warnings)


def test_parse_dmarc_warns_on_what_it_ignores() -> None:
    parsed = parse_dmarc("v=DMARC1; rua=mailto:a@example.com; p=reject; foo=bar")
    assert parsed.problems == []
    text = " ".join(parsed.warnings)
    assert "unknown tag foo=" in text and "not the second tag" in text


@given(st.text())
def test_parse_dmarc_never_raises(text: str) -> None:
    parsed = parse_dmarc(text)
    assert parsed.raw == text
    assert parsed.problems or text.startswith("v")


LABEL = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
DOMAIN = st.builds(lambda a, b: f"{a}.{b}", LABEL, LABEL)
SIZE = st.sampled_from(["", "!10m", "!1g", "!500"])
URI = st.builds(lambda local, d, size: f"mailto:{local}@{d}{size}", LABEL, DOMAIN, SIZE)
OPTIONAL_TAGS = {
    "sp": st.sampled_from(["none", "quarantine", "reject"]),
    "adkim": st.sampled_from(["r", "s"]),
    "aspf": st.sampled_from(["r", "s"]),
    "pct": st.integers(0, 100).map(str),
    "rua": st.lists(URI, min_size=1, max_size=3).map(",".join),
    "ruf": st.lists(URI, min_size=1, max_size=2).map(",".join),
    "fo": st.lists(st.sampled_from(["0", "1", "d", "s"]), min_size=1, max_size=4, unique=True).map(":".join),
    "rf": st.just("afrf"),
    "ri": st.integers(0, 2**32 - 1).map(str),
}


@settings(max_examples=200)
@given(
    st.sampled_from(["none", "quarantine", "reject"]),
    st.dictionaries(st.sampled_from(sorted(OPTIONAL_TAGS)), st.none()).flatmap(
        lambda chosen: st.fixed_dictionaries({tag: OPTIONAL_TAGS[tag] for tag in chosen})
    ),
    st.booleans(),
)
def test_well_formed_records_parse_without_problems(policy: str, tags: dict[str, str], spaced: bool) -> None:
    separator = "; " if spaced else ";"
    record = separator.join(["v=DMARC1", f"p={policy}", *(f"{k}={v}" for k, v in tags.items())])
    parsed = parse_dmarc(record)
    assert parsed.problems == [], (record, parsed.problems)
    assert parsed.p == policy
    assert parsed.pct == int(tags.get("pct", 100))


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.com.", "example.com"),
        ("Mail.Example.CO.UK", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("x.y.example.com.au", "example.com.au"),
        ("c01.spine.test", "spine.test"),
        ("localhost", "localhost"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_alignment_modes() -> None:
    assert aligned("example.com", "mail.example.com", "r")
    assert not aligned("example.com", "mail.example.com", "s")
    assert aligned("Example.com.", "example.COM", "s")
    assert not aligned("example.com", "example.net", "r")
    assert not aligned("a.co.uk", "b.co.uk", "r")


def test_evaluate_finds_the_record_and_authorizes_external_destinations() -> None:
    query = zone(
        {
            ("_dmarc.example.com", "TXT"): [
                "v=DMARC1; p=reject; rua=mailto:d@example.com,mailto:r@reports.net; ruf=mailto:f@other.org"
            ],
            ("example.com._report._dmarc.reports.net", "TXT"): ["v=DMARC1"],
        }
    )
    report = evaluate_dmarc("example.com", query)
    assert (report.outcome, report.policy, report.inherited) == ("ok", "reject", False)
    assert report.record_name == "_dmarc.example.com"
    by_domain = {d["domain"]: d for d in report.external_destinations}
    assert set(by_domain) == {"reports.net", "other.org"}  # d@example.com is not external
    assert by_domain["reports.net"]["authorized"] is True
    assert by_domain["other.org"]["authorized"] is False
    assert any("other.org does not accept reports" in w for w in report.warnings)
    assert report.evidence["example.com._report._dmarc.other.org TXT"] == ["NXDOMAIN"]


def test_evaluate_falls_back_to_the_organizational_domain() -> None:
    query = zone({("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"]})
    report = evaluate_dmarc("mail.example.com", query)
    assert (report.outcome, report.inherited, report.policy) == ("ok", True, "quarantine")
    assert report.record_name == "_dmarc.example.com"


def test_evaluate_outcomes_missing_multiple_invalid_error() -> None:
    assert evaluate_dmarc("mail.example.com", zone({})).outcome == "missing"
    two = zone({("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    assert evaluate_dmarc("example.com", two).outcome == "multiple"
    bad = zone({("_dmarc.example.com", "TXT"): ["v=DMARC1; p=always"]})
    assert evaluate_dmarc("example.com", bad).outcome == "invalid"
    failing = evaluate_dmarc("mail.example.com", zone({("_dmarc.example.com", "TXT"): "SERVFAIL"}))
    assert failing.outcome == "error" and failing.errors == ["_dmarc.example.com TXT: SERVFAIL"]


def test_unrelated_txt_at_dmarc_is_not_a_record() -> None:
    query = zone({("_dmarc.example.com", "TXT"): ["hello", "v=DMARC1; p=reject; rua=mailto:d@example.com"]})
    report = evaluate_dmarc("example.com", query)
    assert (report.outcome, report.records) == ("ok", ["v=DMARC1; p=reject; rua=mailto:d@example.com"])


def test_authorization_that_cannot_be_asked_is_unknown_not_a_pass() -> None:
    query = zone(
        {
            ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject; rua=mailto:r@reports.net"],
            ("example.com._report._dmarc.reports.net", "TXT"): "SERVFAIL",
        }
    )
    report = evaluate_dmarc("example.com", query)
    assert report.external_destinations[0]["authorized"] is None
    assert report.errors == ["example.com._report._dmarc.reports.net TXT: SERVFAIL"]


def test_lookups_run_concurrently() -> None:
    """Both _dmarc names at once, then four authorizations at once: measured as queries in flight
    together, not as wall time, so a loaded machine cannot fail it and a serial evaluator must."""
    rua = ",".join(f"mailto:r@d{n}.net" for n in range(4))
    slow = zone({("_dmarc.example.com", "TXT"): [f"v=DMARC1; p=reject; rua={rua}"]}, delay=0.05)
    query = InFlight(slow)
    report = evaluate_dmarc("mail.example.com", query)
    assert len(report.external_destinations) == 4
    assert query.most >= 4, f"at most {query.most} lookups were in flight at once: not concurrent"
