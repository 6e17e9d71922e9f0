"""The MTA-STS policy host: https://mta-sts.spine.test:<base+4443>/.well-known/mta-sts.txt.

Knot resolves mta-sts.spine.test to 127.0.0.1 and the lab certificate names it, so a client
that resolves with the lab's DNS and trusts the lab CA fetches the policy as a sender would,
on the lab's port instead of 443 (the lab root's mail-auth contract says so in `mta_sts_fetch`).

The server is the standard library's, run with the system python3 so the lab needs no
package beyond Debian's. It serves the file <lab>/mta-sts/mta-sts.txt as written at each
request, so a test can change the policy by rewriting it. An optional
<lab>/mta-sts/response.json ({"status": 301, "headers": {"Location": "..."}}) replaces the
status and headers, for the answers a policy host must not give (redirects, other types).
"""

from __future__ import annotations

from lab.layout import DOMAIN, MX_HOST, Lab
from lab.process import Daemon

POLICY_HOST = f"mta-sts.{DOMAIN}"
# A good enforce policy for the lab's MX; a week, the order of magnitude RFC 8461 3.2 expects.
POLICY = f"version: STSv1\r\nmode: enforce\r\nmx: {MX_HOST}\r\nmax_age: 604800\r\n"

SERVER = r'''#!/usr/bin/python3
"""The lab's MTA-STS policy host (written by `python -m lab start`)."""
import http.server, json, pathlib, ssl, sys

port, folder, cert, key = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/.well-known/mta-sts.txt":
            self.send_error(404)
            return
        try:
            body = (folder / "mta-sts.txt").read_bytes()
        except OSError:
            self.send_error(404)
            return
        answer = {"status": 200, "headers": {"Content-Type": "text/plain"}}
        control = folder / "response.json"
        if control.exists():
            answer.update(json.loads(control.read_text()))
        self.send_response(answer["status"])
        for name, value in answer["headers"].items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''


def configure(lab: Lab) -> None:
    folder = lab.path("mta-sts")
    folder.mkdir(mode=0o755)
    (folder / "mta-sts.txt").write_text(POLICY, newline="")
    script = lab.path("bin", "mta-sts-host")
    script.write_text(SERVER)
    script.chmod(0o755)


def daemons(lab: Lab) -> list[Daemon]:
    argv = [
        "/usr/bin/python3",
        str(lab.path("bin", "mta-sts-host")),
        str(lab.port("mta_sts")),
        str(lab.path("mta-sts")),
        str(lab.tls / "server.pem"),
        str(lab.tls / "server.key"),
    ]
    # The radicale group may read the lab's server key (lab/tls.py); the host needs nothing else.
    return [Daemon("mta-sts", argv, run_as="radicale:radicale")]
