"""One attempt at a send, under its lock: the outbox's state machine.

    queued/deferred --attempt--> attempting --reply--> delivered | deferred | failed | error | unknown

The record says `attempting` (durably) before the connection is made, and the phase
moves from `envelope` to `data` (durably) just before the DATA command. A record found
`attempting` by someone who holds the lock belongs to a process that died: in phase
`envelope` the server cannot have accepted anything (RFC 5321: responsibility passes
only with the reply to the end of DATA), so the send is retried; in phase `data` the
outcome is unknown, and the sender's own folders (contract unknown_outcome.lookup_folders)
are searched for the Message-ID: found means accepted, not found stays `unknown` and is
never resent unless the operator asks (flush --resend-unknown).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from spine_comms.core.context import RunContext
from spine_comms.endpoints.mailbox import MailboxEndpoint, mailbox_password
from spine_comms.outbox import outcome as oc
from spine_comms.outbox.delivery_log import append_events
from spine_comms.outbox.settings import Settings
from spine_comms.outbox.store import (
    ATTEMPTING,
    DEFERRED,
    DELIVERED,
    ERROR,
    EXPIRED,
    FAILED,
    QUEUED,
    UNKNOWN,
    OutboxStore,
    envelope_id,
)

ATTEMPTABLE = (QUEUED, DEFERRED)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


class Attempter:
    """Runs attempts for one capability run; passwords are resolved once per mailbox (and redacted)."""

    def __init__(self, ctx: RunContext, settings: Settings, store: OutboxStore) -> None:
        self.ctx, self.settings, self.store = ctx, settings, store
        self._passwords: dict[str, str] = {}

    def password(self, mailbox_id: str, endpoint: MailboxEndpoint) -> str:
        if mailbox_id not in self._passwords:
            self._passwords[mailbox_id] = mailbox_password(self.ctx, endpoint, mailbox_id).value
        return self._passwords[mailbox_id]

    def _log(self, record: dict, state: str, error: str | None = None, **extra) -> None:
        append_events(self.settings.delivery_log, record, state, self.ctx.clock(), error=error, extra=extra)

    def run(self, record: dict, *, resend_unknown: bool = False, ignore_backoff: bool = True) -> dict:
        """Advance `record` as far as one attempt goes; the caller holds its lock. Returns it, saved."""
        now = self.ctx.clock()
        if record["status"] == ATTEMPTING:
            self._interrupted(record, now)
        if record["status"] == UNKNOWN:
            if self._resolve_by_lookup(record, record["attempts"][-1] if record["attempts"] else {}):
                return record
            if not resend_unknown:
                return record
            record["status"] = DEFERRED  # the operator accepted the risk of a duplicate
        if record["status"] == ERROR:
            record["status"] = DEFERRED  # nothing was accepted: an error stops before MAIL FROM
        if record["status"] not in ATTEMPTABLE:
            return record
        if not ignore_backoff and (parse_stamp(record.get("next_attempt_at")) or now) > now:
            return record
        policy = self.settings.outbox.retry
        created = parse_stamp(record["created_at"]) or now
        if now - created > timedelta(seconds=policy.time_to_live_seconds):
            return self._give_up(record, EXPIRED, f"not delivered within {policy.time_to_live_seconds:g} s "
                                 "(retry.time_to_live_seconds)")  # fmt: skip
        if len(record["attempts"]) >= policy.max_attempts:
            return self._give_up(record, FAILED, f"gave up after {len(record['attempts'])} attempts "
                                 "(retry.max_attempts)")  # fmt: skip
        return self._attempt(record, now)

    def _attempt(self, record: dict, now: datetime) -> dict:
        from spine_comms.protocols.smtp import SmtpError, submit

        box = self.settings.mailbox(record["from_mailbox"])
        endpoint = self.settings.submission(box, self.ctx.env)
        password = self.password(box.id, endpoint)
        attempt = {"n": len(record["attempts"]) + 1, "started_at": stamp(now), "phase": "envelope",
                   "endpoint": endpoint.where(), "login": endpoint.login}  # fmt: skip
        record["attempts"].append(attempt)
        record["status"] = ATTEMPTING
        token = envelope_id(record)
        self.store.save(record)  # durable before the first byte goes out

        def entering_data() -> None:
            attempt["phase"] = "data"
            self.store.save(record)

        def envelope_id_sent() -> None:  # a DSN about this attempt must quote it (bounces.correlate)
            attempt["envelope_id"] = True

        self.ctx.log(f"{record['send_id']}: attempt {attempt['n']} via {endpoint.where()} as {endpoint.login}")
        try:
            reply = submit(
                endpoint.host, endpoint.port, security=endpoint.security, server_name=endpoint.server_name,
                ca_file=endpoint.ca_file, login=endpoint.login, password=password, sender=record["from"],
                recipients=record["recipients"], message=self.store.raw(record["send_id"]),
                timeout=endpoint.timeout, before_data=entering_data,
                envelope_id=token, on_envelope_id=envelope_id_sent,
            )  # fmt: skip
            result = oc.accepted(reply)
        except SmtpError as exc:
            result = oc.refused(exc)
        attempt.update(result.to_dict(), finished_at=stamp(self.ctx.clock()))
        return self._settle(record, attempt, result)

    def _settle(self, record: dict, attempt: dict, result: oc.Outcome) -> dict:
        now = self.ctx.clock()
        record["updated_at"] = stamp(now)
        record["last_error"] = None if result.kind == oc.DELIVERED else result.reason
        if result.kind == oc.DELIVERED:
            record["status"], record["next_attempt_at"] = DELIVERED, None
            self.store.save(record)
            self._log(record, DELIVERED, smtp_reply=result.reason)
            return record
        if result.kind == oc.UNKNOWN:
            record["status"] = UNKNOWN
            self.store.save(record)
            self._resolve_by_lookup(record, attempt)
            return record
        if result.kind == oc.ERROR:
            record["status"] = ERROR
            self.store.save(record)
            self._log(record, ERROR, result.reason)
            return record
        if result.kind == oc.PERMANENT:
            return self._give_up(record, FAILED, result.reason)
        policy = self.settings.outbox.retry
        if len(record["attempts"]) >= policy.max_attempts:
            return self._give_up(record, FAILED, f"{result.reason}; gave up after {len(record['attempts'])} attempts")
        waits = policy.backoff_seconds
        wait = waits[min(len(record["attempts"]) - 1, len(waits) - 1)]
        record["status"], record["next_attempt_at"] = DEFERRED, stamp(now + timedelta(seconds=wait))
        self.store.save(record)
        self._log(record, DEFERRED, result.reason, next_attempt_at=record["next_attempt_at"])
        return record

    def _give_up(self, record: dict, state: str, reason: str) -> dict:
        from spine_comms.outbox.notice import enqueue_notice

        record["status"], record["next_attempt_at"], record["last_error"] = state, None, reason
        record["updated_at"] = stamp(self.ctx.clock())
        self.store.save(record)
        self._log(record, state, reason)
        last = record["attempts"][-1] if record["attempts"] else {}
        evidence = f"{last.get('code') or ''} {last.get('enhanced') or ''} {last.get('reason') or reason}".strip()
        item = enqueue_notice(record, reason, evidence)
        if item:
            record["notice_item"] = item
            self.store.save(record)
        return record

    def _interrupted(self, record: dict, now: datetime) -> None:
        attempt = record["attempts"][-1]
        attempt["finished_at"] = stamp(now)
        if attempt.get("phase") != "data":
            attempt.update(outcome="interrupted", reason="the attempt stopped before DATA: the server cannot have "
                           "accepted the message; retried")  # fmt: skip
            record["status"] = DEFERRED
            self.store.save(record)
            self._log(record, DEFERRED, attempt["reason"])
            return
        attempt.update(outcome=oc.UNKNOWN, reason="the attempt stopped after DATA began: the server may have the "
                       "message")  # fmt: skip
        record["status"] = UNKNOWN
        self.store.save(record)

    def _resolve_by_lookup(self, record: dict, attempt: dict) -> bool:
        """Look for the Message-ID in the sender's folders: True (and delivered) when found."""
        found, said = self.lookup(record)
        record.setdefault("lookups", []).append({"at": stamp(self.ctx.clock()), "found": found, "detail": said})
        if found:
            attempt.update(outcome=oc.DELIVERED, resolved_by="sender_folder", reason=said)
            record["status"], record["last_error"] = DELIVERED, None
            self.store.save(record)
            self._log(record, DELIVERED, None, resolved_by="sender_folder")
            return True
        record["last_error"] = f"outcome unknown: {said}; not resent (flush --resend-unknown accepts the risk)"
        self.store.save(record)
        self._log(record, UNKNOWN, record["last_error"])
        return False

    def lookup(self, record: dict) -> tuple[bool, str]:
        from spine_comms.protocols.imap import ImapError, ImapTarget, session

        folders = self.settings.outbox.unknown_outcome.lookup_folders
        if not folders:
            return False, "no unknown_outcome.lookup_folders to search"
        box = self.settings.mailbox(record["from_mailbox"])
        try:
            end = self.settings.imap(box, self.ctx.env)
            target = ImapTarget(end.host, end.port, end.security, end.server_name, end.ca_file, end.login,
                                self.password(box.id, end), end.timeout)  # fmt: skip
            with session(target) as imap:
                for folder in folders:
                    try:
                        imap.select(folder)
                    except ImapError:
                        continue
                    if imap.search_header("Message-ID", record["message_id"]):
                        return True, f"{record['message_id']} found in {box.address} {folder}"
        except ImapError as exc:
            return False, f"could not search {box.address}: {exc.message}"
        return False, f"{record['message_id']} not in {box.address} {', '.join(folders)}"
