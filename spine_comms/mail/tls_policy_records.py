"""The two SMTP TLS records in DNS, which share one grammar: MTA-STS's `_mta-sts` TXT (RFC 8461 3.1)
and TLS-RPT's `_smtp._tls` TXT (RFC 8460 3).

Both are `v=<version>` first, exactly as written (%s: case matters), then `name=value` fields
separated by `;` with optional spaces around it. Senders discard a TXT record that does not begin
with the version, and treat the domain as having no record when not exactly one is left or the one
left is syntactically invalid: so every problem here is what makes senders ignore the record.
Parsing never raises; problems make the record invalid, warnings do not.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

STS_VERSION = "v=STSv1"
TLSRPT_VERSION = "v=TLSRPTv1"
# sts-ext-name / tlsrpt-ext-name and their values: no "=", ";", space or control characters.
EXTENSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}\Z")
EXTENSION_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")
FIELD_DELIMITER = re.compile(r"[ \t]*;[ \t]*")
STS_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
MAILTO_ADDRESS = re.compile(r"[^@\s,!]+@[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?\Z")


@dataclass
class TagRecord:
    raw: str
    tags: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def starts_with_version(txt: str, version: str) -> bool:
    """The record selection rule: records that do not begin with the version (and a delimiter) are discarded."""
    return re.match(re.escape(version) + r"[ \t]*(;|\Z)", txt) is not None


def meant_as(txt: str, version: str) -> bool:
    """A TXT record written as this kind of record that senders discard (case, order, leading spaces)."""
    return not starts_with_version(txt, version) and version.lower() in txt.lower()


def _parse(txt: str, version: str, rfc: str) -> TagRecord:
    record = TagRecord(raw=txt)
    parts = FIELD_DELIMITER.split(txt)
    if parts[0] != version:
        record.problems.append(f"the record must start with {version}, exactly (case matters; {rfc})")
        if not starts_with_version(txt, version):
            # Not the version at all: reading its fields would only add noise.
            return record
    if re.match(re.escape(version) + r"[ \t]+;", txt):
        record.warnings.append(
            f"a space before the first ';': the grammar allows it, but {rfc} tells senders to discard "
            f"records that do not begin with '{version};'"
        )
    fields = parts[1:]
    if fields and fields[-1] == "":
        fields.pop()  # one trailing delimiter is allowed
    for item in fields:
        name, equals, value = item.partition("=")
        if not equals or not EXTENSION_NAME.match(name):
            record.problems.append(f"{item!r} is not a name=value field")
        elif name in record.tags:
            record.problems.append(f"the field {name}= appears more than once")
        else:
            record.tags[name] = value
    return record


def _extension_values(record: TagRecord, known: tuple[str, ...]) -> None:
    for name, value in record.tags.items():
        if name in known:
            continue
        if not EXTENSION_VALUE.match(value):
            record.problems.append(f"{name}={value!r}: a field value has no spaces, ';', '=' or control characters")
        else:
            record.warnings.append(f"the unknown field {name}= is ignored")


def parse_sts_record(txt: str) -> TagRecord:
    """`v=STSv1; id=<1-32 letters and digits>` (RFC 8461 3.1)."""
    record = _parse(txt, STS_VERSION, "RFC 8461 3.1")
    if not starts_with_version(txt, STS_VERSION):
        return record
    if "id" not in record.tags:
        record.problems.append("no id= field; RFC 8461 3.1 requires one")
    elif not STS_ID.match(record.tags["id"]):
        record.problems.append(f"id={record.tags['id']!r}: the policy id is 1 to 32 letters and digits (RFC 8461 3.1)")
    _extension_values(record, ("id",))
    return record


def parse_tlsrpt_record(txt: str) -> TagRecord:
    """`v=TLSRPTv1; rua=<mailto: or https: URI>[,<URI>...]` (RFC 8460 3)."""
    record = _parse(txt, TLSRPT_VERSION, "RFC 8460 3")
    if not starts_with_version(txt, TLSRPT_VERSION):
        return record
    if "rua" not in record.tags:
        record.problems.append("no rua= field; RFC 8460 3 requires one")
    else:
        record.problems.extend(report_uri_problems(record.tags["rua"]))
    _extension_values(record, ("rua",))
    return record


def report_uris(value: str) -> list[str]:
    return [uri for uri in re.split(r"[ \t]*,[ \t]*", value.strip(" \t"))]


def report_uri_problems(value: str) -> list[str]:
    """RFC 8460 3: rua is one or more URIs, comma-separated; only mailto: and https: are defined."""
    problems = []
    for uri in report_uris(value):
        scheme, colon, rest = uri.partition(":")
        if not uri:
            problems.append("rua: an empty URI (a stray ',')")
        elif not colon or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
            problems.append(f"rua: {uri!r} is not a URI; write mailto:reports@example.com or https://...")
        elif "!" in uri or re.search(r"[\s\x00-\x1f\x7f]", uri):
            problems.append(f"rua: {uri!r}: '!', spaces and control characters must be percent-encoded (RFC 8460 3)")
        elif scheme.lower() == "mailto":
            address = urllib.parse.unquote(rest.split("?", 1)[0])
            if not MAILTO_ADDRESS.match(address):
                problems.append(f"rua: {uri!r} does not hold one email address")
        elif scheme.lower() == "https":
            parts = urllib.parse.urlsplit(uri)
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                problems.append(f"rua: {uri!r} has a port that is not a number")
                continue
            if not parts.hostname or not rest.startswith("//"):
                problems.append(f"rua: {uri!r} names no host")
        else:
            problems.append(f"rua: {uri!r}: only mailto: and https: URIs receive TLS reports (RFC 8460 3)")
    return problems
