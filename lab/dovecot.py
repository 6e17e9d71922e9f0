"""Dovecot: IMAP (STARTTLS and implicit TLS), LMTP with Sieve, ManageSieve.

Users log in by full address (as Stalwart 0.16 expects). Mail is stored as
Maildir under <lab>/mail, owned by uid 5000, which needs no passwd entry.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from lab.layout import DOMAIN, MAIL_HOST, USERS, VMAIL_UID, Lab
from lab.process import ENV_MARK, Daemon, dovecot_instance

SPECIAL_USE = {
    "Drafts": r"\Drafts",
    "Sent": r"\Sent",
    "Junk": r"\Junk",
    "Trash": r"\Trash",
    "Archive": r"\Archive",
}


def _hashes(passwords: list[str]) -> list[str]:
    """SHA512-CRYPT hashes, all in one openssl call (one line in, one line out)."""
    out = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input="".join(p + "\n" for p in passwords),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def users_file(lab: Lab, passwords: dict[str, str]) -> str:
    hashes = _hashes([passwords[u] for u in USERS])
    lines = []
    for user, digest in zip(USERS, hashes, strict=True):
        home = lab.path("mail", DOMAIN, user)
        # user:password:uid:gid:gecos:home:shell:extra
        lines.append(f"{user}@{DOMAIN}:{{SHA512-CRYPT}}{digest}:{VMAIL_UID}:{VMAIL_UID}::{home}::")
    return "\n".join(lines) + "\n"


def dovecot_conf(lab: Lab) -> str:
    d, k = lab.dir, lab.knobs
    mailboxes = "\n".join(
        f"  mailbox {name} {{\n    auto = subscribe\n    special_use = {flag}\n  }}"
        for name, flag in SPECIAL_USE.items()
    )
    # Real Dovecot waits 2 s after a failed login and anvil then slows every later
    # login from the IP; tests that try a wrong password would crawl.
    penalty = "" if k.auth_penalty else "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
    strict = (
        f"""# LAB_STRICT_TLS=1. Dovecot 2.3 counts a connection from 127.0.0.1 to 127.0.0.1 as
# secured, so ssl = required alone lets plaintext logins through. %{{secured}} is
# "secured" for such a login and "TLS" with TLS: deny the former for IMAP and Sieve
# (Postfix, service smtp, only offers AUTH after STARTTLS anyway).
passdb {{
  driver = passwd-file
  args = username_format=%{{service}}-%{{secured}} {d}/etc/dovecot/plaintext-deny
  deny = yes
}}
"""
        if k.strict_tls
        else ""
    )
    return f"""# Dovecot for the spine-comms lab (port base {lab.base}), by `python -m lab`.
base_dir = {d}/run/dovecot
state_dir = {d}/state/dovecot
instance_name = {dovecot_instance(lab.dir)}
# Children keep the lab mark, so a process scan finds them.
import_environment = TZ {ENV_MARK}
listen = 127.0.0.1
protocols = imap lmtp sieve
hostname = {MAIL_HOST}
postmaster_address = postmaster@{DOMAIN}
log_path = {d}/log/dovecot.log

ssl = {"required" if k.strict_tls else "yes"}
ssl_cert = <{lab.tls}/server.pem
ssl_key = <{lab.tls}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = {"yes" if k.strict_tls else "no"}

auth_mechanisms = plain login
auth_username_format = %Lu
auth_failure_delay = {"2 secs" if k.auth_penalty else "0"}
{strict}passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%Lu {d}/etc/dovecot/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {d}/etc/dovecot/users
}}

first_valid_uid = {VMAIL_UID}
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins quota zlib
mail_attribute_dict = file:%h/dovecot-attributes
namespace inbox {{
  inbox = yes
{mailboxes}
}}

plugin {{
  quota = maildir:User quota
  quota_rule = *:storage=1G
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}

protocol imap {{
  mail_plugins = $mail_plugins imap_quota imap_zlib
  imap_metadata = yes
  mail_max_userip_connections = 100
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {lab.port("imap")}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {lab.port("imaps")}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lab.port("lmtp")}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {lab.port("sieve")}
  }}
}}
# Postfix asks Dovecot to check submission logins (smtpd_sasl_type = dovecot).
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
{penalty}"""


def configure(lab: Lab, passwords: dict[str, str]) -> None:
    etc = lab.etc / "dovecot"
    etc.mkdir(parents=True)
    (etc / "dovecot.conf").write_text(dovecot_conf(lab))
    (etc / "plaintext-deny").write_text("imap-secured:\nsieve-secured:\n")
    users = etc / "users"
    users.write_text(users_file(lab, passwords))
    # The auth process runs as `dovecot`; nobody else needs the hashes.
    shutil.chown(users, "root", "dovecot")
    os.chmod(users, 0o640)
    for sub in ("run/dovecot", "state/dovecot"):
        lab.path(sub).mkdir(parents=True)
    mail = lab.path("mail", DOMAIN)
    mail.mkdir(parents=True)
    for path in (lab.path("mail"), mail):
        os.chown(path, VMAIL_UID, VMAIL_UID)
        os.chmod(path, 0o750)


def daemons(lab: Lab) -> list[Daemon]:
    conf = str(lab.etc / "dovecot" / "dovecot.conf")
    # Dovecot's orderly shutdown waits for its children; 8 s, then SIGKILL.
    return [Daemon("dovecot", ["dovecot", "-F", "-c", conf])]
