"""Fixtures for tests against the loopback lab of real servers (marker `lab`).

One lab per xdist worker, started at the first use and stopped at the end of
the session, also when tests fail. A lab that cannot start is a test FAILURE,
never a skip: `make test` must not pass with the integration tests unrun.
Unit-test fixtures do not belong here (tests/unit/ has its own).
"""

from __future__ import annotations

import os
import smtplib
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs with HYPOTHESIS_PROFILE=ci (.ci/run): the same examples every run, so a landing never
# depends on the draw. A run by hand explores new examples each time.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the lab package lives in the repo, it is not installed

from lab import runner as lab_runner  # noqa: E402
from lab.layout import DOMAIN, MAIL_HOST, Knobs  # noqa: E402

# Where a lab that saw a test fail leaves its daemons' state and the ends of their logs, for .ci/run
# to print: the lab itself is purged, and a flaky failure is rarely there again to look at.
DIAGNOSTICS = Path(os.environ.get("LAB_DIAGNOSTICS", "/tmp/spine-lab-diagnostics"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs the loopback lab of real servers")
    config.addinivalue_line(
        "markers", "stops_lab_daemons: the test stops a lab daemon on purpose (no dead-daemon check around it)"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist): a clean slate
        for old in DIAGNOSTICS.glob("*.txt"):
            old.unlink(missing_ok=True)


def _keep_diagnostics(info: dict) -> None:
    import json

    lines = [f"lab {info['lab_dir']} (port base {info.get('port_base')}), after a failed test",
             json.dumps(lab_runner.status(info["lab_dir"]), default=str)]  # fmt: skip
    for log in sorted((Path(info["lab_dir"]) / "log").glob("*")):
        logged = log.read_text(errors="replace").splitlines()
        milter = [line for line in logged if "milter" in line.lower()][-30:]
        lines += [f"--- {log.name}: last 40 lines", *logged[-40:]]
        if milter:
            lines += [f"--- {log.name}: last lines about milters", *milter]
    DIAGNOSTICS.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (DIAGNOSTICS / f"{worker}-{os.getpid()}.txt").write_text("\n".join(lines) + "\n")


def _address(user: str) -> str:
    return user if "@" in user else f"{user}@{DOMAIN}"


def worker_port_base() -> int:
    """20000 for gw0 (or no xdist), 20100 for gw1, ...: workers never share a port.

    LAB_PORT_BASE moves the whole range, so two test runs on one machine can
    be given ranges of their own instead of racing for the same ports."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(os.environ.get("LAB_PORT_BASE", "20000")) + 100 * int(worker.removeprefix("gw") or 0)


def _start_lab() -> dict:
    """Start at the worker's base; if another run on this machine holds those ports
    (two sessions testing at once), try bases 5000 apart before giving up."""
    base = worker_port_base()
    for attempt in range(4):
        try:
            # Default knobs whatever the shell exports: the tests check the default lab.
            return lab_runner.start(None, base + 5000 * attempt, Knobs())
        except lab_runner.LabError as exc:
            if "already in use" not in str(exc) or attempt == 3:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[dict]:
    """The JSON `python -m lab start` prints (endpoints, users, CA, root, ...)."""
    base = worker_port_base()
    try:
        info = _start_lab()
    except Exception as exc:
        pytest.fail(
            f"the lab did not start at port base {base}: {exc}\n"
            "It needs root and the Debian packages: run `bash lab/install.sh` (see docs/lab.md).",
            pytrace=False,
        )
    try:
        yield info
    finally:
        if request.session.testsfailed:
            try:
                _keep_diagnostics(info)
            except Exception as exc:  # never at the cost of stopping the lab
                print(f"lab diagnostics not kept: {exc}", file=sys.stderr)
        result = lab_runner.stop(info["lab_dir"], purge=not os.environ.get("LAB_KEEP"))
        assert not result["left_running"], f"lab processes left running: {result}"


def dead_daemons_report(info: dict) -> str:
    """'' when every daemon of the lab runs, else which died, how, and the end of its logs."""
    from lab import process
    from lab.layout import Lab

    dead = process.dead_daemons(Lab(Path(info["lab_dir"]), int(info.get("port_base") or 0)))
    return "\n\n".join(d.describe() for d in dead)


@pytest.fixture(autouse=True)
def _lab_daemons_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    """A lab daemon that died fails the test that saw it die, and every later one at once, naming the
    daemon with its exit status and log: never a timeout on the 451s or the silence it leaves (a dead
    OpenDKIM makes Postfix answer 451 4.7.1 to everything)."""
    if "lab" not in request.fixturenames or request.node.get_closest_marker("stops_lab_daemons"):
        yield
        return
    info = request.getfixturevalue("lab")
    report = dead_daemons_report(info)
    if report:
        pytest.fail(f"the lab was already broken before this test:\n{report}", pytrace=False)
    yield
    report = dead_daemons_report(info)
    if report:
        pytest.fail(f"a lab daemon died during this test:\n{report}", pytrace=False)


@pytest.fixture(scope="session")
def lab_root(lab: dict) -> Path:
    """A spine-comms root whose bindings point at the lab: pass it as --root."""
    return Path(lab["root"])


@pytest.fixture(scope="session")
def lab_credentials(lab: dict) -> dict[str, str]:
    """user ("ops", "alerts", "noreply", "sink") -> password; logins are user@spine.test."""
    return {user: entry["password"] for user, entry in lab["users"].items()}


@pytest.fixture(scope="session")
def lab_ssl_context(lab: dict) -> ssl.SSLContext:
    """Verifies the lab's servers: use with server_hostname=mail.spine.test."""
    return ssl.create_default_context(cafile=lab["tls"]["ca_cert"])


@pytest.fixture(scope="session")
def send_mail(lab: dict, lab_credentials: dict[str, str], lab_ssl_context: ssl.SSLContext):
    """send_mail(user, to, subject=..., body=..., *, sender=None, implicit_tls=False,
    message=None) -> Message-ID. Logs in as `user` on submission (587 STARTTLS, or
    465 with implicit_tls) and sends from `sender` (default: the user's address)."""

    def send(
        user: str,
        to: str | list[str],
        subject: str = "lab test",
        body: str = "sent by the lab fixtures\n",
        *,
        sender: str | None = None,
        implicit_tls: bool = False,
        message: EmailMessage | None = None,
    ) -> str:
        rcpts = [_address(r) for r in ([to] if isinstance(to, str) else to)]
        if message is None:
            message = EmailMessage()
            message["From"] = _address(sender or user)
            message["To"] = ", ".join(rcpts)
            message["Subject"] = subject
            message.set_content(body)
        if "Message-ID" not in message:
            message["Message-ID"] = make_msgid(domain=DOMAIN)
        host, ports = lab["host"], lab["ports"]
        if implicit_tls:
            smtp = smtplib.SMTP_SSL(host, ports["submissions"], context=_AsMailHost(lab_ssl_context), timeout=10)
        else:
            smtp = smtplib.SMTP(host, ports["submission"], timeout=10)
            smtp.starttls(context=_AsMailHost(lab_ssl_context))
        try:
            with smtp:
                smtp.login(_address(user), lab_credentials[user.split("@")[0]])
                smtp.send_message(message, from_addr=_address(sender or user), to_addrs=rcpts)
        except smtplib.SMTPException as exc:
            report = dead_daemons_report(lab)
            if report:
                pytest.fail(f"submission failed ({exc}) because a lab daemon died:\n{report}", pytrace=False)
            raise
        return message["Message-ID"]

    return send


class _AsMailHost:
    """An SSL context that verifies mail.spine.test whatever address was dialled.

    smtplib and imaplib pass the host they connect to (127.0.0.1) as
    server_hostname; clients of the real server check its name, so the tests do too.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def wrap_socket(self, sock, server_hostname=None, **kwargs):
        return self.context.wrap_socket(sock, server_hostname=MAIL_HOST, **kwargs)


@pytest.fixture(scope="session")
def read_mailbox(lab: dict, lab_credentials: dict[str, str], lab_ssl_context: ssl.SSLContext):
    """read_mailbox(user, folder="INBOX", wait_for=None, timeout=10.0) -> [raw bytes].

    wait_for: a predicate on the list of raw messages, or a str/bytes that one
    message must contain (e.g. a Message-ID). Polls IMAPS until it matches.
    """
    from imapclient import IMAPClient

    tls = _AsMailHost(lab_ssl_context)

    def read(
        user: str,
        folder: str = "INBOX",
        wait_for: Callable[[list[bytes]], bool] | str | bytes | None = None,
        timeout: float = 10.0,
    ) -> list[bytes]:
        if isinstance(wait_for, str | bytes):
            needle = wait_for.encode() if isinstance(wait_for, str) else wait_for
            wait_for = lambda msgs: any(needle in m for m in msgs)  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            with IMAPClient(lab["host"], port=lab["ports"]["imaps"], ssl_context=tls, timeout=10) as imap:
                imap.login(_address(user), lab_credentials[user.split("@")[0]])
                messages = []
                if imap.folder_exists(folder):
                    imap.select_folder(folder, readonly=True)
                    uids = imap.search()
                    fetched = imap.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
                    messages = [fetched[uid][b"BODY[]"] for uid in sorted(fetched)]
            if wait_for is None or wait_for(messages):
                return messages
            if time.monotonic() > deadline:
                report = dead_daemons_report(lab)
                pytest.fail(
                    f"{folder} of {user} did not match within {timeout} s; it holds {len(messages)} message(s)"
                    + (f"\n{report}" if report else ""),
                    pytrace=False,
                )
            time.sleep(0.1)

    return read
