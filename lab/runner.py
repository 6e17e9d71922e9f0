"""start / stop / status: the order of things, and what `start` prints.

State of a lab, all inside its directory: run/pids.json (what to stop) and
lab.json (what start printed, mode 0600 since it holds the passwords).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from lab import dav, dns, dovecot, milters, mta_sts, nats, postfix, process, root, tls
from lab.layout import (
    ALIASES,
    AUTHSERV_ID,
    DKIM_SELECTOR,
    DOMAIN,
    MAIL_HOST,
    USERS,
    Knobs,
    Lab,
    LabError,
    check_dir,
    new_dir,
    passwords,
)

COMMANDS = [
    "knotd",
    "dovecot",
    "postfix",
    "opendkim",
    "opendmarc",
    "radicale",
    "xandikos",
    "openssl",
    "nats-server",
]
COMMANDS += ["unshare", "setpriv", "mount"]
READY_TIMEOUT = 20.0


def _preflight(lab: Lab) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (Postfix's master, unshare, binding port 53)")
    missing = [c for c in COMMANDS if not shutil.which(c, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if missing:
        raise LabError(f"missing commands {missing}: run `bash lab/install.sh` first")
    if not Path("/etc/dkimkeys").is_dir():
        raise LabError("/etc/dkimkeys is missing (package opendkim): run `bash lab/install.sh`")
    busy = [f"{name}={port}" for name, port in lab.ports.items() if _tcp_busy("127.0.0.1", port)]
    if _tcp_busy(lab.resolver_ip, 53):
        busy.append(f"resolver={lab.resolver_ip}:53")
    if busy:
        raise LabError(f"ports already in use for base {lab.base}: {', '.join(busy)}; pick another --port-base")


def _tcp_busy(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As the daemons do: a port left in TIME_WAIT by the last lab is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _prepare_dir(requested: str | None) -> Path:
    if requested is None:
        path = new_dir()
    else:
        path = Path(requested).absolute()
        check_dir(path)
        if path.exists() and any(path.iterdir()):
            raise LabError(f"{path} is not empty; give a new or empty --dir")
        path.mkdir(parents=True, exist_ok=True)
    check_dir(path)
    # mkdtemp makes 0700; the daemons run as their own users and must get in.
    path.chmod(0o755)
    return path


def _configure(lab: Lab, creds: dict[str, str]) -> None:
    for sub in ("etc", "run", "log"):
        lab.path(sub).mkdir(mode=0o755)
    process.write_wrapper(lab)
    tls.make_certificates(lab)
    milters.make_dkim_dir(lab)
    dns.configure(lab, dns.make_dkim_key(lab))
    dovecot.configure(lab, creds)
    postfix.configure(lab)
    milters.configure(lab)
    dav.configure(lab, creds)
    mta_sts.configure(lab)
    nats.configure(lab)
    root.write_secrets(lab, creds)
    root.write_root(lab)


def _daemons(lab: Lab) -> list[process.Daemon]:
    # Postfix last: its `start` blocks until the master is up, while the others boot.
    return [
        *dns.daemons(lab),
        *dovecot.daemons(lab),
        *milters.daemons(lab),
        *dav.daemons(lab),
        *mta_sts.daemons(lab),
        *nats.daemons(lab),
        *postfix.daemons(lab),
    ]


def describe(lab: Lab, creds: dict[str, str], running: list[process.Running], seconds: float) -> dict:
    """The JSON `start` prints: everything a client needs to use the lab."""
    host, p = "127.0.0.1", lab.port
    return {
        "lab_dir": str(lab.dir),
        "root": str(lab.root),
        "port_base": lab.base,
        "domain": DOMAIN,
        "host": host,
        "server_name": MAIL_HOST,
        "authserv_id": AUTHSERV_ID,
        "dkim": {"selector": DKIM_SELECTOR, "domain": DOMAIN},
        "tls": {"ca_cert": str(lab.ca_file), "server_name": MAIL_HOST},
        "dns": {"server": host, "port": p("dns"), "resolver_ip": lab.resolver_ip},
        "ports": lab.ports,
        "urls": {
            "smtp": f"smtp://{host}:{p('smtp')}",
            "submission": f"smtp://{host}:{p('submission')}",
            "submissions": f"smtps://{host}:{p('submissions')}",
            "imap": f"imap://{host}:{p('imap')}",
            "imaps": f"imaps://{host}:{p('imaps')}",
            "sieve": f"sieve://{host}:{p('sieve')}",
            "lmtp": f"lmtp://{host}:{p('lmtp')}",
            "radicale": f"http://{host}:{p('radicale')}/",
            "radicale_tls": f"https://{host}:{p('radicale_tls')}/",
            "xandikos": f"http://{host}:{p('xandikos')}/",
            "mta_sts": f"https://{mta_sts.POLICY_HOST}:{p('mta_sts')}/.well-known/mta-sts.txt",
        },
        "nats": {"servers": nats.servers(lab), "user": nats.USER, "password_ref": f"file:{nats.password_file(lab)}"},
        "mta_sts": {"policy_dir": str(lab.path("mta-sts")), "host": mta_sts.POLICY_HOST},
        "users": {
            user: {
                "address": lab.address(user),
                "login": lab.address(user),
                "password": creds[user],
            }
            for user in USERS
        },
        "aliases": {lab.address(a): lab.address(u) for a, u in ALIASES.items()},
        "knobs": vars(lab.knobs),
        "pids": {r.name: r.pid for r in running},
        "started_in_seconds": round(seconds, 3),
    }


def start(requested_dir: str | None, base: int, knobs: Knobs | None = None) -> dict:
    t0 = time.monotonic()
    knobs = knobs or Knobs.from_env()
    _preflight(Lab(Path("/nonexistent"), base, knobs))  # before a directory is made
    lab = Lab(_prepare_dir(requested_dir), base, knobs)
    creds = passwords(knobs)
    _configure(lab, creds)
    running: list[process.Running] = []
    try:
        for daemon in _daemons(lab):
            running.append(process.spawn(lab, daemon))
            process.save(lab, running)  # recorded at once, so a failed start can be stopped
        dns_port = lab.port("dns")
        process.wait_ready(
            lab,
            running,
            lab.ports,
            {"Knot zone loaded": lambda: dns.soa_answers(dns_port)},
            READY_TIMEOUT,
        )
    except BaseException:
        process.stop(lab, running)
        raise
    info = describe(lab, creds, running, time.monotonic() - t0)
    state = lab.path("lab.json")
    state.write_text(json.dumps(info, indent=2) + "\n")
    state.chmod(0o600)
    return info


def _lab_for(lab_dir: str) -> Lab:
    path = Path(lab_dir).absolute()
    info = json.loads((path / "lab.json").read_text()) if (path / "lab.json").exists() else {}
    return Lab(path, int(info.get("port_base", 0)))


def stop(lab_dir: str, purge: bool = False) -> dict:
    t0 = time.monotonic()
    lab = _lab_for(lab_dir)
    if not lab.dir.is_dir():
        raise LabError(f"{lab.dir} is not a lab directory")
    running = process.load(lab)
    process.stop(lab, running)
    left = process.lab_pids(lab.dir)
    if purge and not left:
        shutil.rmtree(lab.dir)
    return {
        "lab_dir": str(lab.dir),
        "stopped": [r.name for r in running],
        "left_running": left,
        "purged": purge and not left,
        "seconds": round(time.monotonic() - t0, 3),
    }


def status(lab_dir: str) -> dict:
    lab = _lab_for(lab_dir)
    running = process.load(lab)
    daemons = {r.name: process.is_alive(r) for r in running}
    ports = {name: process.port_accepts(port) for name, port in lab.ports.items()} if lab.base else {}
    return {
        "lab_dir": str(lab.dir),
        "port_base": lab.base,
        "daemons": daemons,
        "ports": ports,
        "running": bool(daemons) and all(daemons.values()) and all(ports.values()),
        "processes": process.lab_pids(lab.dir),
    }
