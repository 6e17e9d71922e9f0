"""dkim.keygen end to end: the printed record, published in the lab's Knot, verifies a signature made with the key file.

The key is made by the CLI, the TXT value it printed goes into DNS by dynamic
update exactly as printed (split into its 255-byte strings), then dkimpy signs
with the written file and verifies against the real DNS answer.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import subprocess
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization

from spine_comms.mail.dkim_record import parse_dkim_record, private_key_matches
from spine_comms.protocols.dns import Resolver
from tests.cli_process import SPINE_COMMS
from tests.dns_update import replaced
from tests.receipt_audit import validate_receipt

pytestmark = pytest.mark.lab
DOMAIN = "spine.test"


def keygen(root: Path, *args: str) -> tuple[int, dict]:
    done = subprocess.run(
        [SPINE_COMMS, "dkim.keygen", "--root", str(root), "--json", "--execute", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout.startswith("{"), done.stderr
    return done.returncode, json.loads(done.stdout)


def lab_dnsfunc(lab: dict):
    """dkimpy's DNS hook, answered by the lab's Knot through the project's resolver.

    A new Resolver per lookup: a Resolver caches, and the test changes the zone between lookups."""

    def txt(name, timeout=5):
        answer = Resolver("127.0.0.1", lab["ports"]["dns"], timeout=timeout).query(
            name.decode().rstrip(".") if isinstance(name, bytes) else name, "TXT"
        )
        return answer.records[0].encode() if answer.ok and answer.records else None

    return txt


def message() -> bytes:
    msg = EmailMessage()
    msg["From"] = f"ops@{DOMAIN}"
    msg["To"] = f"sink@{DOMAIN}"
    msg["Subject"] = "dkim.keygen lab test"
    msg["Date"] = format_datetime(datetime.datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=DOMAIN)
    msg.set_content("signed with a key dkim.keygen just made\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def dkimpy_private(path: Path, algorithm: str) -> bytes:
    """dkimpy takes RSA keys as PEM, Ed25519 keys as the base64 of the 32-byte seed."""
    pem = path.read_bytes()
    if algorithm == "rsa":
        return pem
    key = serialization.load_pem_private_key(pem, password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw)


@pytest.fixture(scope="module")
def generated(lab_root, tmp_path_factory):
    """One dkim.keygen run making both keys, under a selector no other test uses."""
    out = tmp_path_factory.mktemp("dkim-keys")
    template = f"kg{secrets.token_hex(3)}-{{algorithm}}"
    code, env = keygen(lab_root, "--ed25519", "--selector", template, "--out", str(out))
    assert code == 0, json.dumps(env, indent=1)
    validate_receipt(Path(env["receipt"]) / "receipt.json")
    return {key["algorithm"]: key for key in env["data"]["keys"]}


@pytest.mark.parametrize(("algorithm", "signature_algorithm"), [("rsa", b"rsa-sha256"), ("ed25519", b"ed25519-sha256")])
def test_the_published_record_verifies_a_signature_made_with_the_key_file(
    lab, generated, algorithm, signature_algorithm
):
    key = generated[algorithm]
    name = key["record_name"].rstrip(".")
    path = Path(key["private_key_file"])
    raw = message()
    signature = dkim.sign(
        raw, key["selector"].encode(), DOMAIN.encode(), dkimpy_private(path, algorithm),
        signature_algorithm=signature_algorithm, include_headers=[b"From", b"To", b"Subject"],
    )  # fmt: skip
    signed = signature + raw
    dnsfunc = lab_dnsfunc(lab)

    assert dnsfunc(name.encode()) is None  # not published yet: verification must fail first
    assert not dkim.verify(signed, dnsfunc=dnsfunc)
    # Exactly what dkim.keygen printed, in its 255-byte strings, goes into DNS.
    with replaced(lab, name, "TXT", ["".join(key["txt_strings"])]):
        answer = Resolver("127.0.0.1", lab["ports"]["dns"]).query(name, "TXT")
        assert answer.ok and answer.records == (key["txt_value"],)
        assert dkim.verify(signed, dnsfunc=dnsfunc), "dkimpy rejected the signature against the published record"
        tampered = signed.replace(b"signed with a key", b"signed with a kez")
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)

        published = parse_dkim_record(answer.records[0])
        assert published.problems == [] and published.fingerprint == key["fingerprint"]
        ok, reason = private_key_matches(path.read_bytes(), published)
        assert ok, reason

    lab_key = Resolver("127.0.0.1", lab["ports"]["dns"]).query(f"{lab['dkim']['selector']}._domainkey.{DOMAIN}", "TXT")
    assert lab_key.ok
    ok, reason = private_key_matches(path.read_bytes(), parse_dkim_record(lab_key.records[0]))
    assert not ok
    assert ("is not the published key" if algorithm == "rsa" else "the private key is ed25519") in reason


def test_rsa_value_needs_two_txt_strings_and_dns_keeps_them(lab, generated):
    key = generated["rsa"]
    assert len(key["txt_strings"]) == 2 and all(len(s.encode()) <= 255 for s in key["txt_strings"])
    import dns.message
    import dns.query

    name = key["record_name"].rstrip(".")
    with replaced(lab, name, "TXT", [key["txt_value"]]):
        query = dns.message.make_query(name, "TXT")
        reply = dns.query.udp(query, "127.0.0.1", port=lab["ports"]["dns"], timeout=5)
        [rrset] = reply.answer
        [rdata] = list(rrset)
        assert [s.decode() for s in rdata.strings] == key["txt_strings"]
