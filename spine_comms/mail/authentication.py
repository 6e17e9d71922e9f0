"""Does a received message authenticate? DKIM verified here, DMARC computed here.

Nothing is taken on trust from the message: every DKIM-Signature is verified
locally with dkimpy against keys fetched through the given DNS query function
(so the contract's resolver is used), and DMARC is computed locally from the
header From, the passing signatures' d= and the published record.

Authentication-Results headers are believed only when the receiver wrote them
(mail.authresults.sort_by_trust: the exact authserv-id, in the receiver's block
at the top); any other is reported and ignored, since a sender can write
whatever it likes. The one fact taken from a trusted header is the SPF result
(SPF depends on the connecting IP, which only the receiver saw).
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import TYPE_CHECKING

from spine_comms.mail.authresults import TrustSorting, Untrusted, header_fields, sort_by_trust

if TYPE_CHECKING:  # dnspython (and its DNS-over-HTTPS stack) is a tenth of a second to import: the
    # inbox's A-R rules use this module without a DNS query, and every poll would pay it at startup
    from spine_comms.protocols.dns import Answer

Query = Callable[[str, str], "Answer"]

PASS, FAIL, NONE, TEMPERROR, PERMERROR = "pass", "fail", "none", "temperror", "permerror"


@dataclass
class SignatureResult:
    index: int  # 0 is the topmost DKIM-Signature
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    result: str  # pass | fail | permerror | temperror
    reason: str  # why, in a sentence
    identity: str | None = None  # i=
    signed_headers: list[str] = field(default_factory=list)  # h=
    key_name: str = ""
    key_record: str | None = None
    key_bits: int | None = None
    header: str = ""  # the DKIM-Signature value as received
    dns: dict | None = None

    @property
    def subject(self) -> str:
        return f"d={self.domain} s={self.selector}"

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "d": self.domain,
            "s": self.selector,
            "a": self.algorithm,
            "i": self.identity,
            "h": self.signed_headers,
            "result": self.result,
            "reason": self.reason,
            "key_name": self.key_name,
            "key_record": self.key_record,
            "key_bits": self.key_bits,
            "header": self.header,
            "dns": self.dns,
        }


@dataclass
class DmarcVerdict:
    result: str  # pass | fail | none | temperror | permerror
    author_domain: str | None
    reasons: list[str]
    policy: str | None = None  # the policy that applies (p=, or sp= for a subdomain)
    record_name: str | None = None
    record: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    dkim_aligned: list[str] = field(default_factory=list)  # passing d= that align
    dkim_unaligned: list[str] = field(default_factory=list)  # passing d= that do not
    spf_domain: str | None = None  # from a trusted spf=pass smtp.mailfrom
    spf_aligned: bool | None = None

    def to_dict(self) -> dict:
        return {
            "result": self.result,
            "author_domain": self.author_domain,
            "policy": self.policy,
            "record_name": self.record_name,
            "record": self.record,
            "adkim": self.adkim,
            "aspf": self.aspf,
            "dkim_aligned": self.dkim_aligned,
            "dkim_unaligned": self.dkim_unaligned,
            "spf_domain": self.spf_domain,
            "spf_aligned": self.spf_aligned,
            "reasons": self.reasons,
        }


@dataclass
class Evaluation:
    from_domain: str | None
    signatures: list[SignatureResult]
    dmarc: DmarcVerdict
    trusted_authserv_id: str | None
    sorting: TrustSorting

    @property
    def trusted(self):
        return self.sorting.trusted

    @property
    def untrusted(self) -> list[Untrusted]:
        return self.sorting.untrusted

    def passing_aligned(self) -> list[SignatureResult]:
        aligned = set(self.dmarc.dkim_aligned)
        return [s for s in self.signatures if s.result == PASS and s.domain in aligned]

    def trusted_results(self, method: str) -> list[str]:
        """The receiver's results for one method (its topmost header that carries it)."""
        return [r.result for r in self.sorting.method(method)]

    def to_dict(self) -> dict:
        return {
            "from_domain": self.from_domain,
            "signatures": [s.to_dict() for s in self.signatures],
            "dmarc": self.dmarc.to_dict(),
            "trusted_authserv_id": self.trusted_authserv_id,
            "authentication_results": self.sorting.to_dict(),
        }


