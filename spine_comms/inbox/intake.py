"""One fetched message through the stages: dedup, normalize (normalize.py), decide (policy.py), stage its files.

The message's identity is the sha256 of its bytes (of its capped header and size when it was
too large to fetch), so the same message has the same identity under any UID or UIDVALIDITY;
its run id is `R` + 12 hex of sha256(mailbox|identity). Per message, `stage`:

1. a delivery marker for the identity exists: a duplicate, nothing written;
2. parsed and normalized, judged by the policy, rendered as the spine's item and screened for
   what the watcher's secret scan would trip on;
3. raw .eml, attachments, the item and the normalized .json (which also says how the message
   is delivered: lane, reasons, item path) staged as hidden temporaries, visible to nobody.

Then `commit` (commit.py) makes a whole FETCH batch durable and visible, exactly once. A message
the parser, the policy or the renderer chokes on is parked with the reason; only an OSError (disk
full, I/O) or an unreachable bridge propagates, and then nothing after it is committed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from pathlib import Path

from spine_comms.contracts.inbox import InboxContract
from spine_comms.core.atomic import sweep_temporaries
from spine_comms.inbox import normalize
from spine_comms.inbox.checkpoint import CheckpointStore
from spine_comms.inbox.commit import IntakeBatch, Pending, Prepared, Taken, commit
from spine_comms.inbox.fetch import HEADER_CAP, Fetched
from spine_comms.inbox.normalize import MAX_TEXT_BYTES, utc_stamp
from spine_comms.inbox.policy import DROPPED, PARKED, Verdict, judge, oversized, screen
from spine_comms.inbox.staging import BatchWriter
from spine_comms.inbox.store import DeliveryIndex, MessageStore, content_sha256

# Read from here by other packages (conversations: the text cap); they are defined by their stages.
__all__ = ["HEADER_CAP", "MAX_TEXT_BYTES", "Intake", "IntakeBatch", "Taken", "identity_of", "run_id_for"]


def identity_of(fetched: Fetched) -> str:
    if fetched.raw is not None:
        return content_sha256(fetched.raw)
    return content_sha256(b"oversized\0%d\0" % fetched.size + (fetched.header or b""))


def run_id_for(mailbox_id: str, identity: str) -> str:
    return "R" + hashlib.sha256(f"{mailbox_id}|{identity}".encode()).hexdigest()[:12]


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
            batch.pending.append(Pending(fetched.uid, Taken("duplicate", {**base, "lane": marker.get("lane"),
                                                                       "how": "delivery index"})))  # fmt: skip
            return
        if identity in batch.identities:  # the same bytes twice in one batch: the first one counts
            batch.pending.append(Pending(fetched.uid, Taken("duplicate", {**base, "how": "delivery index"})))
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
        batch.pending.append(Pending(fetched.uid, None, identity, marker, prepared, item))

    def commit(self, batch: IntakeBatch, bounce=None, placed: list | None = None) -> list[tuple[int, Taken]]:
        """The batch made durable and visible, exactly once (commit.commit)."""
        return commit(batch, self.store, self.index, bounce=bounce, placed=placed)

    # ----------------------------------------------------------------------------------------

    def _prepare(
        self, folder: str, uidvalidity: int, fetched: Fetched, identity: str, rid: str, writer: BatchWriter
    ) -> Prepared:
        if fetched.raw is None:
            message = normalize.parse(fetched.header or b"", self.policy)
            verdict = oversized(fetched.size, self.policy) or Verdict()
        else:
            message = normalize.parse(fetched.raw, self.policy)
            verdict = judge(message, self.policy, fetched.raw)
        eml = self.store.put_raw(identity, fetched.raw if fetched.raw is not None else (fetched.header or b""), writer)
        stored = []
        if verdict.lane != DROPPED:
            for attachment in message.attachments or []:
                path = self.store.put_attachment(attachment.sha256, attachment.filename, attachment.payload, writer)
                stored.append({"name": attachment.filename, "type": attachment.content_type,
                               "size": attachment.size, "path": str(path)})  # fmt: skip
        data = normalize.normalized(message, self.mailbox, folder, uidvalidity, fetched, identity=identity, rid=rid,
                                    verdict=verdict)  # fmt: skip
        if verdict.lane == DROPPED:
            return Prepared(verdict.lane, reasons=list(verdict.reasons), message_id=message.message_id, normalized=data)
        json_path = self.store.normalized_path(identity)  # written by stage(), with the delivery record
        text = normalize.render(self.contract.item, message, self.mailbox, folder, fetched, stored=stored, eml=eml,
                                json_path=json_path, auth_summary=verdict.auth_summary)  # fmt: skip
        screened = screen(text, verdict, self.policy, fetched.uid, rid)  # may park it (the verdict says so)
        prepared = Prepared(verdict.lane, screened.text, list(verdict.reasons), message.message_id, screened.secret,
                            data)  # fmt: skip
        if prepared.lane == PARKED and prepared.reasons:
            prepared.text = normalize.with_reasons(prepared.text, prepared.reasons)
        return prepared

    def _unprocessable(self, folder: str, fetched: Fetched, rid: str, why: str) -> Prepared:
        from spine_comms.mailroom.items import one_line

        reason = f"could not be processed: {one_line(why, 300)}"
        text, data = normalize.unprocessable(self.contract.item, self.mailbox, folder, fetched, rid, reason)
        return Prepared(PARKED, normalize.with_reasons(text, [reason]), [reason], normalized=data)
