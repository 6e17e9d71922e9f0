"""NATS with JetStream: a three-node cluster on loopback, for the mailroom's JetStream backend.

Debian's `nats-server`, three processes (nats-1..3), each with its own client port, route port
and store directory (<lab>/nats/<node>/). Clients and routes speak TLS with the lab's server
certificate (it names 127.0.0.1), so a client verifies with the lab CA as it does for IMAP.

One user, `mailroom`, with a random password in <lab>/secrets/nats.password (a `file:`
reference, as the mail passwords are). The nodes run as root, as Dovecot's master does: they
read the lab's server key, which only root and the radicale group may read.

A cluster elects its JetStream meta leader a second or two after the nodes meet: the lab's
readiness check stays a port check, and only the tests that use JetStream wait for the election
(tests/integration/nats_lab.py), so no other test pays for it.
"""

from __future__ import annotations

import os
import secrets
import subprocess

from lab.layout import MAIL_HOST, Lab
from lab.process import Daemon
from lab.tls import DAYS, EC_KEY

NODES = ("nats-1", "nats-2", "nats-3")
USER = "mailroom"


def client_port(lab: Lab, node: str) -> int:
    return lab.port(node)


def route_port(lab: Lab, node: str) -> int:
    return lab.port(f"{node}-route")


def password_file(lab: Lab):
    return lab.secrets / "nats.password"


def servers(lab: Lab) -> list[str]:
    """Client URLs of every node (tls://: the client must verify the lab CA)."""
    return [f"tls://127.0.0.1:{client_port(lab, node)}" for node in NODES]


def _route_certificate(lab: Lab) -> None:
    """Routes are mutual TLS: each node is the client of another, and Go refuses a client
    certificate without clientAuth, which the lab's server certificate (serverAuth only) lacks."""
    key, pem = lab.tls / "nats-route.key", lab.tls / "nats-route.pem"
    subprocess.run(
        ["openssl", "req", "-x509", *EC_KEY, "-days", DAYS,
         "-CA", str(lab.ca_file), "-CAkey", str(lab.tls / "ca.key"),
         "-keyout", str(key), "-out", str(pem), "-subj", f"/CN={MAIL_HOST}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "extendedKeyUsage=serverAuth,clientAuth"],
        check=True, capture_output=True,
    )  # fmt: skip
    os.chmod(key, 0o600)


def _tls(lab: Lab, name: str, indent: str) -> str:
    return indent.join([f'cert_file: "{lab.tls}/{name}.pem"', f'key_file: "{lab.tls}/{name}.key"',
                        f'ca_file: "{lab.ca_file}"'])  # fmt: skip


def _conf(lab: Lab, node: str, password: str) -> str:
    routes = ", ".join(f"nats-route://127.0.0.1:{route_port(lab, other)}" for other in NODES if other != node)
    # The password is JSON-quoted: token_urlsafe has no quote or backslash, but the lab's own
    # LAB_PASSWORD knob does not apply here, so nothing else can reach this string.
    return f"""# nats-server {node} of the spine-comms lab (port base {lab.base}). Written by `python -m lab start`.
server_name: {node}
listen: 127.0.0.1:{client_port(lab, node)}
tls {{
    {_tls(lab, "server", chr(10) + "    ")}
    timeout: 5
}}
authorization {{
    users: [{{user: "{USER}", password: "{password}"}}]
}}
jetstream {{
    store_dir: "{lab.path("nats", node)}"
    max_memory_store: 64MB
    max_file_store: 1GB
}}
cluster {{
    name: spine-lab
    listen: 127.0.0.1:{route_port(lab, node)}
    routes: [{routes}]
    tls {{
        {_tls(lab, "nats-route", chr(10) + "        ")}
        timeout: 5
    }}
}}
"""


def configure(lab: Lab) -> None:
    password = secrets.token_urlsafe(18)
    _route_certificate(lab)
    etc = lab.etc / "nats"
    etc.mkdir(mode=0o700)
    for node in NODES:
        lab.path("nats", node).mkdir(parents=True, mode=0o700)
        conf = etc / f"{node}.conf"
        conf.write_text(_conf(lab, node, password))
        conf.chmod(0o600)  # holds the password
    lab.secrets.mkdir(mode=0o700, exist_ok=True)
    path = password_file(lab)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)  # no newline: readers take the file content as the secret


def daemons(lab: Lab) -> list[Daemon]:
    return [
        Daemon(node, ["nats-server", "-c", str(lab.etc / "nats" / f"{node}.conf"), "-l", str(lab.log / f"{node}.log")])
        for node in NODES
    ]
