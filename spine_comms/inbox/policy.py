"""The contract's policy applied to one message: which lane it goes to, and why.

Lanes: `queued` (an agent reads it), `parked` (quarantined with its reason, for a
person), `dropped` (recorded in the state directory only). The decisions:

- over policy.max_message_bytes: parked (the body was never fetched);
- sender on policy.senders.deny: dropped (the operator said so); not on a non-empty allow list: parked;
- DMARC fail: policy.dmarc_fail, judged ONLY from Authentication-Results written by
  policy.trusted_authserv_id; any other A-R header is the sender's claim and is ignored.

Pure functions over the parsed message; nothing here touches the network or disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spine_comms.contracts.inbox import Policy, Senders
from spine_comms.mail.authentication import split_trusted
from spine_comms.mail.authresults import from_headers

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


def header_values(headers, name: str) -> list[str]:
    """Values of one header from the parser's `headers` (a mapping to a str or a list, or pairs)."""
    name = name.lower()
    if isinstance(headers, dict):
        for key, value in headers.items():
            if str(key).lower() == name:
                return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        return []
    return [str(v) for k, v in (headers or []) if str(k).lower() == name]


def authentication(headers, trusted_authserv_id: str | None) -> tuple[str | None, str]:
    """(trusted dmarc result or None, a one-line summary safe for the item and the watcher).

    Only method=result pairs go in the summary: a property such as smtp.auth=<login> would
    both leak a login and trip the watcher's secret pattern."""
    results = from_headers(header_values(headers, "authentication-results"))
    trusted, untrusted = split_trusted(results, trusted_authserv_id)
    ignored = f"; ignored {len(untrusted)} from other authserv-ids" if untrusted else ""
    if not trusted_authserv_id:
        return None, f"not judged (no policy.trusted_authserv_id){ignored}"
    if not trusted:
        return None, f"no Authentication-Results from {trusted_authserv_id}{ignored}"
    pairs: dict[str, list[str]] = {}
    for ar in trusted:
        for r in ar.results:
            pairs.setdefault(r.method, []).append(r.result)
    dmarc = pairs.get("dmarc")
    # Several trusted dmarc results: a fail anywhere counts (a forged second header cannot
    # exist under the trusted id unless the receiver wrote it).
    dmarc_result = ("fail" if "fail" in dmarc else dmarc[0]) if dmarc else None
    shown = " ".join(f"{m}={','.join(dict.fromkeys(v))}" for m, v in pairs.items()) or "no results"
    return dmarc_result, f"{trusted_authserv_id} says {shown}{ignored}"


def judge(message, policy: Policy) -> Verdict:
    """The lane for a parsed message (spine_comms.mail.message.NormalizedMessage)."""
    verdict = Verdict()
    addresses = [a.address for a in (message.from_ or []) if getattr(a, "address", None)]
    rule = sender_rule(addresses, policy.senders)
    if rule:
        verdict.send_to(*rule)
    verdict.dmarc, verdict.auth_summary = authentication(message.headers, policy.trusted_authserv_id)
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
