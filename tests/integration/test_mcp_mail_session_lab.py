"""An agent's mail session over MCP (the SDK's client over stdio) against the lab: it polls, finds a reply,
shows its thread, drafts an answer for approval, and is refused sending it without confirm; a person then
approves it with the CLI and it is delivered once.

With MCP_SESSION_TRANSCRIPT=FILE the session is also written there as the transcript docs/agents.md shows.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.integration.test_mcp_lab import session
from tests.integration.test_outbox_support import count_with, own_root, queue_empty, records, run
from tests.mailbox_fill import imap_client

pytestmark = pytest.mark.lab

# What the transcript shows of each result's data (the rest is in the envelope, and in the receipt).
SHOWN = {
    "communications_inbox_poll": ("mailbox", "unseen_count", "fetched_count", "messages"),
    "communications_mail_search": ("total", "untrusted", "messages"),
    "communications_thread_show": ("count", "thread_id", "complete", "messages"),
    "communications_mail_draft": ("draft_id", "status", "to", "subject", "folder", "uids", "item", "original"),
    "communications_inbox_senders": ("allow", "deny", "checks"),
}
MESSAGE_KEYS = ("uid", "message_id", "from", "subject", "in_reply_to", "body", "linked_by")
REDACTED_PATH = "<mailroom>"


def _mail(lab_send, token: str) -> tuple[str, str]:
    """alerts@ asks ops@ something, then follows up quoting it: the thread the agent answers."""
    first = lab_send("alerts", "ops", subject=f"Disk almost full on db1 ({token})",
                     body="db1 /var is at 91%.\nCan you rotate the logs today?\n\n-- \nalerts\n")  # fmt: skip
    follow = EmailMessage()
    follow["From"], follow["To"] = "alerts@spine.test", "ops@spine.test"
    follow["Subject"] = f"Re: Disk almost full on db1 ({token})"
    follow["Message-ID"], follow["In-Reply-To"], follow["References"] = make_msgid(domain="spine.test"), first, first
    follow.set_content("Now at 97%. Please hurry.\n\nOn Sun, 6 Dec 2026 at 02:40, alerts wrote:\n"
                       "> db1 /var is at 91%.\n> Can you rotate the logs today?\n")  # fmt: skip
    return first, lab_send("alerts", "ops", message=follow)


def _wait_for(root: Path, env: dict, token: str, count: int) -> None:
    for _ in range(100):  # delivery is asynchronous
        code, out, _ = run(root, "communications.mail.search", "--subject", token, env=env)
        if code == 0 and out["data"]["total"] >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} messages with {token} never arrived")


def test_an_agent_polls_reads_a_thread_drafts_a_reply_and_cannot_send_it_unapproved(lab, tmp_path, send_mail,
                                                                                     read_mailbox):  # fmt: skip
    root, env = own_root(lab, tmp_path)
    token = uuid.uuid4().hex[:8]
    first, follow = _mail(send_mail, token)
    _wait_for(root, env, token, 2)
    calls: list[tuple[str, dict, object]] = []

    async def work(client):
        tools = (await client.list_tools()).tools

        async def call(name: str, arguments: dict):
            result = await client.call_tool(name, arguments)
            calls.append((name, arguments, result))
            return result

        await call("communications_inbox_poll", {"mailbox": "ops", "limit": 1})
        found = await call("communications_mail_search", {"mailbox": "ops", "subject": token, "top": 1,
                                                           "body_chars": 300})  # fmt: skip
        newest = found.structured_content["data"]["messages"][0]["message_id"]
        await call("communications_thread_show", {"mailbox": "ops", "message_id": newest})
        await call("communications_inbox_senders", {"check": ["alerts@spine.test"]})
        answer = {"reply": newest, "body": "Rotating the logs now.", "note": "answers the disk alert", "execute": True}
        drafted = await call("communications_mail_draft", answer)
        draft_id = drafted.structured_content["data"]["draft_id"]
        await call("communications_draft_send", {"draft_id": draft_id})
        return tools

    tools = {t.name: t for t in session(root, work, env=env)}
    assert "confirm" in tools["communications_draft_send"].input_schema["properties"]
    assert tools["communications_inbox_senders"].annotations.read_only_hint is True
    results = {name: result for name, _, result in calls}
    assert all(not r.is_error for n, r in results.items() if n != "communications_draft_send")

    newest = results["communications_mail_search"].structured_content["data"]["messages"][0]
    assert newest["message_id"] == follow and newest["body"]["untrusted"] is True
    thread = results["communications_thread_show"].structured_content["data"]
    assert [m["message_id"] for m in thread["messages"]] == [first, follow]
    assert [m["body"]["new_text"] for m in thread["messages"]] == [
        "db1 /var is at 91%.\nCan you rotate the logs today?", "Now at 97%. Please hurry."]  # fmt: skip
    senders = results["communications_inbox_senders"].structured_content["data"]
    assert senders["checks"][0]["address"] == "alerts@spine.test" and "allow" in senders and "deny" in senders

    drafted = results["communications_mail_draft"].structured_content
    assert drafted["status"] == "ok" and drafted["exit_code"] == 0 and drafted["run_key"]
    draft = drafted["data"]
    assert draft["to"] == ["alerts@spine.test"] and draft["subject"] == f"Re: Disk almost full on db1 ({token})"
    assert draft["original"]["message_id"] == follow and Path(draft["item"]).is_file()
    with imap_client(lab, "ops") as imap:
        imap.select_folder(draft["folder"], readonly=True)
        assert imap.search(["HEADER", "X-Spine-Draft-Id", draft["draft_id"]]) == draft["uids"]

    refused = results["communications_draft_send"]
    assert refused.is_error is True and refused.structured_content["run_key"] is None
    assert refused.structured_content["error"]["reference"] == "approval-required"
    assert records(tmp_path) == {}  # nothing in the outbox: the refusal came before anything ran
    assert not any(json.loads(p.read_text())["capability"] == "communications.draft.send"
                   for p in (root / "receipts").rglob("receipt.json"))  # fmt: skip

    # A person approves: sent once, threaded under the message answered.
    code, sent, err = run(root, "communications.draft.send", "--id", draft["draft_id"], "--yes", env=env)
    assert code == 0 and sent["data"]["status"] == "delivered", err
    queue_empty(lab)
    got = read_mailbox("alerts", wait_for=sent["data"]["message_id"])
    assert count_with(got, sent["data"]["message_id"]) == 1
    raw = next(m for m in got if sent["data"]["message_id"].encode() in m)
    assert f"In-Reply-To: {follow}".encode() in raw
    if os.environ.get("MCP_SESSION_TRANSCRIPT"):
        text = transcript(tools, calls, sent, Path(draft["item"]).read_text())
        Path(os.environ["MCP_SESSION_TRANSCRIPT"]).write_text(text.replace(str(tmp_path / "mailroom"), REDACTED_PATH))


def _trim(name: str, envelope: dict) -> dict:
    shown = {k: envelope[k] for k in ("capability", "status", "exit_code", "run_key") if k in envelope}
    if "error" in envelope:
        shown["error"] = envelope["error"]
        return shown
    data = envelope.get("data") or {}
    shown["data"] = {k: data[k] for k in SHOWN.get(name, ()) if k in data}
    for key in ("messages",):
        if key in shown["data"]:
            shown["data"][key] = [{k: m[k] for k in MESSAGE_KEYS if k in m} for m in shown["data"][key]]
    return shown


def transcript(tools: dict, calls: list, sent: dict, item: str) -> str:
    names = list(tools)
    lines = ["→ tools/list", f"← {len(names)} tools, among them: " + ", ".join(
        n for n in names if n.startswith(("communications_mail", "communications_draft", "communications_thread",
                                          "communications_inbox")))]  # fmt: skip
    schema = tools["communications_draft_send"].input_schema
    lines.append("  communications_draft_send.inputSchema = " + json.dumps(schema, indent=2))
    for name, arguments, result in calls:
        lines += ["", f"→ tools/call {name} {json.dumps(arguments)}"]
        flag = "isError=True\n " if result.is_error else ""
        lines.append(f"← {flag}" + json.dumps(_trim(name, result.structured_content), indent=2))
    lines += ["", "# the approval item in the mailroom (queued/):", item.rstrip("\n")]
    lines += ["", "# a person approves, at the shell:",
              f"$ spine-comms communications.draft.send --id {calls[-2][2].structured_content['data']['draft_id']} "
              "--yes --json",
              json.dumps({k: sent["data"].get(k) for k in ("status", "to", "subject", "message_id", "attempts",
                                                           "removed_from_drafts")}, indent=2)]  # fmt: skip
    return "\n".join(lines) + "\n"


def test_with_confirm_a_person_approved_draft_is_sent_once_through_mcp(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    title = f"approved over mcp {uuid.uuid4().hex[:8]}"
    code, drafted, err = run(root, "communications.mail.draft", "--to", "sink@spine.test", "--subject", title,
                             "--body", "ok", "--execute", env=env)  # fmt: skip
    assert code == 0, err
    draft_id = drafted["data"]["draft_id"]

    async def work(client):
        arguments = {"draft_id": draft_id, "confirm": True}
        return [await client.call_tool("communications_draft_send", arguments),
                await client.call_tool("communications_draft_send", arguments)]  # fmt: skip

    first, second = (r.structured_content for r in session(root, work, env=env))
    assert first["status"] == "ok" and first["data"]["status"] == "delivered" and first["run_key"]
    assert second["data"]["already_sent"] is True and second["data"]["new"] is False
    queue_empty(lab)
    assert count_with(read_mailbox("sink", wait_for=title), title) == 1
