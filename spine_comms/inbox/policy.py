"""The decide stage: the contract's policy applied to one message, which lane it goes to, and why.

Lanes: `queued` (an agent reads it), `parked` (quarantined with its reason, for a
person), `dropped` (recorded in the state directory only). The decisions:

- over policy.max_message_bytes: parked (the body was never fetched);
- sender on policy.senders.deny: dropped (the operator said so); not on a non-empty allow list: parked;
  on it, but the trusted receiver judged the message (wrote its own A-R) and did not authenticate
  the From (any dmarc= but pass, or none it can be given, as with two From addresses): parked too,
  since an allow entry vouches for an identity and a From can be forged
  (policy.senders.allow_unauthenticated: true lets it through);
- DMARC fail: policy.dmarc_fail, judged ONLY from the Authentication-Results the receiving
  server wrote (mail.authresults.sort_by_trust: the exact policy.trusted_authserv_id, in the
  receiver's block at the top of the raw message); any other A-R header is the sender's claim,
  reported as untrusted and ignored. With none from the receiver the message is "not verified".

- the rendered item would trip the mailroom watcher's secret scan: policy.secret_match (`screen`).

Pure functions over the parsed message; nothing here touches the network or disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from spine_comms.contracts.inbox import Policy, Senders
from spine_comms.mail.authentication import author_domain, receiver_verdict
from spine_comms.mail.authresults import header_fields, sort_by_trust

QUEUED, PARKED, DROPPED = "queued", "parked", "dropped"
_RANK = {QUEUED: 0, PARKED: 1, DROPPED: 2}


@dataclass
class Verdict:
    lane: str = QUEUED
    reasons: list[str] = field(default_factory=list)
    auth_summary: str = ""
    dmarc: str | None = None  # the trusted dmarc= result, when there is one

    def send_to(self, lane: str, reason: str) -> None:
        """Keep the strictest lane; every reason is kept."""
        if _RANK[lane] > _RANK[self.lane]:
            self.lane = lane
        self.reasons.append(reason)


def _matches(address: str, entries: list[str]) -> str | None:
    address = address.strip().lower()
    domain = address.rpartition("@")[2]
    for entry in entries:
        wanted = entry.strip().lower()
        if not wanted:
            continue
        if wanted.startswith("@") and domain == wanted[1:]:
            return entry
        if "@" not in wanted and domain == wanted:
            return entry
        if wanted == address:
            return entry
    return None


def sender_rule(addresses: list[str], senders: Senders) -> tuple[str, str] | None:
    """(lane, reason) when the sender list decides, else None. Deny wins over allow."""
    for address in addresses:
        hit = _matches(address, senders.deny)
        if hit:
            return DROPPED, f"sender {address} is denied by policy.senders.deny ({hit})"
    if senders.allow:
        if not addresses:
            return PARKED, "no From address, and policy.senders.allow admits only listed senders"
        if not all(_matches(a, senders.allow) for a in addresses):
            shown = ", ".join(addresses)
            return PARKED, f"sender {shown} is not on policy.senders.allow"
    return None


class Authentication(NamedTuple):
    dmarc: str | None  # the receiver's dmarc= result for this message's From, or None
    summary: str  # one line, safe for the item and the watcher
    judged: bool  # the receiver wrote its own Authentication-Results (a port-25 delivery), whatever they say


def authentication(raw: bytes | None, trusted_authserv_id: str | None) -> Authentication:
    """What the receiving server said about the message's authentication.

    Read from the raw message, since which header the receiver wrote is told by position. Only
    method=result pairs go in the summary: a property such as smtp.auth=<login> would both leak a
    login and trip the watcher's secret pattern."""
    if raw is None:
        return Authentication(None, "not verified: the message was not read", False)
    fields = header_fields(raw)
    sorting = sort_by_trust(fields, trusted_authserv_id)
    if not trusted_authserv_id:
        ignored = f"; ignored {len(sorting.untrusted)} Authentication-Results" if sorting.untrusted else ""
        return Authentication(None, f"not verified (no policy.trusted_authserv_id){ignored}", False)
    from_domain, from_problem = author_domain([v for n, v in fields if n.strip().lower() == "from"])
    verdict = receiver_verdict(sorting, from_domain, from_problem)
    return Authentication(verdict.dmarc, verdict.summary, bool(sorting.trusted))


def judge(message, policy: Policy, raw: bytes | None) -> Verdict:
    """The lane for a parsed message (spine_comms.mail.message.NormalizedMessage) and its raw bytes."""
    verdict = Verdict()
    addresses = [a.address for a in (message.from_ or []) if getattr(a, "address", None)]
    rule = sender_rule(addresses, policy.senders)
    if rule:
        verdict.send_to(*rule)
    said = authentication(raw, policy.trusted_authserv_id)
    verdict.dmarc, verdict.auth_summary = said.dmarc, said.summary
    vouched = policy.senders.allow and rule is None  # admitted by the allow list, on its From alone
    if vouched and said.judged and said.dmarc != "pass" and not policy.senders.allow_unauthenticated:
        found = f"dmarc={said.dmarc}" if said.dmarc else "no DMARC result it can be given"
        verdict.send_to(PARKED, f"sender {', '.join(addresses)} is on policy.senders.allow, but "
                        f"{policy.trusted_authserv_id} judged the message and its From has {found}: it is not "
                        "authenticated (policy.senders.allow_unauthenticated: false)")  # fmt: skip
    if verdict.dmarc == "fail":
        action = policy.dmarc_fail
        lane = {"enqueue": QUEUED, "quarantine": PARKED, "drop": DROPPED}[action]
        verdict.send_to(lane, f"dmarc=fail from {policy.trusted_authserv_id} (policy.dmarc_fail: {action})")
    return verdict


def oversized(size: int, policy: Policy) -> Verdict | None:
    if size <= policy.max_message_bytes:
        return None
    verdict = Verdict()
    verdict.send_to(PARKED, f"message is {size} bytes, over policy.max_message_bytes {policy.max_message_bytes}")
    verdict.auth_summary = "not judged (the body was not fetched)"
    return verdict


@dataclass
class Screened:
    text: str
    secret: dict | None = None  # {uid, run_id, action, findings} when the item held secret-like text


def screen(text: str, verdict: Verdict, policy: Policy, uid: int, rid: str) -> Screened:
    """The watcher parks, silently, any queued item matching its secret pattern: decide here, and say so.
    With policy.secret_match `redact` the values are rewritten and the item stays queued (when that clears
    it); otherwise, or when it does not, the verdict moves to parked with the findings as the reason."""
    from spine_comms.mailroom.secrets_scan import redact_secrets, secret_findings

    findings = secret_findings(text)
    if not findings or verdict.lane != QUEUED:
        return Screened(text)
    if policy.secret_match == "redact":
        redacted = redact_secrets(text)
        if not secret_findings(redacted):
            return Screened(redacted, {"uid": uid, "run_id": rid, "action": "redacted", "findings": findings})
    verdict.send_to(
        PARKED,
        f"the item would trip the mailroom watcher's secret pattern ({len(findings)} finding(s): "
        + "; ".join(findings[:5])
        + f"); policy.secret_match: {policy.secret_match}",
    )
    return Screened(text, {"uid": uid, "run_id": rid, "action": "parked", "findings": findings})
