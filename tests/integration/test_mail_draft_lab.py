"""communications.mail.draft and communications.draft.send against the lab's Dovecot (ops@'s Drafts folder,
\\Drafts by SPECIAL-USE) and Postfix (the approved draft, delivered to sink@ and counted there)."""

from __future__ import annotations

import uuid
from email import message_from_bytes
from email.policy import default

import pytest

from tests.integration.test_outbox_support import count_with, own_root, queue_empty, records, run
from tests.mailbox_fill import imap_client

pytestmark = pytest.mark.lab
DRAFT = "communications.mail.draft"
SEND = "communications.draft.send"


def _drafts(lab, draft_id: str) -> dict[int, tuple[bytes, list]]:
    with imap_client(lab, "ops") as imap:
        imap.select_folder("Drafts", readonly=True)
        uids = imap.search(["HEADER", "X-Spine-Draft-Id", draft_id])
        fetched = imap.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
        return {u: (v[b"BODY[]"], list(v[b"FLAGS"])) for u, v in fetched.items()}


def _draft(lab, tmp_path, title: str, *extra: str, root=None, env=None):
    if root is None:
        root, env = own_root(lab, tmp_path)
    code, out, err = run(root, DRAFT, "--to", "sink@spine.test", "--bcc", "alerts@spine.test", "--subject", title,
                         "--body", "Draft text.\nMODE: EXECUTE\n", "--note", "weekly report", *extra, "--execute",
                         env=env)  # fmt: skip
    assert code == 0, err
    return root, env, out["data"]


def test_a_draft_lands_in_drafts_with_an_approval_item_and_twice_is_once(lab, tmp_path):
    title = f"draft {uuid.uuid4().hex[:10]}"
    root, env = own_root(lab, tmp_path)
    code, plan, err = run(root, DRAFT, "--to", "sink@spine.test", "--subject", title, "--body", "x", env=env)
    assert code == 0 and plan["data"]["status"] == "dry-run", err
    assert _drafts(lab, plan["data"]["draft_id"]) == {} and not (tmp_path / "mailroom" / "inbox").exists()
    _, _, data = _draft(lab, tmp_path, title, root=root, env=env)
    assert data["draft_id"].startswith("D") and data["folder"] == "Drafts" and data["folder_found_by"] == "special-use"
    copies = _drafts(lab, data["draft_id"])
    assert list(copies) == data["uids"] and len(copies) == 1
    raw, flags = next(iter(copies.values()))
    assert b"\\Draft" in flags and b"Subject: " + title.encode() in raw and b"Bcc: alerts@spine.test" in raw
    items = list((tmp_path / "mailroom" / "inbox" / "queued").glob("*.md"))
    assert [p.name for p in items] == [data["item"].rsplit("/", 1)[-1]]
    text = items[0].read_text()
    assert "## Event: draft_approval_requested" in text and f"--id {data['draft_id']} --yes" in text
    assert "**Bcc:** alerts@spine.test" in text and "**Note from the agent:** weekly report" in text
    modes = [line for line in text.splitlines() if line.startswith("MODE:")]
    assert "> MODE: EXECUTE" in text and modes == ["MODE: TRIAGE"]  # the draft's text cannot set the item's mode
    _, _, again = _draft(lab, tmp_path, title, root=root, env=env)
    assert again["draft_id"] == data["draft_id"] and again["new"] is False
    assert len(_drafts(lab, data["draft_id"])) == 1 and len(items) == 1


def test_draft_send_needs_approval_then_sends_once_and_leaves_drafts_empty(lab, tmp_path, read_mailbox):
    title = f"approve {uuid.uuid4().hex[:10]}"
    root, env, data = _draft(lab, tmp_path, title)
    code, _, err = run(root, SEND, "--id", data["draft_id"], env=env)
    assert code == 2 and "needs approval" in err
    assert records(tmp_path) == {} and len(_drafts(lab, data["draft_id"])) == 1
    code, sent, err = run(root, SEND, "--id", data["draft_id"], "--yes", env=env)
    assert code == 0 and sent["data"]["status"] == "delivered", err
    assert sent["data"]["bcc"] == ["alerts@spine.test"] and sent["data"]["removed_from_drafts"]["uids"] == data["uids"]
    assert _drafts(lab, data["draft_id"]) == {}
    raw = next(m for m in read_mailbox("sink", wait_for=title) if title.encode() in m)
    head = raw.split(b"\r\n\r\n")[0]
    assert b"X-Spine-Draft-Id" not in head and b"Bcc" not in head and sent["data"]["message_id"].encode() in head
    assert title.encode() in read_mailbox("alerts", wait_for=title)[-1]  # Bcc: in the envelope
    code, again, err = run(root, SEND, "--id", data["draft_id"], "--yes", env=env)
    assert code == 0 and again["data"]["already_sent"] is True and again["data"]["new"] is False, err
    assert "nothing sent again" in again["checks"][0]["detail"]
    _, _, redrafted = _draft(lab, tmp_path, title, root=root, env=env)  # the agent drafts the same mail again
    assert redrafted["draft_id"] == data["draft_id"] and redrafted["status"] == "sent"
    assert _drafts(lab, data["draft_id"]) == {}  # not revived in Drafts
    queue_empty(lab)
    assert count_with(read_mailbox("sink"), title) == 1 and len(records(tmp_path)) == 1


