"""A per-lab CA and one server certificate, made with the openssl CLI.

One certificate with every lab name serves every TLS service, so a client
verifies with `ca.pem` and `server_hostname="mail.spine.test"` (or the IP).
EC P-256 keeps key generation in the milliseconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from lab.layout import DOMAIN, MAIL_HOST, Lab

SERVER_NAMES = [
    MAIL_HOST,
    f"mx.{DOMAIN}",
    f"imap.{DOMAIN}",
    f"smtp.{DOMAIN}",
    f"dav.{DOMAIN}",
    f"mta-sts.{DOMAIN}",  # the MTA-STS policy host (lab/mta_sts.py)
    DOMAIN,
]
# 90 days: long enough that spine-comms' expiry warnings (14/7 days) stay quiet.
DAYS = "90"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(lab: Lab) -> None:
    tls = lab.tls
    tls.mkdir(mode=0o755, exist_ok=True)
    ca_key, ca_pem = tls / "ca.key", tls / "ca.pem"
    _openssl(
        "req", "-x509", *EC_KEY, "-days", DAYS,
        "-keyout", str(ca_key), "-out", str(ca_pem),
        "-subj", f"/CN=spine-comms lab CA {lab.base}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    sans = ",".join([*(f"DNS:{n}" for n in SERVER_NAMES), "DNS:localhost", "IP:127.0.0.1"])
    server_key, server_pem = tls / "server.key", tls / "server.pem"
    # `req -x509 -CA` (OpenSSL 3) signs with the CA directly: no CSR file, one process.
    _openssl(
        "req", "-x509", *EC_KEY, "-days", DAYS,
        "-CA", str(ca_pem), "-CAkey", str(ca_key),
        "-keyout", str(server_key), "-out", str(server_pem),
        "-subj", f"/CN={MAIL_HOST}",
        "-addext", f"subjectAltName={sans}",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature",
        "-addext", "extendedKeyUsage=serverAuth",
    )  # fmt: skip
    # Dovecot and Postfix read the key as root; Radicale runs as `radicale` and
    # reads it itself, so the group gets read access and nobody else does.
    shutil.chown(server_key, "root", "radicale")
    os.chmod(server_key, 0o640)
    os.chmod(ca_key, 0o600)
    for public in (ca_pem, server_pem):
        os.chmod(public, 0o644)
