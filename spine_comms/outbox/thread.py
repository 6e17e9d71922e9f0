"""`--in-reply-to`: the stored inbound message a reply answers, found in the inbox state.

The inbox pipeline keeps each message normalized as messages/<sha[:2]>/<sha>.json; the one
whose message_id matches gives In-Reply-To and References (its own References, then its
Message-ID), so the recipient's client threads the reply. An id we never received is a
usage error: replying to a guess would thread into someone else's conversation. Both ids come
from a received message, so they are checked as msg-ids before use (outbox.compose): an id that
decodes to a line break, or is not a plain <left@right>, is never written into a header.
"""

from __future__ import annotations

import json

from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.outbox.store import normalize_message_id


def find_inbound(ctx: RunContext, message_id: str) -> dict:
    from spine_comms.contracts.inbox import INBOX_CONTRACT, InboxContract

    wanted = normalize_message_id(message_id)
    if not wanted:
        raise UsageError("--in-reply-to: give the Message-ID of a stored inbound message, e.g. <abc@example.org>")
    if not ctx.contracts.exists(INBOX_CONTRACT):
        raise UsageError(f"--in-reply-to needs the inbox state, and there is no {INBOX_CONTRACT} to find it")
    # The inbox's store (inbox/store.py: messages/<sha[:2]>/<sha>.json), found through the contract: the
    # outbox never imports the inbox, whose pipeline hands its bounces to the outbox.
    directory = ctx.contracts.load(INBOX_CONTRACT, InboxContract).state_path(ctx.mailroom.state) / "messages"
    needle = wanted.encode("utf-8")
    for path in sorted(directory.glob("*/*.json")) if directory.is_dir() else []:
        try:
            raw = path.read_bytes()
            if needle not in raw.lower():  # cheap filter before parsing
                continue
            message = json.loads(raw)
        except (OSError, json.JSONDecodeError):
            continue
        if normalize_message_id(message.get("message_id")) == wanted:
            _writable(message["message_id"], path)
            return {"message_id": message["message_id"], "references": list(message.get("references") or []),
                    "subject": message.get("subject"), "json": str(path)}  # fmt: skip
    raise UsageError(f"--in-reply-to: {message_id} is not a stored inbound message (searched {directory})",
                     hint="use the Message-ID from a mailroom item's References")  # fmt: skip


def _writable(message_id: str, path) -> None:
    from spine_comms.outbox.compose import check_message_id

    try:
        check_message_id("In-Reply-To", message_id)
    except UsageError as exc:
        raise UsageError(f"--in-reply-to: the stored message's own id cannot be written back safely ({exc}); "
                         f"see {path}") from None  # fmt: skip
