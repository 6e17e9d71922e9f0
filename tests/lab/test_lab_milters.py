"""The lab's milters under load, and a dead daemon named with its log instead of a timeout.

OpenDKIM 2.11 parses its resolver config (libunbound's ub_ctx_config, a non-reentrant lexer) for
every message, from concurrent threads: without lab/ub_config_lock.c it died within a second at
about 25 submissions/s (a general protection fault or segfault in libc, or "fatal flex scanner
internal error"), and Postfix then answered 451 4.7.1 to everything.
"""

from __future__ import annotations

import signal
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest

from lab import process
from lab import runner as lab_runner
from lab.layout import Knobs, Lab
from tests.conftest import _AsMailHost, dead_daemons_report, worker_port_base

pytestmark = pytest.mark.lab


def test_opendkim_survives_concurrent_signing_and_verifying(lab, lab_credentials, lab_ssl_context):
    def submit(n: int) -> str:
        message = EmailMessage()
        message["From"] = message["To"] = "ops@spine.test"
        message["Subject"] = f"milter load {n}"
        message.set_content("load\n")
        try:
            with smtplib.SMTP(lab["host"], lab["ports"]["submission"], timeout=20) as smtp:
                smtp.starttls(context=_AsMailHost(lab_ssl_context))
                smtp.login("ops@spine.test", lab_credentials["ops"])
                smtp.send_message(message)
            return "ok"
        except (smtplib.SMTPException, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # 8 sessions at once, each signed and then verified by OpenDKIM
        outcomes = list(pool.map(submit, range(240)))
    rate = len(outcomes) / (time.monotonic() - started)
    failed = [o for o in outcomes if o != "ok"]
    assert not failed, f"{len(failed)} of {len(outcomes)} refused, e.g. {failed[:3]}\n{dead_daemons_report(lab)}"
    assert dead_daemons_report(lab) == ""
    assert rate > 5, f"only {rate:.1f} submissions/s: the load this test must hold was not reached"


def test_a_dead_daemon_is_named_with_how_it_died_and_its_log(tmp_path):
    # A lab of its own: killing a daemon of the session's lab would fail every later test (by design).
    info = lab_runner.start(None, worker_port_base() + 2500, Knobs())
    try:
        lab = Lab(Path(info["lab_dir"]), info["port_base"])
        assert process.dead_daemons(lab) == []
        opendkim = next(r for r in process.load(lab) if r.name == "opendkim")
        process._signal(opendkim.pid, signal.SIGSEGV)  # what the unlocked parse did under load
        deadline = time.monotonic() + 5
        while process.is_alive(opendkim) and time.monotonic() < deadline:
            time.sleep(0.02)
        [dead] = process.dead_daemons(lab)
        assert dead.name == "opendkim" and dead.how == "killed by signal 11 (SIGSEGV)"
        assert str(lab.log / "opendkim.out") in dead.logs
        report = dead_daemons_report(info)
        assert report.startswith(f"lab daemon opendkim (pid {opendkim.pid}) is dead: killed by signal 11")
        assert "--- last lines of" in report
    finally:
        lab_runner.stop(info["lab_dir"], purge=True)
