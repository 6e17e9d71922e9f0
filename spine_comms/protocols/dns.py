"""DNS lookups with honest outcomes: every answer says ok, nxdomain, nodata or error.

The callers turn outcomes into check statuses: a missing required record is a
failure, while SERVFAIL, a timeout or a refusal means the record could not be
evaluated, which must never read as a pass. Answers are cached per Resolver and
the cache is thread-safe, so concurrent checks that need the same name (SPF
includes, the MX host) ask once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from spine_comms.core.outcomes import FailureKind

OK, NXDOMAIN, NODATA, ERROR = "ok", "nxdomain", "nodata", "error"


@dataclass(frozen=True)
class Answer:
    name: str  # as asked, lower case, without the trailing dot
    rdtype: str
    outcome: str  # ok | nxdomain | nodata | error
    records: tuple[str, ...] = ()
    error: str = ""  # for outcome error: SERVFAIL, REFUSED, timeout ...
    elapsed_ms: int = 0
    error_kind: FailureKind | None = None  # for outcome error, in the outcome vocabulary

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def missing(self) -> bool:
        """The name or the record type does not exist: a definite answer, unlike error."""
        return self.outcome in (NXDOMAIN, NODATA)

    def evidence(self) -> dict:
        out: dict = {"name": self.name, "type": self.rdtype, "outcome": self.outcome, "records": list(self.records)}
        if self.error:
            out["error"] = self.error
        if self.error_kind:
            out["kind"] = str(self.error_kind)
        return out


def _text(rdata, rdtype: str) -> str:
    """One record as text: TXT strings joined (RFC 7208 3.3), names without the trailing dot."""
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True).lower()}"
    if rdtype in ("PTR", "CNAME", "NS"):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()


@dataclass
class Resolver:
    """Ask one server (host and port, e.g. the lab's Knot) or, with server None, the system's resolvers."""

    server: str | None = None
    port: int = 53
    timeout: float = 3.0
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> str:
        return f"{self.server}:{self.port}" if self.server else "system resolver"

    def query(self, name: str, rdtype: str) -> Answer:
        key = (name.rstrip(".").lower(), rdtype.upper())
        with self._lock:
            event = self._cache.get(key)
            if event is None:
                # The first asker resolves; others wait on the same answer.
                event = self._cache[key] = [threading.Event(), None]
                mine = True
            else:
                mine = False
        if mine:
            event[1] = self._resolve(*key)
            event[0].set()
        else:
            event[0].wait()
        return event[1]

    def ptr(self, address: str) -> Answer:
        return self.query(dns.reversename.from_address(address).to_text(omit_final_dot=True), "PTR")

    def _resolve(self, name: str, rdtype: str) -> Answer:
        started = time.monotonic()

        def done(outcome: str, records=(), error: str = "", kind: FailureKind | None = None) -> Answer:
            ms = int((time.monotonic() - started) * 1000)
            if outcome == ERROR and kind is None:
                kind = FailureKind.PROTOCOL_ERROR  # the server answered, with an error (SERVFAIL, REFUSED ...)
            return Answer(name, rdtype, outcome, tuple(records), error, ms, kind)

        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            return done(ERROR, error=f"not a DNS name: {exc}")
        if self.server is None:
            return self._system(qname, rdtype, done)
        # EDNS with a 1232-byte payload (the DNS flag day size): a 2048-bit DKIM key fits in
        # one UDP answer instead of a truncated one followed by a TCP retry.
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
        query.flags |= dns.flags.RD
        try:
            reply = dns.query.udp(query, self.server, port=self.port, timeout=self.timeout)
            if reply.flags & dns.flags.TC:
                reply = dns.query.tcp(query, self.server, port=self.port, timeout=self.timeout)
        except dns.exception.Timeout:
            shown = f"timeout after {self.timeout:g} s from {self.describe()}"
            return done(ERROR, error=shown, kind=FailureKind.TIMEOUT)
        except OSError as exc:
            return done(ERROR, error=f"{self.describe()}: {exc}", kind=FailureKind.UNREACHABLE)
        except dns.exception.DNSException as exc:
            return done(ERROR, error=f"{self.describe()}: {exc}")
        rcode = reply.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return done(NXDOMAIN)
        if rcode != dns.rcode.NOERROR:
            return done(ERROR, error=f"{dns.rcode.to_text(rcode)} from {self.describe()}")
        wanted = dns.rdatatype.from_text(rdtype)
        records = [_text(rd, rdtype) for rrset in reply.answer if rrset.rdtype == wanted for rd in rrset]
        return done(OK, records) if records else done(NODATA)

    def _system(self, qname, rdtype: str, done) -> Answer:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = self.timeout
        try:
            answer = resolver.resolve(qname, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return done(NXDOMAIN)
        except dns.resolver.LifetimeTimeout:
            return done(ERROR, error=f"timeout after {self.timeout:g} s from the system resolver",
                        kind=FailureKind.TIMEOUT)  # fmt: skip
        except dns.resolver.NoNameservers as exc:
            return done(ERROR, error=f"no server answered: {exc}", kind=FailureKind.UNREACHABLE)
        except dns.exception.DNSException as exc:
            return done(ERROR, error=str(exc))
        records = [_text(rd, rdtype) for rd in answer.rrset] if answer.rrset else []
        return done(OK, records) if records else done(NODATA)
