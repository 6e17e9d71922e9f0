"""CalDAV/CardDAV: Radicale (twice: HTTP and HTTPS, one storage) and Xandikos.

Radicale has the users (htpasswd, login by full address). Xandikos is a
second implementation for interop checks; it has no authentication at all
and serves one principal, /ops/.
"""

from __future__ import annotations

import os
import shutil

from lab.layout import DAV_USERS, DOMAIN, VMAIL_UID, Lab
from lab.process import Daemon


def radicale_conf(lab: Lab, tls: bool) -> str:
    port = lab.port("radicale_tls" if tls else "radicale")
    ssl = f"ssl = True\ncertificate = {lab.tls}/server.pem\nkey = {lab.tls}/server.key" if tls else "ssl = False"
    # Radicale sleeps after a failed login (default 1 s); off unless LAB_AUTH_PENALTY=1.
    delay = 1 if lab.knobs.auth_penalty else 0
    kind = "HTTPS" if tls else "HTTP"
    return f"""# Radicale ({kind}) for the spine-comms lab (port base {lab.base}).
[server]
hosts = 127.0.0.1:{port}
{ssl}

[auth]
type = htpasswd
htpasswd_filename = {lab.etc}/radicale/users
# Plain: the Debian package has no bcrypt module, and these are throwaway lab passwords.
htpasswd_encryption = plain
delay = {delay}

[rights]
type = owner_only

[storage]
filesystem_folder = {lab.dir}/dav/radicale

[web]
type = none

[logging]
level = warning
mask_passwords = True
"""


def configure(lab: Lab, passwords: dict[str, str]) -> None:
    etc = lab.etc / "radicale"
    etc.mkdir(parents=True)
    (etc / "http.conf").write_text(radicale_conf(lab, tls=False))
    (etc / "https.conf").write_text(radicale_conf(lab, tls=True))
    users = etc / "users"
    users.write_text("".join(f"{u}@{DOMAIN}:{passwords[u]}\n" for u in DAV_USERS))
    shutil.chown(users, "radicale", "radicale")
    os.chmod(users, 0o600)
    storage = lab.path("dav", "radicale")
    storage.mkdir(parents=True)
    shutil.chown(storage, "radicale", "radicale")
    xandikos = lab.path("dav", "xandikos")
    xandikos.mkdir()
    os.chown(xandikos, VMAIL_UID, VMAIL_UID)


def daemons(lab: Lab) -> list[Daemon]:
    etc = lab.etc / "radicale"
    # dulwich (under Xandikos) looks the committer up in /etc/passwd unless these
    # are set, and uid 5000 has no entry there.
    git_identity = {
        f"GIT_{role}_{part}": value
        for role in ("AUTHOR", "COMMITTER")
        for part, value in (("NAME", "spine-comms lab"), ("EMAIL", f"ops@{DOMAIN}"))
    }
    return [
        Daemon("radicale", ["radicale", "-C", str(etc / "http.conf")], run_as="radicale:radicale"),
        Daemon("radicale-tls", ["radicale", "-C", str(etc / "https.conf")], run_as="radicale:radicale"),
        Daemon(
            "xandikos",
            [
                "xandikos",
                "-d",
                str(lab.path("dav", "xandikos")),
                "-l",
                "127.0.0.1",
                "-p",
                str(lab.port("xandikos")),
                "--defaults",
                "--current-user-principal",
                "/ops/",
            ],
            run_as=f"{VMAIL_UID}:{VMAIL_UID}",
            env={**git_identity, "HOME": str(lab.path("dav", "xandikos"))},
        ),
    ]
