"""Fill a lab user's folder with N messages, fast: for the inbox tests and the benchmarks.

    messages = make_messages(500, seed=1)                 # 2..200 KB, every 7th with an attachment
    fill_imap(lab, "sink", "Fault1", messages)            # MULTIAPPEND on a few connections at once
    fill_maildir(lab, "sink", "Bench", messages)          # files straight into the Maildir (fastest)

Both go through Dovecot's own storage: IMAP APPEND is the real path; the Maildir
writer puts files where Dovecot's Maildir++ layout expects them (`~/Maildir/.<folder>/cur`,
owned by the vmail uid) and Dovecot indexes them at the next SELECT, as it does for
mail another delivery agent dropped in. Message bodies avoid the words the mailroom
watcher's secret pattern trips on, so a benchmark measures the pipeline, not the park lane.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.utils import format_datetime
from pathlib import Path

DOMAIN = "spine.test"
MAIL_HOST = "mail.spine.test"
VMAIL_UID = 5000
_WORD_TEXT = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar "
    "papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu invoice meeting report "
    "server queue status weekly review follow up thanks regards please schedule budget team update"
)
WORDS = tuple(_WORD_TEXT.split())


def make_message(i: int, size: int, *, tag: str = "fill", attachment: bool = False, rng=None) -> bytes:
    """One RFC 5322 message of about `size` bytes, unique by (tag, i)."""
    rng = rng or random.Random(i)
    when = format_datetime(_date(i))
    headers = [
        f"From: Sender {i} <sender{i % 97}@example.org>",
        f"To: ops@{DOMAIN}",
        f"Subject: {tag} message {i}",
        f"Date: {when}",
        f"Message-ID: <{tag}.{i}@example.org>",
        "MIME-Version: 1.0",
    ]
    text_size = max(200, size // 2 if attachment else size - 400)
    text = _text(rng, text_size, f"{tag} {i}")
    if not attachment:
        head = "\r\n".join([*headers, "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"])
        return (head + "\r\n\r\n" + text).encode()
    boundary = f"==b{tag}{i}=="
    payload = rng.randbytes(max(100, (size - text_size) * 3 // 4))
    encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="data-{i}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{encoded}--{boundary}--\r\n"
    )
    head = "\r\n".join([*headers, f'Content-Type: multipart/mixed; boundary="{boundary}"'])
    return (head + "\r\n\r\n" + body).encode()


def make_messages(
    n: int, *, seed: int = 0, tag: str = "fill", min_bytes: int = 2048, max_bytes: int = 200 * 1024, every: int = 7
) -> list[bytes]:
    """N messages of random sizes in [min_bytes, max_bytes] (skewed small, as mail is); every `every`-th has an
    attachment. Deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = int(min_bytes + (max_bytes - min_bytes) * rng.random() ** 3)
        out.append(make_message(i, size, tag=tag, attachment=every > 0 and i % every == every - 1, rng=rng))
    return out


def _date(i: int):
    from datetime import UTC, datetime, timedelta

    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)


def _text(rng: random.Random, size: int, label: str) -> str:
    lines, total = [f"This is {label}."], 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12))
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines) + "\r\n"


# IMAP ---------------------------------------------------------------------------------------------


class _AsMailHost:
    def __init__(self, context) -> None:
        self.context = context

    def wrap_socket(self, sock, server_hostname=None, **kwargs):
        return self.context.wrap_socket(sock, server_hostname=MAIL_HOST, **kwargs)


@contextmanager
def imap_client(lab: dict, user: str, *, port: int | None = None) -> Iterator:
    """A logged-in IMAPClient over IMAPS for a lab user (`port` to go through a proxy)."""
    import ssl

    from imapclient import IMAPClient

    context = ssl.create_default_context(cafile=lab["tls"]["ca_cert"])
    client = IMAPClient(lab["host"], port=port or lab["ports"]["imaps"], ssl_context=_AsMailHost(context), timeout=30)
    try:
        client.login(f"{user}@{DOMAIN}", lab["users"][user]["password"])
        yield client
    finally:
        with suppress(Exception):
            client.logout()


def create_folder(lab: dict, user: str, folder: str) -> None:
    with imap_client(lab, user) as imap:
        if not imap.folder_exists(folder):
            imap.create_folder(folder)


def delete_folder(lab: dict, user: str, folder: str, attempts: int = 5) -> None:
    """DELETE, retried: under a loaded test run Dovecot has answered [SERVERBUG] to a Maildir delete
    while another of its processes still held the folder's index; a moment later it succeeds."""
    from imapclient.exceptions import IMAPClientError

    for attempt in range(attempts):
        try:
            with imap_client(lab, user) as imap:
                if imap.folder_exists(folder):
                    imap.delete_folder(folder)
            return
        except IMAPClientError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def fill_imap(lab: dict, user: str, folder: str, messages: list[bytes], *, connections: int = 4, chunk: int = 25):
    """MULTIAPPEND `messages` into `folder` (created if missing), `chunk` per command on `connections`
    connections at once. The order of UIDs follows the chunks, not strictly the list."""
    create_folder(lab, user, folder)
    chunks = [messages[i : i + chunk] for i in range(0, len(messages), chunk)]
    errors: list[BaseException] = []

    def worker(mine: list[list[bytes]]) -> None:
        try:
            with imap_client(lab, user) as imap:
                for part in mine:
                    imap.multiappend(folder, part)
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(chunks[k::connections],)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def fill_maildir(lab: dict, user: str, folder: str, messages: list[bytes]) -> Path:
    """Write `messages` into the Maildir++ folder of `user` (created with its `maildirfolder` marker),
    owned by the vmail uid. Dovecot indexes them at the next SELECT. Returns the folder's directory."""
    home = Path(lab["lab_dir"]) / "mail" / DOMAIN / user / "Maildir"
    directory = home if folder == "INBOX" else home / f".{folder}"
    # Directories made here for a user Dovecot has not served yet (the user's home above the Maildir
    # too) must be vmail's: a root-owned home made Dovecot answer [SERVERBUG] to a later DELETE (it
    # could not lock dovecot-attributes there).
    made = [p for p in (home.parent.parent, home.parent, home) if not p.exists()]
    for sub in ("tmp", "new", "cur"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    if folder != "INBOX":
        (directory / "maildirfolder").touch()
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    stamp = int(time.time())
    for i, raw in enumerate(messages):
        name = f"{stamp}.M{i}P{os.getpid()}.{host},S={len(raw)}"
        tmp = directory / "tmp" / name
        tmp.write_bytes(raw)
        os.replace(tmp, directory / "cur" / f"{name}:2,")
    for path in [*made, home, directory, *directory.rglob("*")]:
        try:
            os.chown(path, VMAIL_UID, VMAIL_UID)
        except PermissionError:
            break  # not root: Dovecot runs as the same user then
    return directory


def folder_uids(lab: dict, user: str, folder: str) -> list[int]:
    with imap_client(lab, user) as imap:
        imap.select_folder(folder, readonly=True)
        return sorted(imap.search())
