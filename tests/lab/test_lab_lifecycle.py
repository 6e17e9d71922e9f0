"""The lab itself: start time, loopback only, the root it writes, parallel labs, clean stop."""

from __future__ import annotations

import imaplib
import json
import os
import re
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab import process
from lab.layout import PORT_OFFSETS

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def run_lab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def listeners() -> list[tuple[str, str, int, set[int]]]:
    """(proto, address, port, pids) for every listening TCP and bound UDP socket."""
    out = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        address, _, port = fields[4].rpartition(":")
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        found.append((fields[0], address.strip("[]"), int(port), pids))
    return found


def test_lab_started_within_ten_seconds(lab):
    assert 0 < lab["started_in_seconds"] <= 10


def test_only_loopback_listeners(lab):
    pids = set(process.lab_pids(Path(lab["lab_dir"])))
    mine = [entry for entry in listeners() if entry[3] & pids]
    assert mine, "no listener belongs to the lab's processes"
    allowed = {"127.0.0.1", lab["dns"]["resolver_ip"]}
    assert {addr for _, addr, _, _ in mine} <= allowed, mine
    assert {port for _, _, port, _ in mine} >= set(lab["ports"].values())
    # Nobody else listens beyond loopback on a lab port either.
    lab_ports = set(lab["ports"].values())
    wide = [e for e in listeners() if e[2] in lab_ports and e[1] not in allowed]
    assert not wide, wide


def test_root_points_spine_comms_at_the_lab(lab, lab_root, lab_credentials):
    contract = yaml.safe_load((lab_root / "bindings/communications.stack.contract.yaml").read_text())
    assert contract["pilot"]["stage"] == "lab"
    assert contract["endpoints"] == {
        "host": "127.0.0.1",
        "server_name": "mail.spine.test",
        "ca_file": lab["tls"]["ca_cert"],
        "timeout_seconds": 5,
        "dns": {"server": "127.0.0.1", "port": lab["ports"]["dns"]},
    }
    mailauth = yaml.safe_load((lab_root / "bindings/communications.mailauth.contract.yaml").read_text())
    assert mailauth["domains"][0]["dkim_selectors"] == [lab["dkim"]["selector"]]
    assert mailauth["probe"]["trusted_authserv_id"] == lab["authserv_id"]
    ports = {p["protocol"]: p["host"] for p in contract["pilot"]["ports"]}
    assert ports == {
        "SMTP": lab["ports"]["smtp"],
        "SMTPS": lab["ports"]["submissions"],
        "STARTTLS": lab["ports"]["submission"],
        "IMAPS": lab["ports"]["imaps"],
        "IMAP": lab["ports"]["imap"],
        "ManageSieve": lab["ports"]["sieve"],
        "HTTPS": lab["ports"]["radicale_tls"],
        "HTTP": lab["ports"]["radicale"],
    }
    for box in contract["pilot"]["mailboxes"]:
        secret = Path(box["password_ref"].removeprefix("file:"))
        assert secret.stat().st_mode & 0o777 == 0o600
        assert secret.read_text() == lab_credentials[box["id"]]
    runtime = yaml.safe_load((lab_root / "bindings/mailroom.runtime.contract.yaml").read_text())
    assert runtime["active"] is False


def test_status_sees_the_running_lab(lab):
    result = run_lab("status", "--dir", lab["lab_dir"])
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["running"] and all(status["daemons"].values()) and all(status["ports"].values())


def test_second_lab_in_parallel_with_knobs_then_clean_stop(lab):
    knobs = {
        "LAB_PASSWORD": "same-for-all",
        "LAB_SENDER_CHECK": "0",
        "LAB_STRICT_TLS": "1",
        "LAB_DMARC_REJECT": "1",
    }
    # 30000 + 100 * worker: never another worker's; further up if another run holds it.
    for base in (lab["port_base"] + 10000, lab["port_base"] + 15000, lab["port_base"] + 20000):
        t0 = time.monotonic()
        started = run_lab("start", "--port-base", str(base), env=knobs)
        start_seconds = time.monotonic() - t0
        if "already in use" not in started.stderr:
            break
    assert started.returncode == 0, started.stderr
    second = json.loads(started.stdout)
    lab_dir = Path(second["lab_dir"])
    try:
        assert start_seconds <= 10, f"second lab took {start_seconds:.1f} s to start"
        assert len(str(lab_dir)) <= 60 and lab_dir != Path(lab["lab_dir"])
        assert {u["password"] for u in second["users"].values()} == {"same-for-all"}
        assert set(second["ports"].values()) == {base + off for off in PORT_OFFSETS.values()}
        assert second["dns"]["resolver_ip"] != lab["dns"]["resolver_ip"]

        # LAB_SENDER_CHECK=0: ops may send as alerts on this lab only.
        context = ssl.create_default_context(cafile=second["tls"]["ca_cert"])
        with smtplib.SMTP_SSL("127.0.0.1", second["ports"]["submissions"], context=context) as smtp:
            smtp.login("ops@spine.test", "same-for-all")
            refused = smtp.sendmail("alerts@spine.test", ["ops@spine.test"], b"Subject: x\r\n\r\nx\r\n")
        assert refused == {}
        # LAB_DMARC_REJECT=1: an unsigned spoof of ops@ is refused outright.
        with smtplib.SMTP("127.0.0.1", second["ports"]["smtp"]) as mx:
            mx.ehlo("attacker.example.net")
            mx.mail("bounce@example.net")
            mx.rcpt("alerts@spine.test")
            code, reply = mx.data(b"From: ops@spine.test\r\nSubject: spoof\r\n\r\nx\r\n")
        assert (code, b"DMARC" in reply) == (550, True), reply
        # LAB_STRICT_TLS=1: no plaintext login even from 127.0.0.1, fine after STARTTLS.
        imap = imaplib.IMAP4("127.0.0.1", second["ports"]["imap"])
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("ops@spine.test", "same-for-all")
        imap.starttls(context)
        assert imap.login("ops@spine.test", "same-for-all")[0] == "OK"
        imap.logout()
        # Both labs answer at once.
        for info in (lab, second):
            assert process.port_accepts(info["ports"]["imaps"])
        pids = process.lab_pids(lab_dir)
        assert set(second["pids"].values()) < set(pids)  # the daemons and their children
    finally:
        # Someone's shell in the lab dir is not the lab: stop must leave it alone.
        bystander = subprocess.Popen(["sleep", "60"], cwd=lab_dir)
        t0 = time.monotonic()
        stopped = run_lab("stop", "--dir", str(lab_dir))
        stop_seconds = time.monotonic() - t0
        bystander_survived = bystander.poll() is None
        bystander.kill()
        bystander.wait()
    assert bystander_survived
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["left_running"] == []
    assert stop_seconds <= 10, f"stop took {stop_seconds:.1f} s"
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)] == []
    assert process.lab_pids(lab_dir) == []
    assert not any(process.port_accepts(port) for port in second["ports"].values())
    assert run_lab("status", "--dir", str(lab_dir)).returncode == 3
    # The session lab is untouched.
    assert process.port_accepts(lab["ports"]["imaps"])
    run_lab("stop", "--dir", str(lab_dir), "--purge")
    assert not lab_dir.exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_start_refuses_ports_in_use(lab):
    result = run_lab("start", "--port-base", str(lab["port_base"]))
    assert result.returncode == 1
    assert "already in use" in result.stderr