# The message ---------------------------------------------------------------------------------


def _headers(raw: bytes):
    # compat32 keeps header values as received (folded, undecoded): what DKIM signed.
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def author_domain(from_values: list[str]) -> tuple[str | None, str | None]:
    """The RFC 5322.From domain, or (None, why) when DMARC cannot name one (RFC 7489 6.6.1)."""
    if len(from_values) != 1:
        return None, f"the message has {len(from_values)} From headers (DMARC needs exactly one)"
    addresses = [addr for _, addr in getaddresses(from_values) if addr]
    if len(addresses) != 1:
        return None, f"From holds {len(addresses)} addresses (DMARC needs exactly one)"
    local, at, domain = addresses[0].rpartition("@")
    if not at or not local or not domain or "." not in domain:
        return None, f"From address {addresses[0]!r} has no usable domain"
    return domain.rstrip(".").lower(), None


# DKIM ----------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    """dkimpy reports some failures only through its logger; keep them as the reason."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _tags(value: str) -> dict[str, str]:
    tags = {}
    for part in value.split(";"):
        name, eq, text = part.partition("=")
        if eq:
            tags[name.strip().lower()] = "".join(text.split())
    return tags


def _key_bits(record: str) -> int | None:
    tags = _tags(record)
    if tags.get("k", "rsa") != "rsa" or not tags.get("p"):
        return 256 if tags.get("k") == "ed25519" else None
    try:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        return load_der_public_key(base64.b64decode(tags["p"])).key_size
    except Exception:  # an unreadable key: dkimpy says why when it tries it
        return None


def verify_signatures(raw: bytes, query: Query) -> list[SignatureResult]:
    """Every DKIM-Signature, topmost first, each verified on its own with its reason."""
    import dkim

    values = _headers(raw).get_all("DKIM-Signature") or []
    out = []
    for index, value in enumerate(values):
        out.append(_verify_one(dkim, raw, index, str(value), query))
    return out


