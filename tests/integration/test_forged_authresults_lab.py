"""Mail that lies about its authentication (RFC 8601 §5, §7.1), against the lab's real servers.

Over SMTP a forgery is written as the lab's FORGED_AR_HEADER, which the milters never read and the
delivery renames back (lab/postfix.py): it arrives intact below the receiver's own block, as from
Stalwart. IMAP APPEND puts a message in with no receiver block at all. Neither may pass.
"""

from __future__ import annotations

import json
import smtplib
import time
import uuid

import pytest

from lab.postfix import FORGED_AR_HEADER
from tests.cli_process import run_capability
from tests.integration.inbox_lab import items, make_root, run
from tests.integration.test_probe_lab import checks_by_id, probe
from tests.mailbox_fill import fill_imap

pytestmark = pytest.mark.lab

FORGERIES = [
    "{id}; dkim=pass header.d=spine.test; spf=pass smtp.mailfrom=spine.test; dmarc=pass header.from=spine.test",
    "{id} (forged); dmarc=pass header.from=spine.test",
    '"{id}"; dmarc=pass header.from=spine.test',
    "{id} 1; dmarc=pass header.from=spine.test",
    "{id}.; dmarc=pass header.from=spine.test",
    "MAIL.SPINE.TEST; dmarc=pass header.from=spine.test",
    "=?utf-8?q?{id}=3B_dmarc=3Dpass?=",
]


def _ceo_message(mid: str, forged: list[str], name: str = "Authentication-Results") -> bytes:
    top = "".join(f"{name}: {value}\r\n" for value in forged)
    return (
        f"{top}From: CEO <ceo@spine.test>\r\nTo: ops@spine.test\r\nSubject: wire the money {mid}\r\n"
        f"Date: Sun, 06 Dec 2026 01:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\nPay invoice 42 today.\r\n"
    ).encode()


def _item_for(root, mid: str) -> tuple[str, str]:
    for lane, paths in items(root).items():
        for path in paths:
            text = path.read_text()
            if mid in text:
                return lane, text
    raise AssertionError(f"no item for {mid}: {items(root)}")


def _verification(text: str) -> str:
    return text.split("**Sender verification:** ")[1].split("\n")[0]


def _poll_ops_inbox(lab, lab_root, tmp_path, mid: str, policy: str = "  dmarc_fail: quarantine"):
    root = make_root(tmp_path, lab, lab_root, folders=["INBOX"], user="ops", policy=policy)
    code, env, _ = run(root, "--enqueue")
    assert code in (0, 1) and env["status"] in ("ok", "warn"), env.get("summary")
    return _item_for(root, mid)


def test_a_forgery_sent_over_smtp_stays_below_the_receivers_block_and_dmarc_fail_still_parks(
    lab, lab_root, tmp_path, read_mailbox
):
    mid = f"<forged-smtp.{uuid.uuid4().hex[:8]}@example.net>"
    forged = [f.format(id=lab["authserv_id"]) for f in FORGERIES]
    with smtplib.SMTP(lab["host"], lab["ports"]["smtp"], timeout=10) as smtp:
        smtp.sendmail("ceo@example.net", ["ops@spine.test"], _ceo_message(mid, forged, FORGED_AR_HEADER))
    [raw] = [m for m in read_mailbox("ops", wait_for=mid) if mid.encode() in m]
    # The lab delivered like Stalwart: every forged header kept, below the receiver's own.
    header = raw.split(b"\r\n\r\n")[0].decode()
    assert all(f in header for f in forged[:2]) and FORGED_AR_HEADER not in header
    assert header.index("dmarc=fail") < header.index("by mx.spine.test") < header.index(forged[0])

    lane, text = _poll_ops_inbox(lab, lab_root, tmp_path, mid)
    said = _verification(text)
    assert lane == "parked", said  # policy.dmarc_fail: quarantine held against the forged passes
    assert said.startswith("mail.spine.test says dkim=none spf=pass dmarc=fail"), said
    assert "dmarc=pass" not in said.split(";")[0] and "dkim=pass" not in said.split(";")[0]
    assert f"ignored {len(forged)} untrusted Authentication-Results" in said
    assert "dmarc=fail from mail.spine.test (policy.dmarc_fail: quarantine)" in text


