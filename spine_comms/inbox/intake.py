"""One fetched message through parse -> policy -> dedup -> store -> item -> commit marker.

The message's identity is the sha256 of its bytes (of its capped header and size
when it was too large to fetch), so the same message has the same identity under
any UID or UIDVALIDITY; its run id is `R` + 12 hex of sha256(mailbox|identity).
Exactly once, in this order, for a whole FETCH batch at a time (stage, then commit;
durability is paid per batch, not per file: staging.py):

1. a delivery marker for the identity exists: a duplicate, nothing written;
2. raw .eml, attachments, the item and the normalized .json (which also says how the
   message is delivered: lane, reasons, item path) staged as hidden temporaries;
3. commit: their bytes synced; the stored files placed and synced; the items linked
   into their lanes (or sent to the bridge) and synced; a run id already in the
   mailroom (an earlier run died before step 4) counts as a duplicate;
4. the DSN bounces among them handed to the outbox (`bounce` hook: note_bounce), before any
   marker: a repeated DSN is a no-op there, so a run killed before its markers notes it again;
5. the delivery markers, hard links to the .json files, made and synced.

A crash between any two steps leaves a state from which a rerun ends with the
message exactly once (and each DSN noted at least once). A message the parser, the policy or the renderer chokes on
is parked with the reason; only an OSError (disk full, I/O) or an unreachable
bridge propagates, and then nothing after it is committed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spine_comms.contracts.inbox import InboxContract
from spine_comms.core.atomic import sweep_temporaries
from spine_comms.inbox.checkpoint import CheckpointStore
from spine_comms.inbox.delivery import PendingItem, Placed
from spine_comms.inbox.policy import DROPPED, PARKED, QUEUED, Verdict, judge, oversized
from spine_comms.inbox.staging import NEW, BatchWriter
from spine_comms.inbox.store import DeliveryIndex, MessageStore, content_sha256

MAX_TEXT_BYTES = 256 * 1024  # the body an item shows; the whole message stays in the .eml
HEADER_CAP = 64 * 1024  # what is fetched of an oversized message's header


@dataclass
class Fetched:
    uid: int
    size: int
    internaldate: datetime | None
    raw: bytes | None = None  # None when over policy.max_message_bytes
    header: bytes | None = None  # the capped header of an oversized message


@dataclass
class Taken:
    kind: str  # enqueued | parked | dropped | duplicate
    record: dict
    secret: dict | None = None


@dataclass
class _Prepared:
    lane: str
    text: str = ""
    reasons: list[str] = field(default_factory=list)
    message_id: str | None = None
    secret: dict | None = None
    normalized: dict = field(default_factory=dict)  # written as the .json once the item is staged


@dataclass
class _Pending:
    uid: int
    taken: Taken | None  # decided at once (a duplicate); else committed with the batch
    identity: str = ""
    marker: dict = field(default_factory=dict)
    prepared: _Prepared | None = None
    item: PendingItem | None = None


@dataclass
class IntakeBatch:
    """The messages of one FETCH batch between stage() and commit()."""

    writer: BatchWriter
    pending: list[_Pending] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)

    def close(self) -> None:
        self.writer.reset()  # temporaries never placed (the batch stopped) are removed

    def bounces(self) -> list[dict]:
        """The normalized form of each DSN bounce this commit is about to mark: every message without a
        marker yet, including one whose item an earlier, killed run had already placed (it never got
        its marker, so it may never have been noted). A message with a marker is not among them."""
        return [
            p.prepared.normalized for p in self.pending
            if p.taken is None and p.prepared is not None
            and (p.prepared.normalized.get("classification") or {}).get("kind") == "bounce"
        ]  # fmt: skip


def _taken(pending: _Pending, placed: Placed | None) -> Taken:
    base = {"uid": pending.uid, "run_id": pending.marker["run_id"]}
    prepared = pending.prepared
    if placed is None:
        return Taken("dropped", {**base, "reasons": prepared.reasons})
    if placed.existed:
        return Taken("duplicate", {**base, "lane": prepared.lane, "how": "already in the mailroom"})
    record = {**base, "path": placed.path}
    if prepared.lane == PARKED:
        return Taken("parked", {**record, "reasons": prepared.reasons}, prepared.secret)
    return Taken("enqueued", record, prepared.secret)


def identity_of(fetched: Fetched) -> str:
    if fetched.raw is not None:
        return content_sha256(fetched.raw)
    return content_sha256(b"oversized\0%d\0" % fetched.size + (fetched.header or b""))


def run_id_for(mailbox_id: str, identity: str) -> str:
    return "R" + hashlib.sha256(f"{mailbox_id}|{identity}".encode()).hexdigest()[:12]


def utc_stamp(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


class Intake:
    def __init__(self, contract: InboxContract, mailbox, state_dir: Path, target, clock) -> None:
        self.contract = contract
        self.policy = contract.policy
        self.mailbox = mailbox
        self.store = MessageStore(state_dir)
        self.index = DeliveryIndex(state_dir, mailbox.id)
        self.target = target
        self.clock = clock
        # One for the whole run: see BatchWriter. Its files are made ahead where most of them go; it lists
        # where it makes temporaries, so the next run removes those a kill -9 left (sweep_writers).
        self.writer = BatchWriter(homes=[state_dir / ".ahead", *target.staging_homes], journal=state_dir / ".writers")
        # The atomic writes outside the batch (heartbeat, checkpoints) leave theirs in two small directories.
        sweep_temporaries(state_dir)
        sweep_temporaries(CheckpointStore(state_dir, mailbox.id).directory)

    def expect(self, messages: int) -> None:
        """`messages` new ones are about to be staged (see BatchWriter.expect)."""
        self.writer.expect(messages)

    def begin(self) -> IntakeBatch:
        self.writer.reset()
        return IntakeBatch(self.writer)

    def close(self) -> None:
        self.writer.close()

    def stage(self, batch: IntakeBatch, folder: str, uidvalidity: int, fetched: Fetched) -> None:
        """Parse, judge, render one message and stage its files in `batch`; nothing is visible yet.
        Only an OSError (disk full) propagates: what was staged before it can still be committed."""
        identity = identity_of(fetched)
        rid = run_id_for(self.mailbox.id, identity)
        base = {"uid": fetched.uid, "run_id": rid}
        marker = self.index.get(identity)
        if marker is not None:
            batch.pending.append(_Pending(fetched.uid, Taken("duplicate", {**base, "lane": marker.get("lane"),
                                                                        "how": "delivery index"})))  # fmt: skip
            return
        if identity in batch.identities:  # the same bytes twice in one batch: the first one counts
            batch.pending.append(_Pending(fetched.uid, Taken("duplicate", {**base, "how": "delivery index"})))
            return
        when = fetched.internaldate or self.clock()
        session_id = f"S{when.astimezone(UTC):%Y%m%d-%H%M%S}"
        try:
            prepared = self._prepare(folder, uidvalidity, fetched, identity, rid, batch.writer)
        except OSError:
            raise
        except Exception as exc:  # a hostile message never stops the batch: it is parked with the reason
            prepared = self._unprocessable(folder, fetched, rid, f"{type(exc).__name__}: {exc}")
        marker = {
            **base, "identity": identity, "lane": prepared.lane, "reasons": prepared.reasons,
            "mailbox": self.mailbox.id, "folder": folder, "uidvalidity": uidvalidity,
            "message_id": prepared.message_id, "at": utc_stamp(self.clock()),
        }  # fmt: skip
        item = None
        if prepared.lane != DROPPED:
            item = self.target.stage(batch.writer, prepared.text, slug=self.contract.item.slug, rid=rid,
                                     session_id=session_id, lane=prepared.lane)  # fmt: skip
        # The .json carries the delivery record too: the marker, made at the commit, is a link to it.
        prepared.normalized.setdefault("spine_comms", {})["delivery"] = {**marker, "path": item and item.path}
        self.store.put_normalized(identity, prepared.normalized, batch.writer)
        batch.identities.add(identity)
        batch.pending.append(_Pending(fetched.uid, None, identity, marker, prepared, item))

    def commit(self, batch: IntakeBatch, bounce=None, placed: list | None = None) -> list[tuple[int, Taken]]:
        """Make the staged messages durable and visible, in the order that keeps them exactly once:
        stored files synced and placed, synced; items placed (or sent), synced; `bounce(normalized list)`
        called; markers written, synced. An exception leaves markers missing, never ahead of their
        items: a rerun finds the items. `bounce` must not raise for a bounce it could not note.

        `placed`, when given, receives (uid, Taken) for each item the moment it is in the mailroom
        (before its marker): a commit stopped halfway (a full disk, the bridge gone) can still say
        what the watcher will see."""
        writer = batch.writer
        placed = [] if placed is None else placed
        writer.sync()  # the bytes of every staged file: .eml, .json, attachments, items
        for staged in writer.staged:
            if staged.how != NEW and not staged.placed:
                writer.place(staged)
        writer.sync()  # their names: an item never points at a stored message a crash could lose
        taken: list[tuple[int, Taken]] = []
        placed_items: dict[int, Placed] = {}
        for pending in batch.pending:
            if pending.item is not None:
                placed_items[pending.uid] = pending.item.commit(writer)
                placed.append((pending.uid, _taken(pending, placed_items[pending.uid])))
        writer.sync()  # items visible and durable: only now may their markers say "committed"
        bounces = batch.bounces()
        if bounce is not None and bounces:
            # Before the markers, not after: a kill in between must leave the DSN unmarked, so the
            # rerun notes it again (the outbox ignores a DSN it has already applied).
            bounce(bounces)
        for pending in batch.pending:
            if pending.taken is not None:
                taken.append((pending.uid, pending.taken))
                continue
            self.index.link(pending.identity, self.store.normalized_path(pending.identity))
            taken.append((pending.uid, _taken(pending, placed_items.get(pending.uid))))
        writer.sync()  # the markers: these messages are committed
        return taken

    # ----------------------------------------------------------------------------------------

    def _parse(self, raw: bytes):
        from spine_comms.mail.message import parse_message

        return parse_message(
            raw, max_attachment_bytes=self.policy.max_attachment_bytes, max_attachments=self.policy.max_attachments,
            max_text_bytes=MAX_TEXT_BYTES,
        )  # fmt: skip

    def _prepare(
        self, folder: str, uidvalidity: int, fetched: Fetched, identity: str, rid: str, writer: BatchWriter
    ) -> _Prepared:
        if fetched.raw is None:
            message = self._parse(fetched.header or b"")
            verdict = oversized(fetched.size, self.policy) or Verdict()
        else:
            message = self._parse(fetched.raw)
            verdict = judge(message, self.policy, fetched.raw)
        eml = self.store.put_raw(identity, fetched.raw if fetched.raw is not None else (fetched.header or b""), writer)
        stored = []
        if verdict.lane != DROPPED:
            for attachment in message.attachments or []:
                path = self.store.put_attachment(attachment.sha256, attachment.filename, attachment.payload, writer)
                stored.append({"name": attachment.filename, "type": attachment.content_type,
                               "size": attachment.size, "path": str(path)})  # fmt: skip
        normalized = message.to_dict()
        normalized["spine_comms"] = {
            "mailbox": self.mailbox.id, "address": self.mailbox.address, "folder": folder, "uid": fetched.uid,
            "uidvalidity": uidvalidity, "internaldate": utc_stamp(fetched.internaldate), "size": fetched.size,
            "identity": identity, "run_id": rid, "lane": verdict.lane, "reasons": verdict.reasons,
            "authentication": verdict.auth_summary, "truncated_to_header": fetched.raw is None,
        }  # fmt: skip
        json_path = self.store.normalized_path(identity)  # written by stage(), with the delivery record
        prepared = _Prepared(verdict.lane, reasons=list(verdict.reasons), message_id=message.message_id,
                             normalized=normalized)  # fmt: skip
        if verdict.lane == DROPPED:
            return prepared
        from spine_comms.mailroom.items import render_email_item

        text = render_email_item(
            header=self.contract.item,
            sender=_sender(message),
            subject=message.subject or "",
            received=utc_stamp(fetched.internaldate) or str(message.date_utc or ""),
            body=message.text or "",
            attachments=stored,
            message_ref={
                "message_id": message.message_id,
                "mailbox": f"{self.mailbox.address} {folder}",
                "uid": fetched.uid,
                "eml": str(eml),
                "json": str(json_path),
            },
            classification=_classification(message),
            auth_summary=verdict.auth_summary,
            hidden_html=message.hidden_html,
        )
        prepared.text = self._screen(text, prepared, fetched.uid, rid)
        return prepared

    def _screen(self, text: str, prepared: _Prepared, uid: int, rid: str) -> str:
        """The watcher parks, silently, any queued item matching its secret pattern: decide here, and say so."""
        from spine_comms.mailroom.secrets_scan import redact_secrets, secret_findings

        findings = secret_findings(text)
        if findings and prepared.lane == QUEUED:
            if self.policy.secret_match == "redact":
                redacted = redact_secrets(text)
                if not secret_findings(redacted):
                    prepared.secret = {"uid": uid, "run_id": rid, "action": "redacted", "findings": findings}
                    return redacted
            prepared.secret = {"uid": uid, "run_id": rid, "action": "parked", "findings": findings}
            prepared.lane = PARKED
            prepared.reasons.append(
                f"the item would trip the mailroom watcher's secret pattern ({len(findings)} finding(s): "
                + "; ".join(findings[:5])
                + f"); policy.secret_match: {self.policy.secret_match}"
            )
        return _with_reasons(text, prepared)

    def _unprocessable(self, folder: str, fetched: Fetched, rid: str, why: str) -> _Prepared:
        from spine_comms.mailroom.items import header_block, one_line

        reason = f"could not be processed: {one_line(why, 300)}"
        lines = header_block(self.contract.item, "Inspect an inbound email spine-comms could not process")
        lines += ["", "## Event: email_received", "",
                  f"**Mailbox:** {one_line(self.mailbox.address)} {one_line(folder)}", f"**UID:** {fetched.uid}",
                  f"**Size:** {fetched.size} bytes", f"**Run:** {rid}", ""]  # fmt: skip
        text = _with_reasons("\n".join(lines), _Prepared(PARKED, reasons=[reason]))
        normalized = {"message_id": None, "problems": [reason], "spine_comms": {
            "mailbox": self.mailbox.id, "folder": folder, "uid": fetched.uid, "size": fetched.size, "run_id": rid,
            "lane": PARKED, "reasons": [reason]}}  # fmt: skip
        return _Prepared(PARKED, text, [reason], normalized=normalized)


def _with_reasons(text: str, prepared: _Prepared) -> str:
    if prepared.lane != PARKED or not prepared.reasons:
        return text
    from spine_comms.mailroom.items import one_line

    lines = ["", "## Parked by spine-comms", "", "Reasons (a person decides whether this goes to the queue):"]
    lines += [f"- {one_line(r, 600)}" for r in prepared.reasons]
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


def _sender(message) -> str:
    senders = message.from_ or []
    if not senders:
        return ""
    first = senders[0]
    name, address = getattr(first, "name", "") or "", getattr(first, "address", "") or ""
    shown = f"{name} <{address}>" if name else address
    return shown + (f" (+{len(senders) - 1} more)" if len(senders) > 1 else "")


def _classification(message) -> str:
    found = getattr(message, "classification", None)
    if found is None:
        return "normal"
    kind = getattr(found, "kind", None) or "normal"
    details = getattr(found, "details", None) or {}
    if isinstance(details, dict) and details:
        shown = ", ".join(f"{k} {v}" for k, v in list(details.items())[:4] if v not in (None, "", [], {}))
        return f"{kind} ({shown})" if shown else kind
    return kind