def _verify_one(dkim, raw: bytes, index: int, value: str, query: Query) -> SignatureResult:
    tags = _tags(value)
    found = SignatureResult(
        index=index,
        domain=tags.get("d", "").rstrip(".").lower(),
        selector=tags.get("s", ""),
        algorithm=tags.get("a", ""),
        result=PERMERROR,
        reason="",
        identity=tags.get("i"),
        signed_headers=[h.strip().lower() for h in tags.get("h", "").split(":") if h.strip()],
        header=" ".join(value.split()),
    )
    missing = [t for t in ("v", "a", "b", "bh", "d", "h", "s") if not tags.get(t)]
    if missing:
        found.reason = f"signature lacks required tag(s) {', '.join(missing)}="
        return found
    found.key_name = f"{found.selector}._domainkey.{found.domain}"
    answer = query(found.key_name, "TXT")
    found.dns = answer.evidence()
    if answer.outcome == "error":
        found.result, found.reason = TEMPERROR, f"key lookup failed: {answer.error}"
        return found
    if answer.missing:
        found.reason = f"key not found in DNS ({found.key_name} {answer.outcome})"
        return found
    records = [r for r in answer.records if "p=" in r]
    if not records:
        found.reason = f"no DKIM key record at {found.key_name} (TXT without p=)"
        return found
    if len(records) > 1:
        found.reason = f"{len(records)} key records at {found.key_name}; a selector must publish one"
        return found
    found.key_record = records[0]
    from spine_comms.mail.dkim_record import key_refuses, parse_dkim_record

    # The same reading of the record as dkim.check, then what it allows this signature: dkimpy
    # alone would let an h=sha1 or t=s key verify what a receiver refuses.
    refused = key_refuses(parse_dkim_record(records[0]), found.algorithm, found.domain, found.identity)
    if refused:
        found.reason = refused
        return found
    found.key_bits = _key_bits(records[0])

    collected = _Collect()
    logger = logging.getLogger(f"spine_comms.dkim.{id(collected)}")
    logger.propagate = False
    logger.addHandler(collected)
    key = records[0].encode("utf-8", "replace")

    def dnsfunc(name, timeout=5):  # the record we already fetched: one lookup, one answer to report
        return key

    try:
        verified = dkim.DKIM(raw, logger=logger, minkey=1024).verify(idx=index, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:
        text = str(exc)
        if text.startswith("body hash mismatch"):
            found.result, found.reason = FAIL, "body hash mismatch: the body changed after signing"
        else:
            found.reason = f"signature invalid: {text}"
        return found
    except dkim.KeyFormatError as exc:
        found.reason = f"key unusable: {exc}"
        return found
    except dkim.DKIMException as exc:
        found.reason = f"{exc.__class__.__name__}: {exc}"
        return found
    except Exception as exc:  # dkimpy on hostile input: report, never crash the evaluation
        found.reason = f"verifier error: {exc.__class__.__name__}: {exc}"
        return found
    finally:
        logger.removeHandler(collected)
    if verified:
        found.result, found.reason = PASS, "signature verified"
    elif collected.messages:
        found.reason = f"key unusable: {collected.messages[-1][:200]}"
    else:
        found.result = FAIL
        found.reason = (
            f"signature did not verify with the key published at {found.key_name}: the key does not match the "
            "signing key, or a signed header changed"
        )
    return found


# DMARC ---------------------------------------------------------------------------------------


def dmarc_verdict(
    from_domain: str | None,
    passing_dkim_domains: list[str],
    spf_domain: str | None,
    query: Query,
    *,
    from_problem: str | None = None,
) -> DmarcVerdict:
    """RFC 7489: pass when a passing DKIM d= or the SPF-authenticated domain aligns with From."""
    from spine_comms.mail import dmarc

    if from_domain is None:
        return DmarcVerdict(PERMERROR, None, [from_problem or "no From domain"])
    report = dmarc.evaluate_dmarc(from_domain, query)
    verdict = DmarcVerdict(NONE, from_domain, [], record_name=report.record_name, policy=report.policy)
    if report.outcome == "error":
        verdict.result = TEMPERROR
        verdict.reasons.append("DMARC record lookup failed: " + "; ".join(report.errors or ["DNS error"]))
        return verdict
    if report.outcome == "missing":
        verdict.reasons.append(f"no DMARC record for {from_domain} or its organizational domain")
        return verdict
    record = report.record
    verdict.record = record.raw if record else None
    # A record with a bad optional tag (rua, fo ...) still has a policy: only a missing p= voids it.
    if report.outcome == "multiple" or record is None or not record.p:
        verdict.result = PERMERROR
        verdict.reasons.append(f"DMARC record {report.outcome}: " + "; ".join(report.problems or ["no p="]))
        return verdict
    if report.problems:
        verdict.reasons.append("the DMARC record has problems: " + "; ".join(report.problems))
    verdict.adkim, verdict.aspf = record.adkim or "r", record.aspf or "r"
    for domain in dict.fromkeys(passing_dkim_domains):
        if dmarc.aligned(from_domain, domain, verdict.adkim):
            verdict.dkim_aligned.append(domain)
        else:
            verdict.dkim_unaligned.append(domain)
    mode = {"r": "relaxed", "s": "strict"}
    dkim_mode, spf_mode = mode.get(verdict.adkim, verdict.adkim), mode.get(verdict.aspf, verdict.aspf)
    if verdict.dkim_aligned:
        verdict.reasons.append(
            f"DKIM d={verdict.dkim_aligned[0]} passes and aligns with From {from_domain} ({dkim_mode})"
        )
    elif verdict.dkim_unaligned:
        verdict.reasons.append(
            f"DKIM passes only for d={', '.join(verdict.dkim_unaligned)}, not aligned with From {from_domain} "
            f"({dkim_mode})"
        )
    else:
        verdict.reasons.append("no passing DKIM signature")
    verdict.spf_domain = spf_domain
    if spf_domain:
        verdict.spf_aligned = dmarc.aligned(from_domain, spf_domain, verdict.aspf)
        verdict.reasons.append(
            f"SPF passes for {spf_domain}, "
            + ("aligned" if verdict.spf_aligned else "not aligned")
            + f" with From {from_domain} ({spf_mode})"
        )
    else:
        verdict.reasons.append("no trusted SPF pass to align")
    verdict.result = PASS if verdict.dkim_aligned or verdict.spf_aligned else FAIL
    return verdict


def trusted_spf_domain(sorting: TrustSorting) -> str | None:
    """The domain of the receiver's `spf=pass smtp.mailfrom=...` (the HELO identity does not count for DMARC).

    Only the receiver's own SPF result counts: the topmost trusted header that carries spf= (see
    TrustSorting.method), so a second, forged `spf=pass` can never add to it."""
    for result in sorting.method("spf"):
        mailfrom = result.prop("smtp.mailfrom")
        if result.result == PASS and mailfrom and mailfrom != "<>":
            domain = mailfrom.rpartition("@")[2].strip("<>").rstrip(".").lower()
            if domain:
                return domain
    return None


def evaluate_message(raw: bytes, *, query: Query, trusted_authserv_id: str | None) -> Evaluation:
    """Verify every signature, compute DMARC, sort Authentication-Results into the receiver's and the rest."""
    message = _headers(raw)
    from_domain, from_problem = author_domain([str(v) for v in message.get_all("From") or []])
    sorting = sort_by_trust(header_fields(raw), trusted_authserv_id)
    signatures = verify_signatures(raw, query)
    passing = [s.domain for s in signatures if s.result == PASS]
    verdict = dmarc_verdict(from_domain, passing, trusted_spf_domain(sorting), query, from_problem=from_problem)
    return Evaluation(from_domain, signatures, verdict, trusted_authserv_id, sorting)


@dataclass
class ReceiverVerdict:
    """What the receiving server vouches for, from its own Authentication-Results only."""

    dmarc: str | None  # its dmarc= for this message's From domain; None when it gave none that applies
    results: dict[str, list[str]]  # method -> results, from the receiver's headers
    summary: str  # one line for people and items: method=result pairs only, never properties


def receiver_verdict(
    sorting: TrustSorting, from_domain: str | None, from_problem: str | None = None
) -> ReceiverVerdict:
    """The receiver's word, or "not verified" when it gave none: never a pass from anyone else.

    A dmarc= result counts only for this message's author domain: its header.from must name the
    From domain (case-insensitive, as DNS names are), and a message whose From cannot be named
    (two From fields: the receiver may have judged the other one) has no DMARC result to take."""
    ignored = _ignored(sorting)
    if not sorting.trusted_id:
        return ReceiverVerdict(None, {}, f"not verified: no trusted authserv-id is configured{ignored}")
    if not sorting.trusted:
        return ReceiverVerdict(None, {}, f"not verified: {sorting.note}{ignored}")
    methods = dict.fromkeys(["dkim", "spf", "dmarc"] + [r.method for ar in sorting.trusted for r in ar.results])
    results = {m: [r.result for r in sorting.method(m)] for m in methods if sorting.method(m)}
    notes = []
    dmarc_results = []
    for r in sorting.method("dmarc"):
        claimed = (r.prop("header.from") or "").strip().rstrip(".").lower()
        if from_domain is None:
            notes.append(f"its dmarc={r.result} not taken: {from_problem or 'the From domain cannot be named'}")
        elif claimed and claimed != from_domain:
            notes.append(f"its dmarc={r.result} is for header.from={claimed}, not the From domain {from_domain}")
        else:
            dmarc_results.append(r.result)
    # Several results for this From: a fail anywhere counts.
    dmarc = (FAIL if FAIL in dmarc_results else dmarc_results[0]) if dmarc_results else None
    shown = " ".join(f"{m}={','.join(dict.fromkeys(v))}" for m, v in results.items()) or "no results"
    note = "; " + "; ".join(notes) if notes else ""
    return ReceiverVerdict(dmarc, results, f"{sorting.trusted_id} says {shown}{note}{ignored}")


def _ignored(sorting: TrustSorting) -> str:
    if not sorting.untrusted:
        return ""
    reasons = "; ".join(dict.fromkeys(u.why for u in sorting.untrusted))
    return f"; ignored {len(sorting.untrusted)} untrusted Authentication-Results ({reasons})"