def test_an_appended_forgery_is_queued_as_not_verified(lab, lab_root, tmp_path):
    mid = f"<forged-append.{uuid.uuid4().hex[:8]}@example.net>"
    fill_imap(lab, "ops", "INBOX", [_ceo_message(mid, [f"{lab['authserv_id']}; dkim=pass; dmarc=pass"])],
              connections=1)  # fmt: skip
    lane, text = _poll_ops_inbox(lab, lab_root, tmp_path, mid)
    said = _verification(text)
    assert said.startswith("not verified: "), said
    assert "mail.spine.test says" not in text and "dkim=pass dmarc=pass" not in said
    assert "ignored 1 untrusted Authentication-Results" in said
    assert lane == "queued"  # nothing says dmarc=fail either: the item says it was not verified


def test_an_allow_listed_from_forged_over_smtp_is_parked_and_the_authenticated_one_queued(
    lab, lab_root, tmp_path, read_mailbox, send_mail
):
    """policy.senders.allow names ceo@ and alerts@; dmarc_fail: enqueue, so only the allow rule stands
    between a forged ceo@ and the queue. The receiver says dmarc=fail for the forgery: parked. alerts@'s
    own mail (submission, signed by OpenDKIM) has dmarc=pass: queued."""
    forged_mid = f"<allow-forged.{uuid.uuid4().hex[:8]}@example.net>"
    with smtplib.SMTP(lab["host"], lab["ports"]["smtp"], timeout=10) as smtp:
        smtp.sendmail("ceo@example.net", ["ops@spine.test"], _ceo_message(forged_mid, []))
    real_mid = send_mail("alerts", "ops", subject="disk report", body="92% used\n")
    for mid in (forged_mid, real_mid):
        read_mailbox("ops", wait_for=mid)
    policy = "  dmarc_fail: enqueue\n  senders: {allow: [ceo@spine.test, alerts@spine.test]}"
    root = make_root(tmp_path, lab, lab_root, folders=["INBOX"], user="ops", policy=policy)
    code, env, _ = run(root, "--enqueue")
    assert code in (0, 1) and env["status"] in ("ok", "warn"), env.get("summary")
    lane, text = _item_for(root, forged_mid)
    assert lane == "parked", _verification(text)
    assert "is on policy.senders.allow, but mail.spine.test judged the message and its From has dmarc=fail" in text
    lane, text = _item_for(root, real_mid)
    assert lane == "queued" and "dmarc=pass" in _verification(text), text[:2000]


def test_the_probe_reports_a_forged_receiver_header_as_untrusted(lab_root):
    forged = f"{FORGED_AR_HEADER}: mail.spine.test; dkim=pass; spf=pass smtp.mailfrom=example.org; dmarc=pass"
    started = time.monotonic()
    code, env, _ = probe(lab_root, "--header", forged)
    assert code == 0 and env["status"] == "warn", json.dumps(env["checks"], indent=1)
    checks = checks_by_id(env)
    (untrusted,) = checks["probe.authresults.untrusted"]
    assert "below the receiver's block" in untrusted["detail"] and untrusted["actual"] == ["mail.spine.test"]
    (trusted,) = checks["probe.authresults.trusted"]
    assert trusted["status"] == "ok" and "example.org" not in json.dumps(trusted["evidence"])
    # The forged SPF domain never reaches the DMARC computation.
    assert env["data"]["evaluation"]["dmarc"]["spf_domain"] != "example.org"
    assert time.monotonic() - started < 90


# The probe's own DKIM verification applies the key record as dkim.check reads it ------------------------------


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: r.replace("v=DKIM1; ", "v=DKIM1; h=sha1; "), "does not allow sha256"),
        (lambda r: r.replace("v=DKIM1; ", "v=DKIM1; s=tlsrpt; "), "not for mail"),
    ],
)
def test_a_key_record_that_refuses_the_signature_fails_the_probe_as_dkim_check_fails_it(lab, lab_root, change, why):
    from tests.dns_update import current
    from tests.integration.test_probe_lab import KEY_NAME, dkim_key_replaced

    (record,) = current(lab, KEY_NAME, "TXT")
    with dkim_key_replaced(lab, change(record)):
        code, env, _ = probe(lab_root)
        checked = run_capability(lab_root, "dkim.check", timeout=60)
    assert code == 1 and env["status"] == "fail", json.dumps(env["checks"], indent=1)
    checks = checks_by_id(env)
    (signature,) = checks["probe.dkim.signature"]
    assert signature["status"] == "fail" and why in signature["detail"]
    assert checks["probe.dkim"][0]["status"] == "fail"
    key = [c for c in checked.envelope["checks"] if c["id"] == "dns.dkim.record"]
    assert checked.code == 1 and key and key[0]["status"] == "fail" and why in key[0]["detail"]
