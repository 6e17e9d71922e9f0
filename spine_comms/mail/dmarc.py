"""DMARC records (RFC 7489) checked as a domain owner needs them checked.

The record at `_dmarc.<domain>` is found (falling back to the organizational
domain's, section 6.6.3), parsed tag by tag, and every external report
destination is asked whether it accepts reports for the domain (section 7.1:
`<domain>._report._dmarc.<destination>` must hold `v=DMARC1`). A DNS failure
is an `error` outcome, never a pass.

The evaluation is a receiver's (a TXT record that does not start with
v=DMARC1 is discarded, 6.6.3), so message verdicts stay faithful; what a
receiver discards is kept in `DmarcReport.discarded`, because the domain owner
must hear that the record meant for a name is broken rather than see another
name's record reported in its place.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from spine_comms.mail.spf import Query
from spine_comms.protocols.dns import Answer

POLICIES = ("none", "quarantine", "reject")
FAILURE_OPTIONS = ("0", "1", "d", "s")
REPORT_FORMATS = ("afrf",)
KNOWN_TAGS = ("v", "p", "sp", "adkim", "aspf", "pct", "rua", "ruf", "fo", "rf", "ri")
# RFC 7489 7.1 and 7.2: a URI, optionally followed by "!" and a size with a unit.
REPORT_URI = re.compile(r"(?P<uri>[A-Za-z][A-Za-z0-9+.\-]*:[^!\s]+)(?:!(?P<size>[0-9]+[kmgtKMGT]?))?\Z")
MAILTO_ADDRESS = re.compile(r"[^@\s]+@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)\Z")
DMARC_VERSION = re.compile(r"[vV]\s*=\s*DMARC1\s*(?:;|\Z)")
# Meant as DMARC but not a record a receiver uses: v=DMARC1 later than first, lower-case dmarc1,
# leading spaces, v=DMARC1p=... (RFC 7489 6.4: v "MUST be the first tag", its value "MUST match precisely").
DMARC_ATTEMPT = re.compile(r"v\s*=\s*dmarc", re.IGNORECASE)

# Suffixes under which organizations register at the third label. Without the
# Public Suffix List this is a short, deliberately incomplete list: see organizational_domain.
MULTI_LABEL_SUFFIXES = frozenset(
    """
    co.uk org.uk ac.uk gov.uk ltd.uk plc.uk me.uk net.uk sch.uk nhs.uk
    com.au net.au org.au edu.au gov.au asn.au id.au
    co.nz org.nz net.nz ac.nz govt.nz
    co.jp ne.jp or.jp ac.jp go.jp
    com.br net.br org.br gov.br
    com.cn net.cn org.cn gov.cn edu.cn
    co.za org.za gov.za ac.za
    com.mx org.mx gob.mx
    co.in net.in org.in gov.in ac.in
    com.sg edu.sg gov.sg com.hk org.hk com.tw org.tw co.kr or.kr
    com.ar com.tr org.tr com.ua co.il org.il ac.il co.id or.id com.my com.ph com.vn com.pk com.ng
    com.es com.pl com.ru co.at or.at co.th ac.th
    """.split()  # noqa: SIM905 (one suffix list a person can read and extend)
)


@dataclass
class DmarcRecord:
    raw: str
    tags: dict[str, str] = field(default_factory=dict)
    p: str | None = None
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: list[str] = field(default_factory=list)
    ruf: list[str] = field(default_factory=list)
    fo: str = "0"
    rf: str = "afrf"
    ri: int = 86400
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def is_dmarc(txt: str) -> bool:
    """A TXT record is a DMARC record when its first tag is v=DMARC1 (RFC 7489 6.6.3)."""
    return DMARC_VERSION.match(txt) is not None


def looks_like_dmarc(txt: str) -> bool:
    """A TXT record written as DMARC that receivers discard (it is not `is_dmarc`)."""
    return not is_dmarc(txt) and DMARC_ATTEMPT.search(txt) is not None


def _report_uris(tag: str, value: str, record: DmarcRecord) -> list[str]:
    uris = []
    for item in (part.strip() for part in value.split(",")):
        match = REPORT_URI.match(item)
        if not match:
            record.problems.append(f"{tag}: {item!r} is not a report URI (mailto:reports@example.com[!10m])")
            continue
        uri = match.group("uri")
        if not uri.lower().startswith("mailto:"):
            record.warnings.append(f"{tag}: {uri} is not a mailto: URI; receivers need only support mailto")
        elif not MAILTO_ADDRESS.match(uri[len("mailto:") :]):
            record.problems.append(f"{tag}: {uri} does not hold an email address")
            continue
        uris.append(uri)
    return uris


def parse_dmarc(txt: str) -> DmarcRecord:
    """Parse one DMARC record per RFC 7489 section 6.3; never raises.

    Problems (one line each) make the record invalid; warnings do not.
    RFC 7489's grammar puts p right after v; this parser, like checkdmarc and
    RFC 9989, accepts p anywhere and only warns. A missing p is a problem here
    (RFC 7489: REQUIRED), while RFC 9989 and checkdmarc read it as p=none.
    """
    record = DmarcRecord(raw=txt)
    parts = [part.strip() for part in txt.split(";")]
    if parts and parts[-1] == "":
        parts.pop()  # a trailing ";" is allowed
    order: list[str] = []
    for part in parts:
        name, equals, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not equals or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            record.problems.append(f"{part!r} is not a tag=value pair")
            continue
        if name in record.tags:
            record.problems.append(f"the tag {name} appears more than once")
            continue
        record.tags[name] = value
        order.append(name)
    if not order or order[0] != "v" or record.tags.get("v") != "DMARC1":
        if "v" in order and order[0] != "v":
            why = f": v= is tag {order.index('v') + 1}, and RFC 7489 6.4 says it MUST be the first"
        elif "v" in record.tags and record.tags["v"].upper() == "DMARC1":
            why = f": v={record.tags['v']} is not DMARC1 exactly (RFC 7489 6.4: the value must match precisely)"
        else:
            why = ""
        record.problems.append("the record must start with v=DMARC1" + why)
    elif not is_dmarc(txt):
        record.problems.append("the record must start with v=DMARC1, with nothing before it (RFC 7489 6.4)")
    if "p" not in record.tags:
        record.problems.append("the p= tag (policy) is missing; RFC 7489 requires it")
    elif len(order) > 1 and order[1] != "p":
        record.warnings.append("p= is not the second tag; RFC 7489 puts it right after v=DMARC1")
    for name, value in record.tags.items():
        _apply_tag(record, name, value)
    if record.p == "none":
        record.warnings.append("p=none: mail failing DMARC is still delivered (monitoring only)")
    if record.sp == "none" and record.p not in (None, "none"):
        record.warnings.append("sp=none: subdomains are not protected")
    if record.pct < 100 and "pct" in record.tags and not any(p.startswith("pct") for p in record.problems):
        record.warnings.append(f"pct={record.pct}: the policy applies to only {record.pct}% of failing mail")
    if not record.rua:
        record.warnings.append("no rua=: no aggregate reports will be sent to anyone")
    return record


def _apply_tag(record: DmarcRecord, name: str, value: str) -> None:
    low = value.lower()
    if name in ("p", "sp"):
        if low in POLICIES:
            setattr(record, name, low)
        else:
            record.problems.append(f"{name}={value}: the policy must be none, quarantine or reject")
    elif name in ("adkim", "aspf"):
        if low in ("r", "s"):
            setattr(record, name, low)
        else:
            record.problems.append(f"{name}={value}: the alignment mode must be r (relaxed) or s (strict)")
    elif name == "pct":
        if re.fullmatch(r"[0-9]{1,3}", value) and int(value) <= 100:
            record.pct = int(value)
        else:
            record.problems.append(f"pct={value}: must be an integer from 0 to 100")
    elif name in ("rua", "ruf"):
        setattr(record, name, _report_uris(name, value, record))
    elif name == "fo":
        options = [o.strip() for o in low.split(":")]
        bad = [o for o in options if o not in FAILURE_OPTIONS]
        if bad:
            record.problems.append(f"fo={value}: options are 0, 1, d and s, separated by ':'")
        else:
            record.fo = ":".join(options)
    elif name == "rf":
        formats = [f.strip() for f in low.split(":")]
        if any(f not in REPORT_FORMATS for f in formats):
            record.problems.append(f"rf={value}: the only report format is afrf")
        else:
            record.rf = low
    elif name == "ri":
        if re.fullmatch(r"[0-9]{1,10}", value) and int(value) < 2**32:
            record.ri = int(value)
        else:
            record.problems.append(f"ri={value}: must be a number of seconds")
    elif name not in KNOWN_TAGS:
        record.warnings.append(f"the unknown tag {name}= is ignored")


def organizational_domain(domain: str) -> str:
    """The registered domain: the last two labels, or three under a well-known multi-label suffix.

    Limitation: RFC 7489 defines this with the Public Suffix List, which this
    project does not ship. Suffixes missing from MULTI_LABEL_SUFFIXES (many
    country and private suffixes such as github.io) give a domain one label
    too short, so the fallback and the alignment check may then look one
    level too high.
    """
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in MULTI_LABEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(author_domain: str, other_domain: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 3.1): "s" needs the same name, "r" the same organizational domain."""
    author, other = author_domain.lower().rstrip("."), other_domain.lower().rstrip(".")
    if mode == "s":
        return author == other
    return organizational_domain(author) == organizational_domain(other)


