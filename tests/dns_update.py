"""Change the lab's zone mid-test by RFC 2136 dynamic update (Knot allows it from loopback).

Tests break DNS on purpose (a wrong DKIM key, a second SPF record, a missing
DMARC record) and put it back; `replaced` restores the old records even when
the test fails, so one test's damage never leaks into the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update

from spine_comms.protocols.dns import Resolver

ZONES = ("spine.test", "127.in-addr.arpa")


def _zone(name: str) -> str:
    name = name.rstrip(".").lower()
    for zone in ZONES:
        if name == zone or name.endswith("." + zone):
            return zone
    raise AssertionError(f"{name} is in none of the lab's zones {ZONES}")


def _txt_rdata(value: str) -> str:
    """A TXT value as zone-file rdata: 255-byte strings, quotes and backslashes escaped."""
    raw = value.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def set_records(lab: dict, name: str, rdtype: str, values: Sequence[str], ttl: int = 60) -> None:
    """Replace every `rdtype` record at `name` (absolute, in a lab zone) with `values`; none deletes them."""
    update = dns.update.UpdateMessage(_zone(name))
    absolute = dns.name.from_text(name)
    update.delete(absolute, rdtype)
    for value in values:
        update.add(absolute, ttl, rdtype, _txt_rdata(value) if rdtype.upper() == "TXT" else value)
    reply = dns.query.tcp(update, "127.0.0.1", port=lab["ports"]["dns"], timeout=5)
    if reply.rcode() != dns.rcode.NOERROR:
        raise AssertionError(f"dynamic update of {name} {rdtype} refused: {dns.rcode.to_text(reply.rcode())}")


def current(lab: dict, name: str, rdtype: str) -> list[str]:
    answer = Resolver("127.0.0.1", lab["ports"]["dns"]).query(name, rdtype)
    assert answer.outcome != "error", answer
    return list(answer.records)


@contextmanager
def replaced(lab: dict, name: str, rdtype: str, values: Sequence[str]) -> Iterator[None]:
    """Serve `values` at name/rdtype inside the block, then put the old records back."""
    before = current(lab, name, rdtype)
    if rdtype.upper() == "MX":
        before = [f"{r.split()[0]} {r.split()[1]}." for r in before]
    elif rdtype.upper() in ("CNAME", "PTR", "NS"):
        before = [f"{r}." for r in before]
    set_records(lab, name, rdtype, values)
    try:
        yield
    finally:
        set_records(lab, name, rdtype, before)
