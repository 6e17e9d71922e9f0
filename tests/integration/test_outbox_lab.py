"""communications.mail.send, outbox.flush and outbox.status against the lab's real Postfix and Dovecot.

Every test has a root and a mailroom of its own (tests/integration/test_outbox_support.py), so
the outbox store and the delivery log start empty. Mail goes to sink@ (or flaky@, an alias of
sink whose RCPT a test's policy service decides), and is counted there by Message-ID once
Postfix's queue is empty, so "exactly one" cannot be a message still on its way.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from tests.integration.test_outbox_support import (
    PolicyServer,
    count_with,
    log_lines,
    own_root,
    policy_port,
    queue_empty,
    records,
    run,
    start,
)  # fmt: skip

pytestmark = pytest.mark.lab
SEND = "communications.mail.send"
FLUSH = "communications.outbox.flush"
STATUS = "communications.outbox.status"
STARTTLS_CONTRACT = "version: 1\nsubmission: {form: STARTTLS}\nretry: {backoff_seconds: [1], max_attempts: 5}\n"


def subject(tag: str) -> str:
    return f"outbox {tag} {uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("contract, port_name", [(None, "submissions"), (STARTTLS_CONTRACT, "submission")])
def test_send_delivers_over_both_submission_forms(lab, tmp_path, read_mailbox, contract, port_name):
    root, env = own_root(lab, tmp_path, contract)
    title = subject(port_name)
    code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", title, "--body", "hello\n",
                         "--execute", env=env)  # fmt: skip
    assert code == 0, err
    data = out["data"]
    assert data["status"] == "delivered" and data["attempts"] == 1
    assert data["smtp_port"] == lab["ports"][port_name]
    assert data["message_id"].endswith("@spine.test>")
    found = read_mailbox("sink", wait_for=data["message_id"])
    raw = next(m for m in found if data["message_id"].encode() in m)
    assert b"\r\nDate: " in raw and b"X-Spine-Agent: communications.mail.send" in raw
    assert [e["status"] for e in log_lines(tmp_path)] == ["pending", "sent"]
    required = {"event_id", "created_at", "channel", "message_type", "provider", "recipient", "status"}
    assert all(required <= set(e) for e in log_lines(tmp_path))


def test_dry_run_shows_headers_and_writes_nothing(lab, tmp_path):
    root, env = own_root(lab, tmp_path)
    code, out, _ = run(root, SEND, "--to", "sink@spine.test", "--cc", "ops@spine.test", "--bcc", "alerts@spine.test",
                       "--subject", "plan", "--body", "x", env=env)  # fmt: skip
    assert code == 0 and out["data"]["status"] == "dry-run"
    headers = out["data"]["headers"]
    assert "To: sink@spine.test" in headers and "Cc: ops@spine.test" in headers
    assert not any(h.lower().startswith("bcc") for h in headers) and not any("alerts@" in h for h in headers)
    assert records(tmp_path) == {} and log_lines(tmp_path) == []


def test_same_send_twice_is_one_message(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    title = subject("twice")
    args = ("--to", "sink@spine.test", "--subject", title, "--body", "once\n", "--execute")
    first = run(root, SEND, *args, env=env)[1]["data"]
    second = run(root, SEND, *args, env=env)[1]["data"]
    assert second["send_id"] == first["send_id"] and second["new"] is False
    assert second["status"] == "delivered" and second["attempts"] == 1
    queue_empty(lab)
    assert count_with(read_mailbox("sink", wait_for=first["message_id"]), first["message_id"]) == 1


def test_header_injection_and_outside_recipients_refused_before_anything(lab, tmp_path):
    root, env = own_root(lab, tmp_path)
    code, _, err = run(root, SEND, "--to", "sink@spine.test", "--subject", "hi\r\nBcc: victim@spine.test",
                       "--body", "x", "--execute", env=env)  # fmt: skip
    assert code == 2 and "header injection" in err
    code, _, err = run(root, SEND, "--to", "sink@spine.test,someone@elsewhere.org", "--subject", "x", "--body", "x",
                       "--execute", env=env)  # fmt: skip
    assert code == 2 and "someone@elsewhere.org" in err and "outside the allowed domains" in err
    assert records(tmp_path) == {} and log_lines(tmp_path) == []


def test_wrong_password_is_an_error_not_retried_and_never_shown(lab, tmp_path):
    root, env = own_root(lab, tmp_path)
    sentinel = "Sentinel-" + uuid.uuid4().hex
    env = {**env, "STALWART_OPS_PASSWORD": sentinel}
    code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", subject("pw"), "--body", "x",
                         "--execute", env=env)  # fmt: skip
    assert code == 3, err
    assert out["data"]["status"] == "error" and "login refused" in out["data"]["last_error"]
    code, flushed, _ = run(root, FLUSH, "--ignore-backoff", env=env)
    assert code == 0 and flushed["data"]["sends"] == []  # an error is not retried
    (record,) = records(tmp_path).values()
    assert len(record["attempts"]) == 1
    everything = json.dumps(out) + err + json.dumps(flushed)
    everything += "".join(p.read_text() for p in Path(out["receipt"]).iterdir())
    everything += "".join(p.read_text() for p in (tmp_path / "mailroom").rglob("*") if p.is_file())
    assert sentinel not in everything


def test_an_unresolvable_password_refuses_before_the_outbox_so_no_flush_sends_it(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    stack = root / "bindings" / "communications.stack.contract.yaml"
    ops_secret = f"file:{lab['lab_dir']}/secrets/ops.password"
    assert ops_secret in stack.read_text()
    stack.write_text(stack.read_text().replace(ops_secret, "env:H4_OPS_PASSWORD_UNSET"))
    title = subject("nopw")
    args = ("--to", "sink@spine.test", "--subject", title, "--body", "x")
    code, out, _ = run(root, SEND, *args, env=env)  # the dry run says what --execute would do
    assert code == 0 and out["status"] == "warn"
    (check,) = [c for c in out["checks"] if c["id"] == "mail.send.credentials"]
    assert "H4_OPS_PASSWORD_UNSET" in check["detail"] and "--execute would refuse" in check["detail"]
    code, out, err = run(root, SEND, *args, "--execute", env=env)
    assert code == 2 and out["status"] == "error", err
    assert "H4_OPS_PASSWORD_UNSET" in out["error"]["message"]
    assert records(tmp_path) == {} and log_lines(tmp_path) == []  # nothing queued for a later flush
    # With the password there now, a flush finds nothing to send: the refused send never went out.
    code, flushed, _ = run(root, FLUSH, "--ignore-backoff", env={**env, "H4_OPS_PASSWORD_UNSET": lab_password(lab)})
    assert code == 0 and flushed["data"]["sends"] == []
    queue_empty(lab)
    assert count_with(read_mailbox("sink"), title) == 0


def test_a_full_outbox_disk_is_exit_3_naming_the_path_and_sends_nothing(lab, tmp_path, read_mailbox):
    import subprocess

    root, env = own_root(lab, tmp_path)
    mailroom = tmp_path / "mailroom"
    mailroom.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mailroom)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    title = subject("full")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={mailroom / 'filler'}", "bs=4k"], capture_output=True, check=False)
        code, out, err = run(root, SEND, "--to", "sink@spine.test", "--subject", title, "--body", "x" * 5000,
                             "--execute", env=env)  # fmt: skip
        assert code == 3 and out["status"] == "error", (code, err[-600:])
        assert out["error"]["reference"] == "disk-full" and str(mailroom) in out["error"]["message"]
        assert "Traceback" not in err
    finally:
        subprocess.run(["umount", "-l", str(mailroom)], check=False)
    queue_empty(lab)
    assert count_with(read_mailbox("sink"), title) == 0


def lab_password(lab: dict, user: str = "ops") -> str:
    return Path(lab["lab_dir"], "secrets", f"{user}.password").read_text().strip()


def test_from_not_owned_by_the_login_is_permanent(lab, tmp_path, lab_credentials):
    # The alerts mailbox, logged in as ops: Postfix (reject_authenticated_sender_login_mismatch), like
    # Stalwart (mustMatchSender), refuses the MAIL FROM with a 5xx.
    root, env = own_root(lab, tmp_path)
    env = {**env, "STALWART_ALERTS_USER": "ops@spine.test", "STALWART_ALERTS_PASSWORD": lab_credentials["ops"]}
    code, out, _ = run(root, SEND, "--from", "alerts", "--to", "sink@spine.test", "--subject", subject("owner"),
                       "--body", "x", "--execute", env=env)  # fmt: skip
    assert code == 1
    data = out["data"]
    assert data["status"] == "failed" and data["history"][-1]["code"] // 100 == 5
    assert data["history"][-1]["stage"] == "mail"
    notice = Path(data["notice_item"])
    assert notice.parent.name == "queued" and "untrusted-bounce" in notice.read_text()
    assert run(root, FLUSH, "--ignore-backoff", env=env)[1]["data"]["sends"] == []
    assert log_lines(tmp_path)[-1]["status"] == "failed"


def test_transient_failure_retried_by_flush_then_delivered_once(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    title = subject("flaky")
    code, out, _ = run(root, SEND, "--to", "flaky@spine.test", "--subject", title, "--body", "x", "--execute", env=env)
    data = out["data"]
    assert code == 0 and data["status"] == "deferred"
    assert data["history"][0]["code"] == 451 and data["history"][0]["enhanced"] == "4.3.5"
    policy = PolicyServer(policy_port(lab))
    try:
        code, flushed, err = run(root, FLUSH, "--ignore-backoff", env=env)
    finally:
        policy.close()
    assert code == 0, err
    assert [s["status"] for s in flushed["data"]["sends"]] == ["delivered"]
    assert policy.requests >= 1
    queue_empty(lab)
    assert count_with(read_mailbox("sink", wait_for=data["message_id"]), data["message_id"]) == 1
    assert run(root, FLUSH, "--ignore-backoff", env=env)[1]["data"]["sends"] == []
    code, status, _ = run(root, STATUS, "--send", data["send_id"], env=env)
    (entry,) = status["data"]["sends"]
    assert entry["status"] == "delivered" and [a["outcome"] for a in entry["attempts"]] == ["transient", "delivered"]


def test_killed_mid_send_then_flush_delivers_exactly_once(lab, tmp_path, read_mailbox):
    root, env = own_root(lab, tmp_path)
    title = subject("killed")
    policy = PolicyServer(policy_port(lab), mode="hold")
    try:
        proc = start(root, SEND, "--to", "flaky@spine.test", "--subject", title, "--body", "x", "--execute", env=env)
        assert policy.asked.wait(60), "Postfix never asked the policy service"
        os.kill(proc.pid, signal.SIGKILL)  # the RCPT reply is still held: the attempt is in flight
        proc.wait(10)
        (record,) = records(tmp_path).values()
        assert record["status"] == "attempting" and record["attempts"][-1]["phase"] == "envelope"
        policy.release()
        code, flushed, err = run(root, FLUSH, env=env)
    finally:
        policy.close()
    assert code == 0, err
    (entry,) = flushed["data"]["sends"]
    assert entry["before"] == "attempting" and entry["status"] == "delivered"
    final = records(tmp_path)[record["send_id"]]
    assert [a["outcome"] for a in final["attempts"]] == ["interrupted", "delivered"]
    queue_empty(lab)
    assert count_with(read_mailbox("sink", wait_for=record["message_id"]), record["message_id"]) == 1


def test_interrupted_after_data_found_in_sent_is_not_resent(lab, tmp_path, lab_credentials, lab_ssl_context):
    """Crash after DATA began: the outcome is unknown. With a copy in the sender's Sent folder
    (what a server that files submissions there gives) flush calls it delivered; without, it
    stays unknown and is not resent."""
    from imapclient import IMAPClient

    from tests.conftest import _AsMailHost

    tls = _AsMailHost(lab_ssl_context)
    root, env = own_root(lab, tmp_path)
    code, out, _ = run(root, SEND, "--to", "flaky@spine.test", "--subject", subject("after-data"), "--body", "x",
                       "--execute", env=env)  # fmt: skip
    assert out["data"]["status"] == "deferred"  # 451 at RCPT: nothing was accepted
    send_id, message_id = out["data"]["send_id"], out["data"]["message_id"]
    path = tmp_path / "mailroom" / "state" / "outbox" / "sends" / f"{send_id}.json"
    record = json.loads(path.read_text())
    record["status"] = "attempting"
    record["attempts"].append({"n": 2, "phase": "data", "started_at": record["created_at"]})
    path.write_text(json.dumps(record))
    code, flushed, _ = run(root, FLUSH, env=env)
    assert flushed["data"]["sends"][0]["status"] == "unknown" and code == 0
    assert records(tmp_path)[send_id]["status"] == "unknown"
    assert len(records(tmp_path)[send_id]["attempts"]) == 2  # not resent

    raw = (tmp_path / "mailroom" / "state" / "outbox" / "sends" / f"{send_id}.eml").read_bytes()
    with IMAPClient(lab["host"], port=lab["ports"]["imaps"], ssl_context=tls, timeout=10) as imap:
        imap.login("ops@spine.test", lab_credentials["ops"])
        imap.append("Sent", raw)
    try:
        code, flushed, _ = run(root, FLUSH, env=env)
        assert flushed["data"]["sends"][0]["status"] == "delivered", flushed
        final = records(tmp_path)[send_id]
        assert final["attempts"][-1]["resolved_by"] == "sender_folder" and len(final["attempts"]) == 2
    finally:
        with IMAPClient(lab["host"], port=lab["ports"]["imaps"], ssl_context=tls, timeout=10) as imap:
            imap.login("ops@spine.test", lab_credentials["ops"])
            imap.select_folder("Sent")
            uids = imap.search(["HEADER", "Message-ID", message_id])
            if uids:
                imap.delete_messages(uids)
                imap.expunge()


def test_status_lists_history_and_fails_on_a_failed_send(lab, tmp_path, lab_credentials):
    root, env = own_root(lab, tmp_path)
    code, out, _ = run(root, STATUS, env=env)
    assert code == 0 and out["data"]["total"] == 0
    env_bad = {**env, "STALWART_ALERTS_USER": "ops@spine.test", "STALWART_ALERTS_PASSWORD": lab_credentials["ops"]}
    run(root, SEND, "--from", "alerts", "--to", "sink@spine.test", "--subject", subject("st"), "--body", "x",
        "--execute", env=env_bad)  # fmt: skip
    code, out, _ = run(root, STATUS, env=env)
    assert code == 1 and out["data"]["counts"] == {"failed": 1}
    assert any(c["id"] == "outbox.status.send" and c["status"] == "fail" for c in out["checks"])