@dataclass
class DmarcReport:
    domain: str
    record_name: str
    outcome: str  # ok | missing | multiple | invalid | error
    records: list[str] = field(default_factory=list)
    record: DmarcRecord | None = None
    policy: str | None = None  # what applies to mail from `domain`: sp= when inherited, else p=
    inherited: bool = False
    # Records meant as DMARC that receivers discard (RFC 7489 6.6.3), by record name.
    discarded: dict[str, list[str]] = field(default_factory=dict)
    external_destinations: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_kind: str | None = None  # for outcome error: why the record could not be read (core.outcomes)


def _evidence(answer: Answer) -> list[str]:
    return list(answer.records) if answer.ok else [answer.error or answer.outcome.upper()]


def _destination_domain(uri: str) -> str | None:
    if not uri.lower().startswith("mailto:"):
        return None
    return uri.split("@")[-1].lower().rstrip(".")


def evaluate_dmarc(domain: str, query: Query) -> DmarcReport:
    """Find, parse and check the DMARC record that governs `domain`; never raises for DNS.

    An authorization lookup that fails leaves that destination's `authorized`
    None and adds to `errors` without changing the outcome: the record itself
    was evaluated, and the caller reports the destination as not evaluated.
    """
    domain = domain.lower().rstrip(".")
    org = organizational_domain(domain)
    names = [f"_dmarc.{domain}"] + ([f"_dmarc.{org}"] if org != domain else [])
    # The fallback name is asked at the same time: one round trip instead of two when it is needed.
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        answers = list(pool.map(lambda name: query(name, "TXT"), names))
    report = DmarcReport(domain=domain, record_name=names[0], outcome="ok")
    report.evidence = {f"{name} TXT": _evidence(a) for name, a in zip(names, answers, strict=True)}
    for index, answer in enumerate(answers):
        if answer.outcome == "error":
            report.outcome, report.errors = "error", [f"{names[index]} TXT: {answer.error}"]
            report.error_kind = str(answer.error_kind) if answer.error_kind else None
            return report
        found = [r for r in answer.records if is_dmarc(r)] if answer.ok else []
        broken = [r for r in answer.records if looks_like_dmarc(r)] if answer.ok else []
        if broken:
            report.discarded[names[index]] = broken
        if found:
            report.record_name, report.records, report.inherited = names[index], found, index == 1
            break
    else:
        report.outcome = "missing"
        where = " or ".join(names)
        report.problems.append(f"no DMARC record at {where}")
        return report
    if len(report.records) > 1:
        report.outcome = "multiple"
        report.problems.append(f"{report.record_name} has {len(report.records)} DMARC records (RFC 7489 6.6.3)")
        return report
    record = report.record = parse_dmarc(report.records[0])
    report.problems, report.warnings = list(record.problems), list(record.warnings)
    report.policy = (record.sp or record.p) if report.inherited else record.p
    if report.inherited:
        report.warnings.append(f"no record at _dmarc.{domain}: the policy of {org} applies")
    policy_domain = report.record_name.removeprefix("_dmarc.")
    report.external_destinations = _authorizations(policy_domain, record, query, report)
    if report.problems:
        report.outcome = "invalid"
    return report


def _authorizations(policy_domain: str, record: DmarcRecord, query: Query, report: DmarcReport) -> list[dict]:
    """Ask every external report destination, concurrently, whether it takes reports for us (7.1)."""
    external = {}
    for uri in record.rua + record.ruf:
        dest = _destination_domain(uri)
        if dest and organizational_domain(dest) != organizational_domain(policy_domain):
            external.setdefault(uri, dest)
    if not external:
        return []
    names = {uri: f"{policy_domain}._report._dmarc.{dest}" for uri, dest in external.items()}
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        answers = dict(zip(names, pool.map(lambda name: query(name, "TXT"), names.values()), strict=True))
    out = []
    for uri, dest in external.items():
        answer, name = answers[uri], names[uri]
        report.evidence[f"{name} TXT"] = _evidence(answer)
        authorized = None if answer.outcome == "error" else any(is_dmarc(r) for r in answer.records)
        if authorized is None:
            report.errors.append(f"{name} TXT: {answer.error}")
        elif not authorized:
            report.warnings.append(f"{uri}: {dest} does not accept reports for {policy_domain} (no v=DMARC1 at {name})")
        out.append(
            {"uri": uri, "domain": dest, "authorized": authorized, "record_name": name, "records": list(answer.records)}
        )
    return out
