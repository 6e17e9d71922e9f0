"""The mail path: submission, DKIM signing, the inbound check, LMTP, IMAP, Sieve."""

from __future__ import annotations

import base64
import email
import smtplib
import socket
import uuid
from email import policy
from email.message import EmailMessage

import dkim
import dns.resolver
import pytest
from imapclient import IMAPClient

pytestmark = pytest.mark.lab

AUTHSERV_ID = "mail.spine.test"


def auth_results(raw: bytes) -> dict[str, str]:
    """method -> result from the lab's own Authentication-Results headers only."""
    results = {}
    for header in email.message_from_bytes(raw, policy=policy.compat32).get_all("Authentication-Results", []):
        authserv, _, rest = " ".join(header.split()).partition(";")
        if authserv.strip() != AUTHSERV_ID:
            continue
        for clause in rest.split(";"):
            method, sep, value = clause.strip().partition("=")
            if sep:
                results[method.strip()] = value.split()[0]
    return results


def only(messages: list[bytes], needle: str) -> bytes:
    found = [m for m in messages if needle.encode() in m]
    assert len(found) == 1, f"expected one message with {needle}, found {len(found)}"
    return found[0]


def test_submission_is_signed_and_passes_dkim_and_dmarc(send_mail, read_mailbox, lab):
    msgid = send_mail("ops", "alerts", subject="signed submission")
    raw = only(read_mailbox("alerts", wait_for=msgid), msgid)

    message = email.message_from_bytes(raw)
    signature = message["DKIM-Signature"]
    assert signature is not None, "no DKIM-Signature on a submitted message"
    assert "d=spine.test" in signature and f"s={lab['dkim']['selector']}" in signature
    results = auth_results(raw)
    assert results.get("dkim") == "pass", results
    assert results.get("dmarc") == "pass", results

    # An independent verifier, with the key published in the lab's DNS, agrees.
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [lab["dns"]["server"]], lab["dns"]["port"]

    def lab_txt(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode(), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    assert dkim.verify(raw, dnsfunc=lab_txt)
    assert not dkim.verify(raw.replace(b"signed submission", b"tampered submission"), dnsfunc=lab_txt)


def test_implicit_tls_submission_and_alias_reach_ops(send_mail, read_mailbox):
    msgid = send_mail("alerts", "postmaster", subject="via 465", implicit_tls=True)
    raw = only(read_mailbox("ops", wait_for=msgid), msgid)
    assert auth_results(raw).get("dkim") == "pass"
    assert b"Delivered-To: ops@spine.test" in raw


def test_spoofed_unsigned_mail_into_mx_fails_dmarc(lab, read_mailbox):
    msgid = f"<{uuid.uuid4()}@attacker.example.net>"
    spoof = EmailMessage()
    spoof["From"] = "ops@spine.test"
    spoof["To"] = "alerts@spine.test"
    spoof["Subject"] = "spoof"
    spoof["Message-ID"] = msgid
    spoof.set_content("not from ops\n")
    with smtplib.SMTP(lab["host"], lab["ports"]["smtp"], timeout=10) as mx:
        mx.ehlo("attacker.example.net")
        assert mx.has_extn("starttls"), "the inbound service should offer STARTTLS"
        assert not mx.has_extn("auth"), "no AUTH on the inbound service"
        mx.send_message(spoof, from_addr="bounce@example.net", to_addrs=["alerts@spine.test"])
    raw = only(read_mailbox("alerts", wait_for=msgid), msgid)
    assert b"DKIM-Signature" not in raw
    assert auth_results(raw).get("dmarc") == "fail", auth_results(raw)


def test_inbound_refuses_relaying(lab):
    with smtplib.SMTP(lab["host"], lab["ports"]["smtp"], timeout=10) as mx:
        mx.ehlo("attacker.example.net")
        mx.mail("bounce@example.net")
        code, _ = mx.rcpt("victim@example.org")
    assert code == 554


def test_sender_login_mismatch_is_refused(send_mail):
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send_mail("ops", "alerts", sender="alerts")
    assert refused.value.smtp_code == 553
    assert b"not owned by user ops@spine.test" in refused.value.smtp_error


def test_submission_refuses_auth_before_tls_and_bad_passwords(lab, lab_ssl_context):
    with smtplib.SMTP(lab["host"], lab["ports"]["submission"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth"), "AUTH offered before STARTTLS"
        smtp.starttls(context=lab_ssl_context)
        smtp.ehlo()
        assert smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("ops@spine.test", "wrong password")


def test_foreign_recipients_land_in_sink(send_mail, read_mailbox):
    msgid = send_mail("ops", "someone@example.net", subject="never leaves")
    raw = only(read_mailbox("sink", wait_for=msgid), msgid)
    assert b"To: someone@example.net" in raw
    assert b"Delivered-To: sink@spine.test" in raw


def test_imap_offers_the_extensions_and_special_use_folders(lab, lab_credentials, lab_ssl_context):
    with IMAPClient(lab["host"], port=lab["ports"]["imap"], ssl=False, timeout=10) as imap:
        assert b"STARTTLS" in imap.capabilities()
        imap.starttls(lab_ssl_context)
        imap.login("ops@spine.test", lab_credentials["ops"])
        caps = set(imap.capabilities())
        wanted_caps = [b"IDLE", b"CONDSTORE", b"QRESYNC", b"MOVE", b"UIDPLUS", b"SPECIAL-USE"]
        wanted_caps += [b"COMPRESS=DEFLATE", b"METADATA", b"QUOTA", b"LIST-STATUS"]
        for wanted in wanted_caps:
            assert wanted in caps, wanted
        special = {flag for flags, _sep, _name in imap.list_folders() for flag in flags}
        for flag in (b"\\Drafts", b"\\Sent", b"\\Junk", b"\\Trash", b"\\Archive"):
            assert flag in special, flag


class Sieve:
    """Just enough ManageSieve (RFC 5804) for the test: lines, literals, OK/NO."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.file = sock, sock.makefile("rb")

    def response(self) -> tuple[str, list[str]]:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            if line.split(" ")[0] in ("OK", "NO", "BYE"):
                return line, lines
            lines.append(line)

    def command(self, text: str) -> tuple[str, list[str]]:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.response()


def test_managesieve_starttls_extensions_and_delivery_filter(
    lab, lab_credentials, lab_ssl_context, send_mail, read_mailbox
):
    raw = socket.create_connection((lab["host"], lab["ports"]["sieve"]), timeout=10)
    status, greeting = Sieve(raw).response()
    assert status.startswith("OK") and '"STARTTLS"' in greeting
    assert Sieve(raw).command("STARTTLS")[0].startswith("OK")
    tls = lab_ssl_context.wrap_socket(raw, server_hostname="mail.spine.test")
    sieve = Sieve(tls)
    status, caps = sieve.response()  # capabilities are sent again after TLS
    extensions = next(c for c in caps if c.startswith('"SIEVE"')).split('"')[3].split()
    for wanted in ("fileinto", "mailbox", "imap4flags", "vacation", "envelope", "variables"):
        assert wanted in extensions
    assert any(c.startswith('"SASL"') and "PLAIN" in c for c in caps)
    token = base64.b64encode(f"\0ops@spine.test\0{lab_credentials['ops']}".encode()).decode()
    assert sieve.command(f'AUTHENTICATE "PLAIN" "{token}"')[0].startswith("OK")
    # "vacation" is a reserved script name on Stalwart; never use it.
    script = (
        'require ["fileinto", "mailbox", "imap4flags"];\r\n'
        'if header :contains "subject" "[alert]" {\r\n'
        '  fileinto :create :flags "$Alert" "Alerts";\r\n'
        "}\r\n"
    )
    size = len(script.encode())
    assert sieve.command(f'PUTSCRIPT "lab" {{{size}+}}\r\n{script}')[0].startswith("OK")
    assert sieve.command('SETACTIVE "lab"')[0].startswith("OK")
    tls.close()

    msgid = send_mail("alerts", "ops", subject="[alert] disk full")
    filed = only(read_mailbox("ops", folder="Alerts", wait_for=msgid), msgid)
    assert b"[alert] disk full" in filed
