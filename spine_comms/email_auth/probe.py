"""mail.auth.probe: send one mail, read it back, and prove from the outside that it authenticates.

The probe goes out through SMTP submission as a contract mailbox, carrying a
unique token, and is looked for over IMAP in the target mailbox until it arrives
or the deadline passes. What arrived is judged here, not taken on trust: every
DKIM signature verified locally, DMARC computed locally, and the receiver's
Authentication-Results believed only when the receiver wrote them (the contract's
trusted authserv-id, exactly, in the receiver's block at the top: mail.authresults).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Annotated

import typer

from spine_comms.contracts.mailauth import MAILAUTH_CONTRACT, MailAuthContract, ProbeTarget
from spine_comms.contracts.stack import STACK_CONTRACT, Mailbox, StackContract
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import ContractError, UsageError
from spine_comms.core.outcomes import could_not_evaluate
from spine_comms.core.result import Check, Result, Status
from spine_comms.endpoints.mailbox import MailboxEndpoint, mailbox_endpoint, mailbox_password

TOKEN_HEADER = "X-Spine-Probe"
MAX_FETCH_BYTES = 2 * 1024 * 1024  # a probe is a few KiB; anything near this is not ours
MAX_RECEIPT_BYTES = 512 * 1024
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext


@capability("mail.auth.probe", safety="mutating", approval="auto")
def mail_auth_probe(
    ctx: RunContext,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Send to this stack mailbox id (ops) or address instead of the contract's probe.target. "
            "An address outside the stack is read with the contract target's imap_* settings.",
        ),
    ] = None,
    sender: Annotated[
        str | None, typer.Option(help="Send as this stack mailbox id instead of the contract's probe.sender.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(min=1, max=900, help="Seconds to wait for the probe to arrive (default: probe.timeout_seconds)."),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option(min=0.1, max=60, help="Seconds between IMAP searches while waiting.")
    ] = 1.0,
    header: Annotated[
        list[str] | None,
        typer.Option(
            help="Add 'Name: value' to the probe (repeatable), e.g. a forged "
            "'Authentication-Results: evil.example; dkim=pass' to prove it is ignored.",
        ),
    ] = None,
) -> Result:
    """Send a probe mail with a unique token through submission, wait for it over IMAP, verify every
    DKIM signature and compute DMARC locally; ok only when both pass (and the trusted receiver agrees)."""
    stack = ctx.contracts.load(STACK_CONTRACT, StackContract)
    mailauth = ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract)
    probe = mailauth.probe
    if probe is None:
        raise ContractError(
            f"{ctx.contracts.path(MAILAUTH_CONTRACT)}: no probe section",
            hint="add probe: {sender: <mailbox id>, target: {mailbox: <id>}, trusted_authserv_id: <receiver>}",
        )
    sender_box = _mailbox(stack, sender or probe.sender, "sender")
    submission = _submission(stack, probe.submission, sender_box)
    target_address, reading = _target(stack, probe.target, to)
    timeout = timeout or probe.timeout_seconds
    extra = _extra_headers(header or [])

    from spine_comms.protocols.dns import Resolver

    dns_conf = stack.endpoints.dns if stack.endpoints else None
    resolver = Resolver(dns_conf.server, dns_conf.port, dns_conf.timeout_seconds) if dns_conf else Resolver()

    now = ctx.clock()
    token = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(8)}"
    domain = sender_box.address.rpartition("@")[2]
    message_id = f"<probe.{token}@{domain}>"
    raw = _message(sender_box.address, target_address, token, message_id, format_datetime(now), extra)

    result = Result()
    result.data = {
        "token": token,
        "message_id": message_id,
        "sender": sender_box.address,
        "target": target_address,
        "trusted_authserv_id": probe.trusted_authserv_id,
        "resolver": resolver.describe(),
        "submission": {
            "endpoint": submission.where(),
            "server_name": submission.server_name,
            "login": submission.login,
        },
        "reading": {"endpoint": reading.where(), "login": reading.login, "folder": _folder(probe.target, to)},
    }

    # 1. Submit ----------------------------------------------------------------------------------
    from spine_comms.protocols.smtp import SmtpError, submit

    password = mailbox_password(ctx, submission, sender_box.id)
    ctx.log(f"submitting probe {token} to {target_address} via {submission.where()} as {submission.login}")
    started = time.monotonic()
    try:
        reply = submit(
            submission.host, submission.port, security=submission.security, server_name=submission.server_name,
            ca_file=submission.ca_file, login=submission.login, password=password.value,
            sender=sender_box.address, recipients=[target_address], message=raw, timeout=submission.timeout,
        )  # fmt: skip
    except SmtpError as exc:
        reply_text = str(exc.reply) if exc.reply else None
        if not exc.refused_message:
            hint = None
            if exc.stage == "auth":
                hint = f"check the password of {sender_box.id} ({submission.password_ref} or {submission.override_env})"
            raise could_not_evaluate(
                exc,
                f"submission {submission.where()} {exc.stage}: {exc.message}"
                + (f" ({reply_text})" if reply_text else ""),
                hint=hint,
            ) from None
        result.add(
            Check(
                id="probe.submit",
                status=Status.FAIL,
                detail=f"{exc.stage}: {exc.message}" + (f": {reply_text}" if reply_text else ""),
                subject=submission.where(),
                expected="250 accepted",
                actual=reply_text,
                evidence={"stage": exc.stage, "reply": exc.reply.to_dict() if exc.reply else None},
            )
        )
        _skip_rest(result, "the probe was not accepted for delivery")
        return result
    sent_ms = round((time.monotonic() - started) * 1000, 1)
    result.data["submission"]["reply"] = reply.to_dict()
    result.add(
        Check(
            id="probe.submit",
            status=Status.OK,
            detail=f"accepted in {sent_ms} ms: {reply}",
            subject=submission.where(),
            expected="250 accepted",
            actual=str(reply),
            evidence={"reply": reply.to_dict(), "message_id": message_id},
            duration_ms=sent_ms,
        )
    )
    result.summary.append(f"submitted {message_id} via {submission.where()} as {submission.login}")

    # 2. Wait for it -----------------------------------------------------------------------------
    found = _wait(ctx, reading, _folder(probe.target, to), token, timeout, poll_interval)
    if found is None:
        result.add(
            Check(
                id="probe.delivered",
                status=Status.FAIL,
                detail=f"the probe did not arrive in {target_address} within {timeout:g} s",
                subject=target_address,
                expected=f"{TOKEN_HEADER}: {token}",
                actual=None,
                evidence={"endpoint": reading.where(), "folder": _folder(probe.target, to)},
            )
        )
        _skip_rest(result, "the probe did not arrive")
        result.summary.append(f"NOT delivered to {target_address} within {timeout:g} s")
        return result
    result.data["received"] = _received(found)
    result.add(
        Check(
            id="probe.delivered",
            status=Status.OK,
            detail=f"arrived in {found.folder} after {found.waited_ms / 1000:.1f} s "
            f"(uid {found.uid}, {len(found.raw)} bytes)",
            subject=target_address,
            expected=f"{TOKEN_HEADER}: {token}",
            actual=f"uid {found.uid}",
            evidence={"uid": found.uid, "folder": found.folder, "polls": found.polls, "waited_ms": found.waited_ms},
        )
    )
    result.summary.append(f"delivered to {target_address} after {found.waited_ms / 1000:.1f} s")

    # 3. Judge it --------------------------------------------------------------------------------
    from spine_comms.mail.authentication import evaluate_message

    evaluation = evaluate_message(found.raw, query=resolver.query, trusted_authserv_id=probe.trusted_authserv_id)
    result.data["evaluation"] = evaluation.to_dict()
    for check in _judge(evaluation):
        result.add(check)
    result.summary.extend(_verdict_lines(evaluation))
    return result


# Contract reading -------------------------------------------------------------------------------


def _mailbox(stack: StackContract, mailbox_id: str, role: str) -> Mailbox:
    box = stack.mailbox(mailbox_id)
    if box is None:
        known = ", ".join(m.id for m in stack.pilot.mailboxes) or "none"
        raise UsageError(f"{role} {mailbox_id!r} is not a mailbox of the stack contract (known: {known})")
    return box


def _timeout(stack: StackContract) -> float:
    # A probe waits for a whole SMTP transaction or an IMAP search, not a greeting: at least 10 s.
    return max(stack.endpoints.timeout_seconds if stack.endpoints else 10.0, 10.0)


def _submission(stack: StackContract, protocol: str, box: Mailbox) -> MailboxEndpoint:
    return mailbox_endpoint(stack, box, [protocol], timeout=_timeout(stack), why="submission",
                            hint="add it, or set probe.submission to the one it has (SMTPS or STARTTLS)")  # fmt: skip


def _stack_imap(stack: StackContract, box: Mailbox) -> MailboxEndpoint:
    return mailbox_endpoint(stack, box, ["IMAPS", "IMAP"], timeout=_timeout(stack), why="reading the probe target")


def _external_imap(target: ProbeTarget, address: str) -> MailboxEndpoint:
    # An outside mailbox is verified against its own ca_file, else the system store: the stack's CA
    # vouches only for the stack.
    return MailboxEndpoint(
        target.imap_host or "", target.imap_port, target.imap_security, target.server_name or target.imap_host,
        target.ca_file, 30.0, target.login or address, target.password_ref, None,
    )  # fmt: skip


def _target(stack: StackContract, target: ProbeTarget, to: str | None) -> tuple[str, MailboxEndpoint]:
    """(address to send to, where to read it), from --to or the contract's probe.target."""
    wanted = to or target.mailbox or target.address or ""
    if "@" not in wanted:
        box = _mailbox(stack, wanted, "target")
        return box.address, _stack_imap(stack, box)
    box = next((m for m in stack.pilot.mailboxes if m.address.lower() == wanted.lower()), None)
    if box is not None:
        return box.address, _stack_imap(stack, box)
    if not target.address:
        raise UsageError(
            f"--to {wanted} is outside the stack, and the contract's probe.target gives no imap_* to read it",
            hint="name a stack mailbox, or give probe.target an address with imap_host, login and password_ref",
        )
    return wanted, _external_imap(target, wanted)


