"""OpenDKIM (sign on submission, verify inbound) and OpenDMARC (inbound only).

Both default to trusting 127.0.0.1, which in a loopback lab means: sign
everything, verify nothing, check nothing. Here the "trusted" host is a
TEST-NET address that never connects, and signing is decided by the Postfix
service instead (`MTA ORIGINATING`, set by milter_macro_daemon_name).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lab.layout import AUTHSERV_ID, DKIM_SELECTOR, DOMAIN, Lab, LabError
from lab.process import Daemon

# OpenDKIM parses its resolver config for every message, from concurrent threads, with a lexer
# that is not reentrant: it crashes under load unless that parse is serialised (ub_config_lock.c).
UB_CONFIG_LOCK_SOURCE = Path(__file__).with_name("ub_config_lock.c")

NOBODY_HOST = "192.0.2.1"  # RFC 5737 TEST-NET-1
DKIM_DIR_IN_NS = "/etc/dkimkeys"  # where <lab>/dkim is mounted for the daemons


def opendkim_conf(lab: Lab) -> str:
    return f"""# OpenDKIM for the spine-comms lab (port base {lab.base}), by `python -m lab`.
# Seen by the daemon as {DKIM_DIR_IN_NS}/opendkim.conf: OpenDKIM refuses files below a
# world-writable directory such as /tmp, so <lab>/dkim is bind-mounted there.
Syslog no
Mode sv
Domain {DOMAIN}
Selector {DKIM_SELECTOR}
KeyFile {DKIM_DIR_IN_NS}/{DKIM_SELECTOR}.private
Socket inet:{lab.port("opendkim")}@127.0.0.1
UserID opendkim
UMask 007
Canonicalization relaxed/relaxed
OversignHeaders From
InternalHosts {NOBODY_HOST}
MTA ORIGINATING
AuthservID {AUTHSERV_ID}
AlwaysAddARHeader yes
# Its resolver is libunbound, which would recurse to the root servers and answer
# NXDOMAIN for .test (RFC 6761); this config forwards everything to the lab's Knot.
ResolverConfiguration {DKIM_DIR_IN_NS}/unbound.conf
"""


def unbound_conf(lab: Lab) -> str:
    return f"""# libunbound inside OpenDKIM: ask only the lab's Knot.
server:
    do-not-query-localhost: no
    local-zone: "{DOMAIN}." transparent
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{lab.port("dns")}
"""


def opendmarc_conf(lab: Lab) -> str:
    return f"""# OpenDMARC for the spine-comms lab (port base {lab.base}), by `python -m lab`.
Syslog false
Socket inet:{lab.port("opendmarc")}@127.0.0.1
UserID opendmarc
AuthservID {AUTHSERV_ID}
# Read OpenDKIM's results from its Authentication-Results header.
TrustedAuthservIDs {AUTHSERV_ID}
IgnoreHosts {lab.etc}/opendmarc.ignore
# SPF checked here (libspf2, through the lab resolv.conf), not by Postfix.
SPFSelfValidate true
RejectFailures {"true" if lab.knobs.dmarc_reject else "false"}
FailureReports false
RequiredHeaders false
"""


def ub_config_lock(lab: Lab) -> Path:
    """Build the ub_ctx_config() lock into <lab>/bin (gcc, a fraction of a second)."""
    library = lab.path("bin", "ub_config_lock.so")
    library.parent.mkdir(mode=0o755, exist_ok=True)
    command = ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(UB_CONFIG_LOCK_SOURCE), "-ldl", "-lpthread"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise LabError("gcc is missing: the lab builds a lock that keeps OpenDKIM from crashing under load "
                       "(lab/ub_config_lock.c); run `bash lab/install.sh`") from None  # fmt: skip
    except subprocess.CalledProcessError as exc:
        raise LabError(f"building {library.name} failed: {exc.stderr.strip()[-500:]}") from None
    library.chmod(0o755)
    return library


def configure(lab: Lab) -> None:
    ub_config_lock(lab)
    (lab.dkim / "opendkim.conf").write_text(opendkim_conf(lab))
    (lab.dkim / "unbound.conf").write_text(unbound_conf(lab))
    for path in lab.dkim.iterdir():
        shutil.chown(path, "opendkim", "opendkim")
    (lab.etc / "opendmarc.conf").write_text(opendmarc_conf(lab))
    (lab.etc / "opendmarc.ignore").write_text(NOBODY_HOST + "\n")


def daemons(lab: Lab) -> list[Daemon]:
    # libmilter notices SIGTERM only every ~5 s; they hold no state, so SIGKILL soon.
    return [
        Daemon(
            "opendkim",
            ["opendkim", "-f", "-x", f"{DKIM_DIR_IN_NS}/opendkim.conf"],
            kill_after=0.5,
            env={"LD_PRELOAD": str(lab.path("bin", "ub_config_lock.so"))},
        ),
        Daemon("opendmarc", ["opendmarc", "-f", "-c", str(lab.etc / "opendmarc.conf")], kill_after=0.5),
    ]


def make_dkim_dir(lab: Lab) -> None:
    lab.dkim.mkdir(mode=0o700)
    shutil.chown(lab.dkim, "opendkim", "opendkim")
