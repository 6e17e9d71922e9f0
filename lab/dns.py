"""Knot DNS: the `spine.test` zone, its reverse zone, and a readiness probe.

Knot answers on 127.0.0.1:<base+53> for tests (dnspython can use any port),
and on <resolver_ip>:53 for the lab daemons, whose glibc resolver (libspf2,
libopendmarc) only talks to port 53. Names outside the lab zones get REFUSED,
as from any authoritative-only server, so nothing is resolved on the internet.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import subprocess
import time

from lab.layout import AUTHSERV_ID, DKIM_SELECTOR, DOMAIN, Lab
from lab.process import Daemon

REVERSE_ZONE = "127.in-addr.arpa"
HOSTS = ("mail", "mx", "imap", "smtp", "dav", "ns", "mta-sts")


def make_dkim_key(lab: Lab) -> str:
    """A fresh RSA 2048 key per lab; returns the base64 public key for the TXT record."""
    private = lab.dkim / f"{DKIM_SELECTOR}.private"
    keygen = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    subprocess.run(
        [*keygen, "-out", str(private)],
        check=True,
        capture_output=True,
    )
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    # OpenDKIM refuses a key that others can read or that it does not own.
    shutil.chown(private, "opendkim", "opendkim")
    os.chmod(private, 0o600)
    return base64.b64encode(der).decode()


def _txt(value: str) -> str:
    """A TXT rdata; strings over 255 bytes are split as RFC 1035 requires."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
    return "( " + " ".join(f'"{c}"' for c in chunks) + " )"


def zone_text(lab: Lab, dkim_public_key: str) -> str:
    serial = int(time.time())
    p = lab.port
    srv = [
        # RFC 6186 mail services
        ("_imap._tcp", 0, 1, p("imap"), "imap"),
        ("_imaps._tcp", 0, 1, p("imaps"), "imap"),
        ("_submission._tcp", 0, 1, p("submission"), "smtp"),
        ("_submissions._tcp", 0, 1, p("submissions"), "smtp"),
        ("_sieve._tcp", 0, 1, p("sieve"), "imap"),  # RFC 5804
        # RFC 6764 calendar and contacts (Radicale; Xandikos is reached directly)
        ("_caldav._tcp", 0, 1, p("radicale"), "dav"),
        ("_caldavs._tcp", 0, 1, p("radicale_tls"), "dav"),
        ("_carddav._tcp", 0, 1, p("radicale"), "dav"),
        ("_carddavs._tcp", 0, 1, p("radicale_tls"), "dav"),
    ]
    lines = [
        f"; Zone {DOMAIN}, written by the spine-comms lab (port base {lab.base}).",
        f"$ORIGIN {DOMAIN}.",
        "$TTL 60",
        f"@ SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. {serial} 3600 600 86400 60",
        f"@ NS ns.{DOMAIN}.",
        "@ A 127.0.0.1",
        *(f"{host} A 127.0.0.1" for host in HOSTS),
        f"@ MX 10 mx.{DOMAIN}.",
        # SPF as Stalwart 0.16 recommends: the MX hosts may send (mx -> 127.0.0.1).
        '@ TXT "v=spf1 mx -all"',
        f"{DKIM_SELECTOR}._domainkey TXT " + _txt(f"v=DKIM1; k=rsa; p={dkim_public_key}"),
        f'_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{DOMAIN}"',
        f'_mta-sts TXT "v=STSv1; id={serial}"',
        f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{DOMAIN}"',
        *(f"{name} SRV {prio} {weight} {port} {host}.{DOMAIN}." for name, prio, weight, port, host in srv),
        *(f'{name} TXT "path=/"' for name in ("_caldav._tcp", "_caldavs._tcp", "_carddav._tcp", "_carddavs._tcp")),
        "",
    ]
    return "\n".join(lines)


def reverse_zone_text() -> str:
    serial = int(time.time())
    return "\n".join(
        [
            f"$ORIGIN {REVERSE_ZONE}.",
            "$TTL 60",
            f"@ SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. {serial} 3600 600 86400 60",
            f"@ NS ns.{DOMAIN}.",
            f"1.0.0 PTR {AUTHSERV_ID}.",
            "",
        ]
    )


def knot_conf(lab: Lab) -> str:
    d = lab.dir
    return f"""# Knot DNS for the spine-comms lab (port base {lab.base}), by `python -m lab`.
server:
    rundir: "{d}/run/knot"
    user: knot:knot
    listen: [ "127.0.0.1@{lab.port("dns")}", "{lab.resolver_ip}@53" ]
    # One worker each: the lab sees a handful of queries.
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

control:
    listen: "{d}/run/knot/knot.sock"

log:
  - target: "{d}/log/knot.log"
    any: info

database:
    storage: "{d}/knot"

# RFC 2136 updates from loopback only, without TSIG: a test can change a record mid-run.
acl:
  - id: loopback-update
    address: [ 127.0.0.0/8 ]
    action: update

template:
  - id: default
    storage: "{d}/knot/zones"
    file: "%s.zone"
    # Updates live in the journal; the zone file we wrote stays as written.
    zonefile-sync: -1
    acl: loopback-update

zone:
  - domain: {DOMAIN}
  - domain: {REVERSE_ZONE}
"""


def configure(lab: Lab, dkim_public_key: str) -> None:
    zones = lab.path("knot", "zones")
    zones.mkdir(parents=True)
    (zones / f"{DOMAIN}.zone").write_text(zone_text(lab, dkim_public_key))
    (zones / f"{REVERSE_ZONE}.zone").write_text(reverse_zone_text())
    (lab.run / "knot").mkdir(parents=True)
    for path in (lab.path("knot"), zones, lab.run / "knot"):
        shutil.chown(path, "knot", "knot")
    (lab.etc / "knot.conf").write_text(knot_conf(lab))
    # The daemons' glibc resolver: only the lab's Knot, bind-mounted over /etc/resolv.conf.
    (lab.etc / "resolv.conf").write_text(f"nameserver {lab.resolver_ip}\noptions attempts:1 timeout:1\n")


def daemons(lab: Lab) -> list[Daemon]:
    return [Daemon("knot", ["knotd", "-c", str(lab.etc / "knot.conf")])]


def soa_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True once Knot has loaded the zone: a UDP SOA query gets NOERROR with an answer.

    Stdlib only, so `python3 -m lab` needs no dnspython.
    """
    qid = os.getpid() & 0xFFFF
    qname = b"".join(bytes([len(label)]) + label.encode() for label in DOMAIN.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0000, 1, 0, 0, 0) + qname + struct.pack(">HH", 6, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query, (host, port))
            reply = sock.recv(512)
        except OSError:
            return False
    if len(reply) < 12:
        return False
    rid, flags, _qd, ancount = struct.unpack(">HHHH", reply[:8])
    return rid == qid and flags & 0x000F == 0 and ancount > 0