def _folder(target: ProbeTarget, to: str | None) -> str:
    return target.folder if not to or target.address else "INBOX"


def _extra_headers(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, colon, text = value.partition(":")
        name, text = name.strip(), text.strip()
        if not colon or not _HEADER_NAME.match(name) or "\r" in text or "\n" in text:
            raise UsageError(f"--header {value!r} is not 'Name: value' on one line")
        if name.lower() in ("from", "to", "subject", "date", "message-id", TOKEN_HEADER.lower()):
            raise UsageError(f"--header cannot replace {name}: the probe sets it")
        out.append((name, text))
    return out


# The message ------------------------------------------------------------------------------------


def _message(sender: str, to: str, token: str, message_id: str, date: str, extra) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"spine-comms mail.auth.probe {token}"
    message["Date"] = date
    message["Message-ID"] = message_id
    message[TOKEN_HEADER] = token
    for name, value in extra:
        message[name] = value
    message.set_content(
        "Sent by spine-comms mail.auth.probe to prove that mail from this domain\n"
        "is DKIM-signed and passes DMARC. It can be deleted.\n\n"
        # Not "token: ...": the mailroom watcher parks any item with a value after "token:".
        f"Probe id {token}\n",
        cte="7bit",
    )
    return message.as_bytes(policy=SMTP)


def _wait(ctx: RunContext, reading: MailboxEndpoint, folder: str, token: str, timeout: float, interval: float):
    from spine_comms.protocols.imap import ImapError, ImapTarget, wait_for_header

    password = mailbox_password(ctx, reading, reading.login)
    target = ImapTarget(
        reading.host, reading.port, reading.security, reading.server_name, reading.ca_file,
        reading.login, password.value, reading.timeout,
    )  # fmt: skip
    ctx.log(f"waiting up to {timeout:g} s for the probe in {folder} of {reading.login} via {reading.where()}")
    deadline = time.monotonic() + timeout
    try:
        with ctx.progress(f"waiting for the probe in {folder}") as advance:
            return wait_for_header(
                target, folder=folder, header=TOKEN_HEADER, value=token, deadline=deadline,
                poll_interval=interval, max_bytes=MAX_FETCH_BYTES, on_poll=lambda n: advance(1),
            )  # fmt: skip
    except ImapError as exc:
        hint = None
        if exc.stage == "auth":
            hint = f"check the target's password ({reading.password_ref} or {reading.override_env or 'probe.target'})"
        raise could_not_evaluate(exc, f"IMAP {reading.where()} {exc.stage}: {exc.message}", hint=hint) from None


def _received(found) -> dict:
    """The raw message for the receipt: text when it is UTF-8 (mail usually is), else base64."""
    raw = found.raw[:MAX_RECEIPT_BYTES]
    try:
        text, encoding = raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return {
        "uid": found.uid,
        "folder": found.folder,
        "size": len(found.raw),
        "encoding": encoding,
        "truncated": len(found.raw) > MAX_RECEIPT_BYTES,
        "raw": text,
    }


# Verdicts ---------------------------------------------------------------------------------------

_SIG_STATUS = {"pass": Status.OK, "fail": Status.FAIL, "permerror": Status.FAIL, "temperror": Status.ERROR}


def _skip_rest(result: Result, why: str) -> None:
    for check_id in ("probe.dkim", "probe.dmarc", "probe.authresults.trusted"):
        if not any(c.id == check_id for c in result.checks):
            result.add(Check(id=check_id, status=Status.SKIP, detail=f"not evaluated: {why}"))


def _judge(ev) -> list[Check]:
    checks = []
    for sig in ev.signatures:
        checks.append(
            Check(
                id="probe.dkim.signature",
                status=_SIG_STATUS.get(sig.result, Status.FAIL),
                detail=f"{sig.subject} a={sig.algorithm}: {sig.result}: {sig.reason}",
                subject=sig.subject,
                expected="pass",
                actual=sig.result,
                evidence={
                    "signature": sig.header,
                    "key_name": sig.key_name,
                    "key_record": sig.key_record,
                    "key_bits": sig.key_bits,
                    "dns": sig.dns,
                },
            )
        )

    aligned = ev.passing_aligned()
    from_domain = ev.from_domain or "?"
    if aligned:
        status, detail = Status.OK, f"{aligned[0].subject} passes and aligns with From {from_domain}"
    elif not ev.signatures:
        status, detail = Status.FAIL, "the received message carries no DKIM-Signature"
    elif any(s.result == "pass" for s in ev.signatures):
        status, detail = Status.FAIL, f"DKIM passes only for domains not aligned with From {from_domain}"
    elif any(s.result == "temperror" for s in ev.signatures):
        status, detail = Status.ERROR, "no signature could be checked: key lookup failed"
    else:
        why = "; ".join(f"{s.subject}: {s.reason}" for s in ev.signatures)
        status, detail = Status.FAIL, f"no signature verified ({why})"
    checks.append(
        Check(
            id="probe.dkim",
            status=status,
            detail=detail,
            subject=from_domain,
            expected=f"a passing signature aligned with {from_domain}",
            actual=[f"{s.subject} {s.result}" for s in ev.signatures],
            evidence={"aligned": [s.subject for s in aligned]},
        )
    )

    d = ev.dmarc
    status = {"pass": Status.OK, "temperror": Status.ERROR}.get(d.result, Status.FAIL)
    policy = f" (p={d.policy})" if d.policy else ""
    checks.append(
        Check(
            id="probe.dmarc",
            status=status,
            detail=f"dmarc={d.result}{policy}: " + "; ".join(d.reasons),
            subject=from_domain,
            expected="pass",
            actual=d.result,
            evidence=d.to_dict(),
        )
    )

    trusted_id = ev.trusted_authserv_id
    if not trusted_id:
        checks.append(
            Check(
                id="probe.authresults.trusted",
                status=Status.SKIP,
                detail="no probe.trusted_authserv_id in the contract: the receiver's Authentication-Results are not "
                "consulted",
            )
        )
    elif not ev.trusted:
        checks.append(
            Check(
                id="probe.authresults.trusted",
                status=Status.SKIP,
                detail=f"none from the receiver ({ev.sorting.note}; Stalwart adds them on port 25 only): "
                "the local verdicts stand",
                subject=trusted_id,
                expected="dkim=pass dmarc=pass",
                actual=None,
            )
        )
    else:
        from spine_comms.mail.authentication import receiver_verdict

        said = receiver_verdict(ev.sorting, ev.from_domain)
        seen = {m: ev.trusted_results(m) for m in ("dkim", "spf", "dmarc")}
        if not ("pass" in seen["dkim"] and said.dmarc == "pass"):
            status, note = Status.FAIL, ", not dkim=pass and dmarc=pass for this From"
        elif not aligned or d.result != "pass":
            # The receiver vouches for what we could not verify: often a key it cached before a DNS change.
            local = f"dkim {'pass' if aligned else 'fail'}, dmarc {d.result}"
            status, note = Status.WARN, f"; the local verdicts differ ({local})"
        else:
            status, note = Status.OK, ""
        checks.append(
            Check(
                id="probe.authresults.trusted",
                status=status,
                detail=said.summary + note,
                subject=trusted_id,
                expected="dkim=pass dmarc=pass",
                actual=seen,
                evidence=[a.raw for a in ev.trusted],
            )
        )

    if ev.untrusted:
        ids = ", ".join(dict.fromkeys(u.header.authserv_id or "(none)" for u in ev.untrusted))
        reasons = "; ".join(dict.fromkeys(u.why for u in ev.untrusted))
        checks.append(
            Check(
                id="probe.authresults.untrusted",
                status=Status.WARN,
                detail=f"ignored {len(ev.untrusted)} Authentication-Results header(s) not written by the receiver "
                f"({reasons})",
                subject=ids,
                expected="none",
                actual=[u.header.authserv_id for u in ev.untrusted],
                evidence=[u.to_dict() for u in ev.untrusted],
            )
        )
    else:
        checks.append(
            Check(
                id="probe.authresults.untrusted",
                status=Status.OK,
                detail="no Authentication-Results other than the receiver's",
                subject="",
                expected="none",
                actual=[],
            )
        )
    return checks


def _verdict_lines(ev) -> list[str]:
    lines = [f"dkim={s.result} {s.subject} a={s.algorithm}: {s.reason}" for s in ev.signatures]
    lines.append(
        f"dmarc={ev.dmarc.result} From {ev.from_domain}" + (f" p={ev.dmarc.policy}" if ev.dmarc.policy else "")
    )
    for ar in ev.trusted:
        lines.append("trusted A-R " + ar.authserv_id + ": " + " ".join(f"{r.method}={r.result}" for r in ar.results))
    for u in ev.untrusted:
        lines.append(f"ignored A-R from {u.header.authserv_id or '(none)'}: {u.why}")
    return lines