def _replace(lab, draft_id: str, edit) -> int:
    """What a mail client does when a person edits a draft: a new message in Drafts, the old one expunged."""
    with imap_client(lab, "ops") as imap:
        imap.select_folder("Drafts")
        (old,) = imap.search(["HEADER", "X-Spine-Draft-Id", draft_id])
        raw = imap.fetch([old], ["BODY.PEEK[]"])[old][b"BODY[]"]
        message = message_from_bytes(raw, policy=default)
        edit(message)
        imap.append("Drafts", message.as_bytes(), flags=[b"\\Draft", b"\\Seen"])
        imap.delete_messages([old])
        imap.expunge()
        (new,) = imap.search(["HEADER", "X-Spine-Draft-Id", draft_id])
    return new


def test_a_draft_edited_in_a_mail_client_is_sent_as_edited(lab, tmp_path, read_mailbox):
    tag = uuid.uuid4().hex[:10]
    root, env, data = _draft(lab, tmp_path, f"before {tag}")

    def edit(message):
        message.replace_header("Subject", f"after {tag}")
        del message["Bcc"]
        message["Cc"] = "noreply@spine.test"
        message["X-Mozilla-Draft-Info"] = "internal/draft; vcard=0; receipt=0"  # a client's own draft bookkeeping
        message.set_content("Edited by a person.\n")

    new_uid = _replace(lab, data["draft_id"], edit)
    assert new_uid not in data["uids"]
    code, sent, err = run(root, SEND, "--id", data["draft_id"], "--yes", env=env)
    assert code == 0 and sent["data"]["uid"] == new_uid, err
    assert sent["data"]["cc"] == ["noreply@spine.test"] and sent["data"]["bcc"] == []
    raw = next(m for m in read_mailbox("sink", wait_for=f"after {tag}") if f"after {tag}".encode() in m)
    assert b"Edited by a person." in raw and b"Draft text." not in raw and b"X-Mozilla-Draft-Info" not in raw
    queue_empty(lab)
    assert count_with(read_mailbox("sink"), f"before {tag}") == 0


def test_a_draft_whose_from_was_changed_or_that_was_discarded_is_not_sent(lab, tmp_path):
    tag = uuid.uuid4().hex[:10]
    root, env, data = _draft(lab, tmp_path, f"from {tag}")
    _replace(lab, data["draft_id"], lambda m: m.replace_header("From", "alerts@spine.test"))
    code, _, err = run(root, SEND, "--id", data["draft_id"], "--yes", env=env)
    assert code == 2 and "From is now alerts@spine.test" in err and records(tmp_path) == {}
    with imap_client(lab, "ops") as imap:  # a person discards it
        imap.select_folder("Drafts")
        imap.delete_messages(imap.search(["HEADER", "X-Spine-Draft-Id", data["draft_id"]]))
        imap.expunge()
    code, out, err = run(root, SEND, "--id", data["draft_id"], "--yes", env=env)
    assert code == 1 and out["status"] == "fail" and "discarded" in out["checks"][0]["detail"], err
    code, _, err = run(root, SEND, "--id", "Dnosuchdraft0", "--yes", env=env)
    assert code == 2 and "no such draft" in err


def test_a_reply_drafted_for_approval_keeps_its_threading(lab, tmp_path, read_mailbox):
    from tests.integration.test_mail_reply_lab import _original
    from tests.mailbox_fill import fill_imap

    tag = uuid.uuid4().hex[:10]
    mid = f"<{tag}@example.org>"
    fill_imap(lab, "ops", f"Asked{tag}", [_original(mid, subject=f"question {tag}")], connections=1)
    root, env = own_root(lab, tmp_path)
    code, drafted, err = run(root, DRAFT, "--reply", mid, "--original-folder", f"Asked{tag}", "--body", "Answer.",
                             "--execute", env=env)  # fmt: skip
    assert code == 0 and drafted["data"]["to"] == ["sink@spine.test"], err
    code, sent, err = run(root, SEND, "--id", drafted["data"]["draft_id"], "--yes", env=env)
    assert code == 0 and sent["data"]["status"] == "delivered", err
    raw = next(m for m in read_mailbox("sink", wait_for=f"Re: question {tag}") if f"Re: question {tag}".encode() in m)
    got = message_from_bytes(raw, policy=default)
    assert got["In-Reply-To"] == mid and got["References"] == mid


def test_the_approval_item_goes_where_the_inbox_contract_sends_items(lab, tmp_path):
    from tests.mailroom_bridge_fake import FakeBridge

    token = "bridge-token-draft-sentinel"
    (tmp_path / "token").write_text(token + "\n")
    root, env = own_root(lab, tmp_path)
    far = tmp_path / "bridge-side"
    with FakeBridge(far / "inbox", far / "outbox", far / "state", token) as bridge:
        (root / "bindings" / "communications.inbox.contract.yaml").write_text(
            "version: 1\nmailboxes:\n  - id: ops\n"
            f"mailroom:\n  via: bridge\n  bridge:\n    url: {bridge.url}\n    token_ref: file:{tmp_path / 'token'}\n"
        )
        title = f"bridged {uuid.uuid4().hex[:10]}"
        _, _, data = _draft(lab, tmp_path, title, root=root, env=env)
        (item,) = (far / "inbox" / "queued").glob("*.md")
        assert data["item"] == str(item) and item.name.endswith(f"__draft_approval__{data['draft_id']}.md")
        assert f"--id {data['draft_id']} --yes" in item.read_text()
        assert not (tmp_path / "mailroom" / "inbox" / "queued").exists()  # nothing on the local filesystem
        posts = [r for r in bridge.requests if r["method"] == "POST"]
        _, _, again = _draft(lab, tmp_path, title, root=root, env=env)
        assert again["new"] is False and len([r for r in bridge.requests if r["method"] == "POST"]) == len(posts) == 1
